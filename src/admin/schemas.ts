import { z } from 'zod';
import { FINDING_CLASSES } from '../drift/compare.js';
import { ADMIN_ROLES } from '../security/admin-tokens.js';

/*
 * Request bodies of the admin API: each validates the request (parsedOrInvalid) and describes it in the
 * OpenAPI document (src/http/openapi.ts), so the contract and the checks cannot drift apart.
 */

export const issueTokenBodySchema = z.object({
  scopes: z.array(z.string(), { error: '"scopes" must be a list of scope names' }).default([]),
  expiresInSeconds: z.number({ error: '"expiresInSeconds" must be a number' }).int().positive().optional(),
  label: z.string({ error: '"label" must be a string' }).max(200).optional(),
});

export const createClientBodySchema = z.object({
  name: z.string({ error: '"name" is required' }),
  scopes: z.array(z.string(), { error: '"scopes" must be a list: introspect, revoke' }).optional(),
});

export const createAdminTokenBodySchema = z.object({
  name: z.string({ error: '"name" is required' }),
  role: z.enum(ADMIN_ROLES, { error: `"role" must be one of ${ADMIN_ROLES.join(', ')}` }),
  /** The one tenant the token may act on; absent for an all-tenant token (all-tenant owners only). */
  tenant: z.string().nullable().optional(),
});

export const deliveriesQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
});

const PAGE_LIMIT_ERROR = { error: 'limit must be a whole number from 1 to 500' };
/** A page of the audit-trail findings since the last scan (`idsync drift since-last-scan` reads it too). */
export const sinceLastScanQuerySchema = z.object({
  limit: z.coerce
    .number(PAGE_LIMIT_ERROR)
    .int(PAGE_LIMIT_ERROR)
    .min(1, PAGE_LIMIT_ERROR)
    .max(500, PAGE_LIMIT_ERROR)
    .default(50),
  before: z
    .string()
    .regex(/^[1-9][0-9]{0,17}$/, { error: 'before must be the "next" value of a previous page' })
    .optional(),
});

/** The answer of GET /tenants/{tenant}/drift/since-last-scan (documented, not parsed: the server writes it). */
export const sinceLastScanSchema = z.object({
  since: z.string().nullable().describe('when the latest scan started; null before the first scan'),
  findings: z.array(
    z.object({
      auditId: z.string(),
      foundAt: z.string(),
      eventId: z.string(),
      account: z.string(),
      userId: z.string().nullable(),
      class: z.enum(FINDING_CLASSES),
      severity: z.enum(['critical', 'high', 'medium']),
      edge: z.string(),
      actor: z.string().nullable().describe('who granted it on the platform, if the audit trail says'),
      outcome: z.enum(['fix-queued', 'reported']),
    }),
  ),
  next: z.string().nullable().describe('pass as `before` for the next, older page; null on the last page'),
});
