import type { Access, AppPermission, EnterprisePermission, Operation, TeamRole } from '../reconcile/model.js';

/**
 * The one interface every platform implements. The reconciler reads a user's actual access through it,
 * and applies one operation at a time; every operation must be idempotent (applying it to a state that
 * already has it answers `already-done`). Drift scans read the whole platform through `scan`.
 */
export interface PlatformConnector {
  readonly name: string;
  readAccess(account: string): Promise<Access>;
  /** Admin accounts of each named team, to protect a team's last admin. */
  teamAdmins(teams: readonly string[]): Promise<Map<string, Set<string>>>;
  apply(operation: PlatformOperation): Promise<OperationOutcome>;
  /**
   * Applies operations in order and returns one outcome each. A connector may batch consecutive
   * operations of one kind (the built-in platform removes 100 team memberships in one statement); the
   * outcomes must be exactly what applying them one by one would give.
   */
  applyAll(operations: readonly PlatformOperation[]): Promise<OperationOutcome[]>;
  /** How many members the Enterprise Account has: the base of the mass-change threshold. */
  enterpriseSize(): Promise<number>;
  /**
   * The platform's whole membership, read from the platform itself: the Enterprise Account first, then
   * every team and every app, each exactly once.
   */
  scan(): AsyncIterable<PlatformSlice>;
  /**
   * What stays possible for an offboarded user after every grant is gone, because the platform gives
   * idsync no way to end it (e.g. API keys idsync cannot revoke): steps for a human, on the receipt.
   */
  residualRisk(account: string, idpEventAt: Date): Promise<HumanStep[]>;
  /**
   * The platform's own record of what happened (Heroku: the Enterprise Account's audit trail and app
   * releases); absent when the platform has none (the built-in platform is told through the admin API).
   */
  readonly activity?: PlatformActivitySource;
}

/** One thing a platform account did, for the seat audit. */
export interface AccountActivity {
  account: string;
  /** e.g. `release`, `team_membership.create`. */
  kind: string;
  app: string | null;
  at: Date;
}

/** The edge an audit-trail event is about, as the platform names it (with its id when it gives one). */
export type EventEdge =
  | { kind: 'enterprise' }
  | { kind: 'team'; name: string; remoteId: string | null }
  | { kind: 'app'; name: string; remoteId: string | null };

/** One event of the platform's audit trail. */
export interface PlatformEvent {
  id: string;
  at: Date;
  /** Who did it (lower-cased e-mail); null when the platform did not say. */
  actor: string | null;
  /** e.g. `team_membership`, `collaborator`, `enterprise_account_membership`, `team`. */
  type: string;
  action: string;
  edge: EventEdge | null;
  /** The account a membership or collaborator event is about (lower-cased e-mail), when given. */
  subject: string | null;
}

export interface PlatformActivitySource {
  /** idsync's own account on the platform: what it does is never drift. */
  serviceAccount(): Promise<string>;
  /** The audit trail of one UTC day (`YYYY-MM-DD`), oldest first. */
  auditEvents(day: string): Promise<PlatformEvent[]>;
  /** Who created releases since `since`, on every app the mirror knows. */
  releaseActivity(since: Date): Promise<AccountActivity[]>;
  /**
   * Reads one edge's membership from the platform into the mirror (a team's members, an app's
   * collaborators, the Enterprise Account's members) and returns the name idsync knows it by.
   */
  refresh(edge: EventEdge): Promise<string | null>;
}

export interface HumanStep {
  edge: string;
  why: string;
  action: string;
  /** Risk the platform leaves after a complete offboarding, as opposed to an edge that is still there. */
  residual?: true;
}

export interface EnterpriseMember {
  account: string;
  permissions: EnterprisePermission[];
  /** Signs in through the platform's SSO; null when the platform does not say. */
  federated: boolean | null;
}

export type PlatformSlice =
  | { kind: 'enterprise'; members: EnterpriseMember[] }
  | {
      kind: 'team';
      team: string;
      members: [account: string, role: TeamRole][];
      /** Members that are the platform's own doing (idsync's service account): never a finding. */
      implied?: string[];
    }
  | {
      kind: 'app';
      app: string;
      collaborators: [account: string, permissions: AppPermission[]][];
      /**
       * Accounts whose access to this app comes from their team role, not from a collaborator record
       * (Heroku: the team's admins and its owner account); never a finding, never removed per app.
       */
      implied?: string[];
    }
  /** A team or app the scan could not read: reported as a finding, the rest of the scan goes on. */
  | { kind: 'unreadable'; edge: { team: string } | { app: string }; reason: string };

/** Tokens are idsync's own; every other operation goes to the platform. */
export type PlatformOperation = Exclude<Operation, { kind: 'revoke-tokens' }>;

export type OperationOutcome =
  | { status: 'applied' }
  | { status: 'already-done' }
  /** The platform refused; `cause` says what kind of human action resolves it. */
  | { status: 'blocked'; cause: BlockCause; reason: string };

export type BlockCause =
  /** A rule of the platform (the last admin of a team, invalid parameters). */
  | 'refused'
  /** idsync's service account may not act here (e.g. it is not an admin of that team). */
  | 'forbidden'
  /** The resource wants a second authentication factor the service account cannot give. */
  | 'two-factor'
  /** The person has no account on the platform yet; retried after their first sign-in. */
  | 'no-platform-account'
  /** The team, app or Enterprise Account is not found under the name idsync knows (renamed?). */
  | 'container-not-found';
