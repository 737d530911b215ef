import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../db/client.js';
import type { OperationOutcome, PlatformConnector, PlatformOperation } from '../platform/connector.js';
import type { RequestPriority } from '../platform/heroku/budget.js';
import { heldChangesFor, holdRemovals } from './brake.js';
import { desiredAccess } from './desired.js';
import {
  type Access,
  type Blocked,
  describeOperation,
  isRemoval,
  type Operation,
  type Plan,
} from './model.js';
import { plan } from './plan.js';
import { loadPolicy, loadRules, loadUser, type UserSubject } from './state.js';

/*
 * Reconcile by level: given a user key, read what the IdP wants and what the platform has, plan the
 * difference, apply it. Running it twice does nothing the second time, so a duplicated, replayed or
 * retried job is harmless, and a cascade cut off by a crash is finished by the retry.
 */

export interface ReconcileDependencies {
  database: DatabaseHandle;
  connectorFor(tenantId: string, priority?: RequestPriority): Promise<PlatformConnector>;
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
  massChangeThresholdPercent: number;
}

export async function planUser(
  deps: ReconcileDependencies,
  tenantId: string,
  userId: string,
  connector?: PlatformConnector,
): Promise<UserPlan | undefined> {
  const { db } = deps.database;
  const subject = await loadUser(db, tenantId, userId);
  if (!subject) return undefined;
  connector ??= await deps.connectorFor(tenantId);
  const [rules, policy, actual] = await Promise.all([
    loadRules(db, tenantId),
    loadPolicy(db, tenantId),
    connector.readAccess(subject.account),
  ]);
  const desired = desiredAccess(subject.facts, rules);
  const adminOf = [...actual.teams].filter(([, role]) => role === 'admin').map(([team]) => team);
  const teamAdmins = await connector.teamAdmins(adminOf);
  const lostEverything = desired.enterprise === null && hasAnyAccess(actual);
  const offboarding = !subject.facts.active || subject.facts.deprovisioned || lostEverything;
  const userPlan = plan(desired, actual, {
    account: subject.account,
    userId,
    revokeTokens: offboarding,
    teamAdmins,
    fallbackAdmin: policy.fallbackAdmin,
  });
  return {
    subject,
    desired,
    actual,
    plan: userPlan,
    offboarding,
    massChangeThresholdPercent: policy.massChangeThresholdPercent,
  };
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

/**
 * Reconciles one user. A PostgreSQL advisory lock on the user makes two workers (or two processes)
 * take turns; the second then plans against the state the first left and finds nothing to do.
 */
export async function reconcileUser(
  deps: ReconcileDependencies,
  tenantId: string,
  userId: string,
  cause: Cause,
  /** The tenant's connector when the caller already has it (a job opens it once for the lane). */
  connector?: PlatformConnector,
): Promise<ReconcileResult> {
  const lockConnection = await deps.database.sql.reserve();
  try {
    await lockConnection`SELECT pg_advisory_lock(hashtextextended(${`user:${userId}`}, 0))`;
    try {
      return await reconcileLocked(
        deps,
        tenantId,
        userId,
        cause,
        connector ?? (await deps.connectorFor(tenantId)),
      );
    } finally {
      await lockConnection`SELECT pg_advisory_unlock(hashtextextended(${`user:${userId}`}, 0))`;
    }
  } finally {
    lockConnection.release();
  }
}

async function reconcileLocked(
  deps: ReconcileDependencies,
  tenantId: string,
  userId: string,
  cause: Cause,
  connector: PlatformConnector,
): Promise<ReconcileResult> {
  const { db } = deps.database;
  const planned = await planUser(deps, tenantId, userId, connector);
  if (!planned) return { applied: [], blocked: [], offboarding: false };
  const { subject, offboarding } = planned;
  let userPlan = planned.plan;
  // The IdP deactivating or deleting someone is never held; group and rule changes may be.
  if (subject.facts.active && !subject.facts.deprovisioned) {
    const holds = await heldChangesFor(db, {
      tenantId,
      userId,
      cause,
      thresholdPercent: planned.massChangeThresholdPercent,
      enterpriseSize: () => connector.enterpriseSize(),
    });
    if (holds.length > 0) {
      const { kept, held } = holdRemovals(userPlan.operations, holds[0]!);
      userPlan = { operations: kept, blocked: [...userPlan.blocked, ...held] };
    }
  }
  const receipt =
    offboarding && userPlan.operations.length > 0 ? await openReceipt(deps, subject, cause) : undefined;
  const receiptId = receipt?.id;
  // Read before the platform acts: what remains possible depends on the membership being removed.
  const residualRisk = receipt ? await connector.residualRisk(subject.account, receipt.idpEventAt) : [];

  if (receiptId) await confirmInterruptedEdges(deps, receiptId, userPlan.operations);
  const operations = userPlan.operations;
  const edges = receiptId
    ? operations.filter((o) => isRemoval(o) || o.kind === 'promote-fallback-admin').map(describeOperation)
    : [];
  if (edges.length > 0) {
    // Written before the platform is asked: if this process dies after the platform acted, the retry
    // still knows these edges and confirms them (confirmInterruptedEdges).
    await db.execute(sql`
      INSERT INTO receipt_edges (receipt_id, key, operation, description, status)
      SELECT ${receiptId}, e.key, e.kind, e.key, 'removing'
      FROM unnest(${sql.param(edges)}::text[], ${sql.param(operations.filter((o) => edges.includes(describeOperation(o))).map((o) => o.kind))}::text[]) AS e(key, kind)
      ON CONFLICT (receipt_id, key) DO NOTHING`);
  }

  const applied: AppliedOperation[] = [];
  const platformOperations = operations.filter((o): o is PlatformOperation => o.kind !== 'revoke-tokens');
  const started = performance.now();
  const outcomes = await connector.applyAll(platformOperations);
  const platformMs = Math.round(performance.now() - started);
  const platformAt = new Date().toISOString();
  for (const [index, operation] of platformOperations.entries()) {
    applied.push({ operation, outcome: outcomes[index]!, at: platformAt, ms: platformMs });
  }
  const tokenRevocation = operations.find((o) => o.kind === 'revoke-tokens');
  if (tokenRevocation) {
    const tokensStarted = performance.now();
    const [revoked] = await db.execute<{ n: number }>(sql`
      WITH revoked AS (
        UPDATE tokens SET revoked_at = now(), revoked_reason = ${`deprovisioned: ${cause.event ?? 'reconcile'}`}
        WHERE user_id = ${userId} AND revoked_at IS NULL RETURNING id
      ), counted AS (
        UPDATE receipts SET tokens_revoked = tokens_revoked + (SELECT count(*) FROM revoked)
        WHERE id = ${receiptId ?? null}::uuid
      )
      SELECT count(*)::int AS n FROM revoked`);
    applied.push({
      operation: tokenRevocation,
      outcome: (revoked?.n ?? 0) > 0 ? { status: 'applied' } : { status: 'already-done' },
      at: new Date().toISOString(),
      ms: Math.round(performance.now() - tokensStarted),
    });
  }

  if (applied.length > 0) {
    // Every outcome goes to the audit log, in one statement for the whole plan.
    await db.execute(sql`
      INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, before, after, cause, correlation_id, duration_ms, at)
      SELECT ${tenantId}, ${`reconciler:${connector.name}`}, 'platform.' || (a.after->'operation'->>'kind'), 'user', ${userId},
        a.before, a.after, ${JSON.stringify(cause)}::jsonb, ${cause.correlationId ?? null}, a.ms, a.at
      FROM jsonb_to_recordset(${JSON.stringify(
        applied.map((a) => ({
          before: stateBefore(a.operation, planned.actual),
          after: {
            operation: a.operation,
            outcome: a.outcome.status,
            ...(a.outcome.status === 'blocked' ? { reason: a.outcome.reason } : {}),
          },
          ms: a.ms,
          at: a.at,
        })),
      )}::jsonb) AS a(before jsonb, after jsonb, ms int, at timestamptz)`);
  }
  const done = applied
    .filter((a) => a.outcome.status !== 'blocked' && edges.includes(describeOperation(a.operation)))
    .map((a) => describeOperation(a.operation));
  if (receiptId && done.length > 0) {
    await db.execute(sql`
      UPDATE receipt_edges SET status = 'removed', removed_at = ${platformAt}::timestamptz
      WHERE receipt_id = ${receiptId} AND status = 'removing' AND key = ANY(${sql.param(done)}::text[])`);
  }

  const refused = applied.filter((a) => a.outcome.status === 'blocked');
  if (receiptId) {
    const leftToHuman = [
      ...userPlan.blocked.map((b) =>
        b.reason === 'last-admin'
          ? {
              edge: `team ${b.team}`,
              why: `${b.account} is the last admin of team ${b.team} and no fallback admin is configured`,
              action: `make someone else an admin of ${b.team}, or set the tenant's fallback admin; idsync then finishes the removal`,
            }
          : {
              edge: describeOperation(b.operation),
              why: `held by the mass-change brake (change ${b.changeId})`,
              action: `idsync approve ${b.changeId}`,
            },
      ),
      ...refused.map((r) => ({
        edge: describeOperation(r.operation),
        why: r.outcome.status === 'blocked' ? r.outcome.reason : '',
        action: 'resolve on the platform; the next reconcile retries',
      })),
      ...residualRisk,
    ];
    await db.execute(sql`
      UPDATE receipts SET left_to_human = ${JSON.stringify(leftToHuman)}::jsonb,
        completed_at = CASE WHEN ${refused.length === 0 && userPlan.blocked.length === 0} THEN now() ELSE completed_at END
      WHERE id = ${receiptId}`);
  }
  return { applied, blocked: userPlan.blocked, offboarding };
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

/**
 * Edges left `removing` by a worker that died after asking the platform: the fresh plan no longer
 * contains them, which means the platform no longer has them, so they were removed.
 */
async function confirmInterruptedEdges(deps: ReconcileDependencies, receiptId: string, planned: Operation[]) {
  const stillToDo = planned.map(describeOperation);
  await deps.database.db.execute(sql`
    UPDATE receipt_edges SET status = 'removed', removed_at = now()
    WHERE receipt_id = ${receiptId} AND status = 'removing' AND NOT (key = ANY(${sql.param(stillToDo)}::text[]))`);
}

/** Finds or starts the receipt for this offboarding event (one per user and IdP event time). */
async function openReceipt(
  deps: ReconcileDependencies,
  subject: UserSubject,
  cause: Cause,
): Promise<{ id: string; idpEventAt: Date }> {
  const deprovisionEvent = !subject.facts.active || subject.facts.deprovisioned;
  const event = cause.event ?? (deprovisionEvent ? 'user.deactivated' : 'access.lost');
  const at = cause.at ?? new Date(subject.updatedAt.replace(' ', 'T').replace(/\+00$/, 'Z')).toISOString();
  const [row] = await deps.database.db.execute<{ id: string; idp_event_at: string }>(sql`
    INSERT INTO receipts (tenant_id, user_id, account, idp_event, idp_event_at, correlation_id)
    VALUES (${subject.tenantId}, ${subject.userId}, ${subject.account}, ${event}, ${at}::timestamptz, ${cause.correlationId ?? null})
    ON CONFLICT (user_id, idp_event_at) DO UPDATE SET account = EXCLUDED.account
    RETURNING id, to_json(idp_event_at)#>>'{}' AS idp_event_at`);
  return { id: row!.id, idpEventAt: new Date(row!.idp_event_at) };
}
