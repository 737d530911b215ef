import { z } from 'zod';

/**
 * What idsync tells a person about: each is a fact that needs someone to act, announced where it
 * happens (issue 15). Names follow the log lines operators already page on (`deprovision.failed`,
 * `platform.stopped` became `platform.credential_refused`).
 */
export const ALERT_EVENTS = [
  /** A deprovision keeps failing, or failed every attempt: someone still has access. */
  'deprovision.failed',
  /** An offboarding stopped short: the user is a team's last admin and no fallback admin is configured. */
  'deprovision.blocked',
  /** A drift scan found an offboarded user who still has access. */
  'drift.critical',
  /** The mass-change brake held an IdP change's removals for approval. */
  'brake.held',
  /** The platform refused idsync's credentials (401); idsync stopped calling it for the tenant. */
  'platform.credential_refused',
  /** The platform's rate budget stayed empty longer than a request may wait. */
  'platform.budget_exhausted',
] as const;

export type AlertEvent = (typeof ALERT_EVENTS)[number];

export const alertEventSchema = z.enum(ALERT_EVENTS);

export const isAlertEvent = (value: string): value is AlertEvent =>
  (ALERT_EVENTS as readonly string[]).includes(value);
