import { notify } from '../alerts/notify.js';
import { type AuditEntry, recordAudit } from '../audit/audit-log.js';
import { type Database, type DatabaseHandle, withReservedSession } from '../db/client.js';
import { completeAnnouncements, openAnnouncements } from '../jobs/outbox.js';
import { offboardingTimeToEffect, reconcileOperations } from '../metrics/registry.js';
import type {
  HumanStep,
  OperationOutcome,
  PlatformConnector,
  PlatformOperation,
} from '../platform/connector.js';
import type { RequestPriority } from '../platform/heroku/budget.js';
import { holdRemovals, pendingHoldsOf } from './brake.js';
import { desiredAccess } from './desired.js';
import { type Access, type Blocked, describeOperation, type Operation, type Plan } from './model.js';
import { plan } from './plan.js';
import {
  confirmEdgesRemoved,
  confirmInterruptedEdges,
  finishReceipt,
  hasUnfinishedReceipt,
  isReceiptEdge,
  type OpenReceipt,
  openReceipt,
  recordEdgesRemoving,
  revokeTokens,
} from './receipts.js';
import { loadPolicy, loadRuleBook, loadUser, type UserSubject } from './state.js';
import { completeIfUntouched, userLockKey } from './untouched.js';

/*
 * Reconcile by level: given a user key, read what the IdP wants and what the platform has, plan the
 * difference, apply it. Running it twice does nothing the second time, so a duplicated, replayed or
 * retried job is harmless, and a cascade cut off by a crash is finished by the retry.
 *
 * A job runs as named steps over ONE database connection, which also holds the user's advisory lock:
 * lock → read and plan (once) → hold what the brake holds → open the receipt → record the edges →
 * apply → revoke tokens → audit → confirm the receipt → complete the outbox rows it covered.
 */

export interface ReconcileDependencies {
  database: DatabaseHandle;
  /** The tenant's connector at a priority, over the given database connection (the pool by default). */
  connectorFor(tenantId: string, priority?: RequestPriority, db?: Database): Promise<PlatformConnector>;
}

export interface Cause {
  event?: string;
  at?: string;
  source?: string;
  correlationId?: string;
  [key: string]: unknown;
}

export interface UserPlan {
  subject: UserSubject;
  desired: Access;
  actual: Access;
  plan: Plan;
  /** The user has lost all access (deactivated, deleted, or out of every granting group). */
  offboarding: boolean;
}

/** What a reconcile would do, without doing it (`idsync plan`, the admin API). */
export async function planUser(
  deps: ReconcileDependencies,
  tenantId: string,
  userId: string,
): Promise<UserPlan | undefined> {
  return readAndPlan(deps.database.db, await deps.connectorFor(tenantId), tenantId, userId);
}

/** Step: read the user, the rules and the platform's actual state, and plan the difference. */
async function readAndPlan(
  db: Database,
  connector: PlatformConnector,
  tenantId: string,
  userId: string,
): Promise<UserPlan | undefined> {
  const subject = await loadUser(db, tenantId, userId);
  if (!subject) return undefined;
  // One connection: these run one after the other, which is what they would do on a busy pool anyway.
  const rules = await loadRuleBook(db, tenantId);
  const policy = await loadPolicy(db, tenantId);
  const actual = await connector.readAccess(subject.account);
  const desired = desiredAccess(subject.facts, rules);
  const adminOf = [...actual.teams].filter(([, role]) => role === 'admin').map(([team]) => team);
  const teamAdmins = await connector.teamAdmins(adminOf);
  const lostEverything = desired.enterprise === null && hasAnyAccess(actual);
  const offboarding = !subject.facts.active || subject.facts.deprovisioned || lostEverything;
  const userPlan = plan(desired, actual, {
    account: subject.account,
    userId,
    // Only when something is left to revoke: an offboarding with nothing to remove writes no receipt.
    revokeTokens: offboarding && subject.liveTokens > 0,
    teamAdmins,
    fallbackAdmin: policy.fallbackAdmin,
  });
  return { subject, desired, actual, plan: userPlan, offboarding };
}

function hasAnyAccess(access: Access): boolean {
  return access.enterprise !== null || access.teams.size > 0 || access.apps.size > 0;
}

export interface AppliedOperation {
  operation: Operation;
  outcome: OperationOutcome;
  at: string;
  ms: number;
}

export interface ReconcileResult {
  applied: AppliedOperation[];
  blocked: Blocked[];
  offboarding: boolean;
}

const NOTHING: ReconcileResult = { applied: [], blocked: [], offboarding: false };

/**
 * Reconciles one user; in the reconcile lane a user no rule touches and who holds nothing costs one
 * statement (`completeIfUntouched`). A PostgreSQL advisory lock on the user makes two workers (or two processes)
 * take turns; the second then plans against the state the first left and finds nothing to do. The lock
 * and every query of the job share one reserved connection, so a job never waits for a second one.
 */
export async function reconcileUser(
  deps: ReconcileDependencies,
  tenantId: string,
  userId: string,
  cause: Cause,
  /** The lane the job runs in: its platform requests go at that priority (an offboarding always first). */
  lane: 'deprovision' | 'reconcile' = 'deprovision',
): Promise<ReconcileResult> {
  // Only in the reconcile lane: a deprovision is nearly always for someone holding edges, and every
  // statement before its receipt opens is time to effect (the check would add four round trips).
  if (lane === 'reconcile' && (await completeIfUntouched(deps.database.sql, tenantId, userId)))
    return NOTHING;
  return withReservedSession(deps.database, async ({ sql: connection, db }) => {
    const lockKey = userLockKey(userId);
    // In the reconcile lane completeIfUntouched has already waited for any rule change in progress
    // (matching-lock.ts) before any of the reads below; a deprovision does not wait for one.
    await connection`SELECT pg_advisory_lock(hashtextextended(${lockKey}, 0))`;
    try {
      const covered = await openAnnouncements(db, tenantId, 'user', userId);
      let connector = await deps.connectorFor(tenantId, lane, db);
      const planned = await readAndPlan(db, connector, tenantId, userId);
      if (!planned) {
        await completeAnnouncements(db, covered);
        return NOTHING;
      }
      // Losing the last grant is an offboarding: it is applied here and now, at deprovision priority,
      // rather than planned again in the other lane.
      if (planned.offboarding && lane !== 'deprovision') {
        connector = await deps.connectorFor(tenantId, 'deprovision', db);
      }
      const result = await applyUserPlan(db, connector, planned, cause);
      await completeAnnouncements(db, covered);
      return result;
    } finally {
      await connection`SELECT pg_advisory_unlock(hashtextextended(${lockKey}, 0))`;
    }
  });
}

async function applyUserPlan(
  db: Database,
  connector: PlatformConnector,
  planned: UserPlan,
  cause: Cause,
): Promise<ReconcileResult> {
  const { subject, offboarding } = planned;
  const userPlan = await holdStep(db, planned);
  const operations = userPlan.operations;
  const edges = operations.filter(isReceiptEdge);
  const tokensToRevoke = operations.some((o) => o.kind === 'revoke-tokens');
  const receipt =
    offboarding &&
    (edges.length > 0 ||
      tokensToRevoke ||
      userPlan.blocked.length > 0 ||
      (await hasUnfinishedReceipt(db, subject.userId)))
      ? await openReceipt(db, subject, cause)
      : undefined;
  // Read before the platform acts: what remains possible depends on the membership being removed.
  const residualRisk = receipt ? await connector.residualRisk(subject.account, receipt.idpEventAt) : [];
  if (receipt) {
    await confirmInterruptedEdges(db, receipt.id, edges);
    await recordEdgesRemoving(db, receipt.id, edges);
  }

  const applied = await applyPlatformStep(connector, operations);
  if (tokensToRevoke) applied.push(await revokeTokensStep(db, subject.userId, cause, receipt));
  await auditStep(db, connector, planned, applied, cause);

  if (receipt) {
    const platformAt = applied[0]?.at ?? new Date().toISOString();
    const removed = applied
      .filter((a) => a.outcome.status !== 'blocked')
      .map((a) => a.operation)
      .filter(isReceiptEdge);
    await confirmEdgesRemoved(db, receipt.id, removed, platformAt);
    const refused = applied.filter((a) => a.outcome.status === 'blocked');
    const completed = await finishReceipt(
      db,
      receipt.id,
      [...userPlan.blocked.map(blockedStep), ...refused.map(refusedStep), ...residualRisk],
      refused.length === 0 && userPlan.blocked.length === 0,
    );
    // A receipt with tokens revoked but no platform edge has no time to effect to measure.
    if (completed?.timeToEffectSeconds != null)
      offboardingTimeToEffect.observe(Math.max(0, completed.timeToEffectSeconds));
    // An offboarding stopped short by the platform's rules (a team's last admin) needs a person; one
    // held by the brake is announced by the hold itself (brake.held).
    const stoppedBy = [
      ...userPlan.blocked.filter((b) => b.reason === 'last-admin').map(blockedStep),
      ...refused.map(refusedStep),
    ];
    if (stoppedBy.length > 0) {
      await notify(db, {
        tenantId: subject.tenantId,
        type: 'deprovision.blocked',
        key: `deprovision.blocked:${receipt.id}`,
        // The summary is the Slack text: no account (an e-mail address) in it; the steps carry the why.
        summary: `an offboarding stopped short at ${stoppedBy.length} step(s) that need a person (a team's last admin, or a refused change); see the user's receipt`,
        data: { userId: subject.userId, receiptId: receipt.id, steps: stoppedBy },
      });
    }
  }
  for (const a of applied) reconcileOperations.inc({ kind: a.operation.kind, outcome: a.outcome.status });
  return { applied, blocked: userPlan.blocked, offboarding };
}

/**
 * Step: the mass-change brake. Holds are decided when the change is written (from the stored state of
 * every user it affects); here a held user's removals wait. The IdP deactivating or deleting someone is
 * never held.
 */
async function holdStep(db: Database, planned: UserPlan): Promise<Plan> {
  const { subject } = planned;
  if (!subject.facts.active || subject.facts.deprovisioned) return planned.plan;
  const holds = await pendingHoldsOf(db, subject.userId);
  if (holds.length === 0) return planned.plan;
  const { kept, held } = holdRemovals(planned.plan.operations, holds[0]!);
  return { operations: kept, blocked: [...planned.plan.blocked, ...held] };
}

/** Step: the platform operations, in plan order, through the connector. */
async function applyPlatformStep(
  connector: PlatformConnector,
  operations: readonly Operation[],
): Promise<AppliedOperation[]> {
  const platformOperations = operations.filter((o): o is PlatformOperation => o.kind !== 'revoke-tokens');
  if (platformOperations.length === 0) return [];
  const started = performance.now();
  const outcomes = await connector.applyAll(platformOperations);
  const ms = Math.round(performance.now() - started);
  const at = new Date().toISOString();
  return platformOperations.map((operation, index) => ({ operation, outcome: outcomes[index]!, at, ms }));
}

/** Step: every token and session idsync issued to the user, counted on the receipt. */
async function revokeTokensStep(
  db: Database,
  userId: string,
  cause: Cause,
  receipt: OpenReceipt | undefined,
): Promise<AppliedOperation> {
  const started = performance.now();
  const revoked = await revokeTokens(db, userId, `deprovisioned: ${cause.event ?? 'reconcile'}`, receipt?.id);
  return {
    operation: { kind: 'revoke-tokens', userId },
    outcome: revoked > 0 ? { status: 'applied' } : { status: 'already-done' },
    at: new Date().toISOString(),
    ms: Math.round(performance.now() - started),
  };
}

/** Step: every outcome to the audit log, in one statement for the whole plan. */
async function auditStep(
  db: Database,
  connector: PlatformConnector,
  planned: UserPlan,
  applied: readonly AppliedOperation[],
  cause: Cause,
): Promise<void> {
  const { subject } = planned;
  await recordAudit(
    db,
    applied.map(
      (a): AuditEntry => ({
        tenantId: subject.tenantId,
        actor: `reconciler:${connector.name}`,
        action: `platform.${a.operation.kind}`,
        subjectType: 'user',
        subjectId: subject.userId,
        before: stateBefore(a.operation, planned.actual),
        after: {
          operation: a.operation,
          outcome: a.outcome.status,
          ...(a.outcome.status === 'blocked' ? { reason: a.outcome.reason } : {}),
        },
        cause,
        correlationId: cause.correlationId ?? null,
        durationMs: a.ms,
        at: new Date(a.at),
      }),
    ),
  );
}

function blockedStep(blocked: Blocked): HumanStep {
  return blocked.reason === 'last-admin'
    ? {
        edge: `team ${blocked.team}`,
        why: `${blocked.account} is the last admin of team ${blocked.team} and no fallback admin is configured`,
        action: `make someone else an admin of ${blocked.team}, or set the tenant's fallback admin; idsync then finishes the removal`,
      }
    : {
        edge: describeOperation(blocked.operation),
        why: `held by the mass-change brake (change ${blocked.changeId})`,
        action: `idsync approve ${blocked.changeId}`,
      };
}

function refusedStep(refused: AppliedOperation): HumanStep {
  return {
    edge: describeOperation(refused.operation),
    why: refused.outcome.status === 'blocked' ? refused.outcome.reason : '',
    action: 'resolve on the platform; the next reconcile retries',
  };
}

/** What the platform had for the edge an operation touches, as read before the plan was made. */
function stateBefore(operation: Operation, actual: Access): Record<string, unknown> | null {
  if ('team' in operation) {
    return operation.kind === 'promote-fallback-admin'
      ? { team: operation.team, account: operation.account }
      : { team: operation.team, role: actual.teams.get(operation.team) ?? null };
  }
  if ('app' in operation) return { app: operation.app, permissions: actual.apps.get(operation.app) ?? null };
  if (operation.kind === 'revoke-tokens') return null;
  return { enterprisePermissions: actual.enterprise };
}
