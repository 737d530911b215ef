import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { accountKeyOf } from '../db/schema.js';
import { isUuid } from '../db/uuid.js';
import { notFound } from '../errors.js';
import type { HumanStep } from '../platform/connector.js';
import { describeOperation, isRemoval, type Operation } from './model.js';
import type { UserSubject } from './state.js';

export interface Receipt {
  user: { id: string; userName: string; account: string };
  idpEvent: { event: string; at: string };
  startedAt: string;
  completedAt: string | null;
  /** Milliseconds from the IdP event to the last edge removed. */
  timeToEffectMs: number | null;
  edgesRemoved: { operation: string; description: string; removedAt: string }[];
  tokensRevoked: number;
  leftToHuman: { edge: string; why: string; action: string }[];
  status: 'complete' | 'incomplete';
}

/** The latest offboarding receipt of a user, found by id or userName (case-insensitively). */
export async function latestReceipt(db: Database, tenantId: string, userRef: string): Promise<Receipt> {
  const byId = isUuid(userRef);
  const [row] = await db.execute<{
    user_id: string;
    user_name: string;
    account: string;
    idp_event: string;
    idp_event_at: string;
    started_at: string;
    completed_at: string | null;
    edges: Receipt['edgesRemoved'];
    tokens_revoked: number;
    left_to_human: Receipt['leftToHuman'];
  }>(sql`
    SELECT r.user_id::text, u.user_name, r.account, r.idp_event,
      to_json(r.idp_event_at)#>>'{}' AS idp_event_at, to_json(r.started_at)#>>'{}' AS started_at,
      to_json(r.completed_at)#>>'{}' AS completed_at, r.tokens_revoked, r.left_to_human,
      COALESCE((SELECT jsonb_agg(jsonb_build_object('operation', e.operation, 'description', e.description,
          'removedAt', to_json(e.removed_at)#>>'{}') ORDER BY e.removed_at, e.key)
        FROM receipt_edges e WHERE e.receipt_id = r.id AND e.status = 'removed'), '[]'::jsonb) AS edges
    FROM receipts r JOIN users u ON u.id = r.user_id
    WHERE r.tenant_id = ${tenantId}
      AND ${byId ? sql`r.user_id = ${userRef}` : sql`u.user_name_key = ${accountKeyOf(userRef)}`}
    ORDER BY r.idp_event_at DESC LIMIT 1`);
  if (!row) {
    const [user] = await db.execute(sql`
      SELECT 1 FROM users WHERE tenant_id = ${tenantId}
        AND ${byId ? sql`id = ${userRef}` : sql`user_name_key = ${accountKeyOf(userRef)}`}`);
    throw notFound(
      user
        ? `no offboarding receipt for ${userRef} yet: idsync writes one when the IdP deactivates or deletes the user`
        : `no user ${userRef} in this tenant`,
    );
  }
  const edges = row.edges.map((e) => ({ ...e, removedAt: new Date(e.removedAt).toISOString() }));
  const lastEdge = edges.length ? Math.max(...edges.map((e) => Date.parse(e.removedAt))) : Number.NaN;
  return {
    user: { id: row.user_id, userName: row.user_name, account: row.account },
    idpEvent: { event: row.idp_event, at: new Date(row.idp_event_at).toISOString() },
    startedAt: new Date(row.started_at).toISOString(),
    completedAt: row.completed_at ? new Date(row.completed_at).toISOString() : null,
    timeToEffectMs: Number.isNaN(lastEdge) ? null : lastEdge - Date.parse(row.idp_event_at),
    edgesRemoved: edges,
    tokensRevoked: row.tokens_revoked,
    leftToHuman: row.left_to_human,
    status: row.completed_at ? 'complete' : 'incomplete',
  };
}

/*
 * Writing receipts. Edges are keyed by what they are — kind, team or app, account — never by the text a
 * human reads, so a reworded description can never orphan an edge recorded by an older worker.
 */

export type EdgeOperation = Extract<
  Operation,
  { kind: 'revoke-enterprise' | 'remove-team-member' | 'revoke-app-access' | 'promote-fallback-admin' }
>;

export interface EdgeIdentity {
  kind: 'enterprise' | 'team' | 'app' | 'fallback-admin';
  /** The team or app; empty for the Enterprise Account. */
  target: string;
  account: string;
}

/** Removals and the fallback-admin promotions they need: what a receipt lists. */
export function isReceiptEdge(operation: Operation): operation is EdgeOperation {
  return isRemoval(operation) || operation.kind === 'promote-fallback-admin';
}

export function edgeIdentity(operation: EdgeOperation): EdgeIdentity {
  switch (operation.kind) {
    case 'revoke-enterprise':
      return { kind: 'enterprise', target: '', account: operation.account };
    case 'remove-team-member':
      return { kind: 'team', target: operation.team, account: operation.account };
    case 'revoke-app-access':
      return { kind: 'app', target: operation.app, account: operation.account };
    case 'promote-fallback-admin':
      return { kind: 'fallback-admin', target: operation.team, account: operation.account };
  }
}

/** The stored key of an edge: its identity as a JSON array, unambiguous whatever the names contain. */
export function edgeKey(operation: EdgeOperation): string {
  const { kind, target, account } = edgeIdentity(operation);
  return JSON.stringify([kind, target, account]);
}

export interface OpenReceipt {
  id: string;
  idpEventAt: Date;
}

/**
 * Finds or starts the receipt of this user's offboarding. One offboarding, one receipt: an unfinished
 * receipt is continued; otherwise the receipt is keyed by the time the IdP turned the user off (stored
 * with the user), so a late job with an older cause lands on the same receipt instead of starting one.
 * A user who lost every grant while staying active has no such time: the triggering event's is used.
 */
export async function openReceipt(
  db: Database,
  subject: UserSubject,
  cause: { event?: string; at?: string; correlationId?: string },
): Promise<OpenReceipt> {
  const { facts } = subject;
  const turnedOff = !facts.active || facts.deprovisioned;
  const event = turnedOff
    ? facts.deprovisioned
      ? 'user.deleted'
      : 'user.deactivated'
    : (cause.event ?? 'access.lost');
  const at = (turnedOff ? subject.deactivatedAt : undefined) ?? cause.at ?? new Date().toISOString();
  const [row] = await db.execute<{ id: string; idp_event_at: string }>(sql`
    WITH unfinished AS (
      SELECT id, idp_event_at FROM receipts
      WHERE user_id = ${subject.userId} AND completed_at IS NULL ORDER BY idp_event_at DESC LIMIT 1
    ), inserted AS (
      INSERT INTO receipts (tenant_id, user_id, account, idp_event, idp_event_at, correlation_id)
      SELECT ${subject.tenantId}, ${subject.userId}, ${subject.account}, ${event}, ${at}::timestamptz, ${cause.correlationId ?? null}
      WHERE NOT EXISTS (SELECT 1 FROM unfinished)
      ON CONFLICT (user_id, idp_event_at) DO UPDATE SET account = EXCLUDED.account
      RETURNING id, idp_event_at
    )
    SELECT id, to_json(idp_event_at)#>>'{}' AS idp_event_at FROM unfinished
    UNION ALL SELECT id, to_json(idp_event_at)#>>'{}' FROM inserted`);
  return { id: row!.id, idpEventAt: new Date(row!.idp_event_at) };
}

/**
 * Whether an offboarding of this user was started and not finished: a worker that died after the platform
 * acted (and after the tokens were revoked) leaves a plan with nothing in it, and only this says that the
 * receipt still has edges to confirm.
 */
export async function hasUnfinishedReceipt(db: Database, userId: string): Promise<boolean> {
  const [row] = await db.execute<{ unfinished: boolean }>(sql`
    SELECT EXISTS (SELECT 1 FROM receipts WHERE user_id = ${userId} AND completed_at IS NULL) AS unfinished`);
  return row?.unfinished === true;
}

/**
 * Edges left `removing` by a worker that died after asking the platform: the fresh plan no longer
 * contains them, which means the platform no longer has them, so they were removed.
 */
export async function confirmInterruptedEdges(
  db: Database,
  receiptId: string,
  planned: readonly EdgeOperation[],
): Promise<void> {
  await db.execute(sql`
    UPDATE receipt_edges SET status = 'removed', removed_at = now()
    WHERE receipt_id = ${receiptId} AND status = 'removing'
      AND NOT (key = ANY(${sql.param(planned.map(edgeKey))}::text[]))`);
}

/**
 * Written before the platform is asked: if this process dies after the platform acted, the retry still
 * knows these edges and confirms them (confirmInterruptedEdges).
 */
export async function recordEdgesRemoving(
  db: Database,
  receiptId: string,
  edges: readonly EdgeOperation[],
): Promise<void> {
  if (edges.length === 0) return;
  await db.execute(sql`
    INSERT INTO receipt_edges (receipt_id, key, operation, description, status)
    SELECT ${receiptId}, e.key, e.kind, e.description, 'removing'
    FROM unnest(${sql.param(edges.map(edgeKey))}::text[], ${sql.param(edges.map((e) => e.kind))}::text[],
      ${sql.param(edges.map(describeOperation))}::text[]) AS e(key, kind, description)
    ON CONFLICT (receipt_id, key) DO NOTHING`);
}

export async function confirmEdgesRemoved(
  db: Database,
  receiptId: string,
  removed: readonly EdgeOperation[],
  at: string,
): Promise<void> {
  if (removed.length === 0) return;
  await db.execute(sql`
    UPDATE receipt_edges SET status = 'removed', removed_at = ${at}::timestamptz
    WHERE receipt_id = ${receiptId} AND status = 'removing' AND key = ANY(${sql.param(removed.map(edgeKey))}::text[])`);
}

/**
 * Revokes the user's live tokens and counts them on the receipt in ONE statement: as two, a worker
 * killed between them left the tokens revoked and the receipt saying none were, and the retry found
 * nothing left to revoke (seen in test/reconcile-resilience.test.ts's kill -9 of a layoff). Returns how
 * many were revoked now.
 */
export async function revokeTokens(
  db: Database,
  userId: string,
  reason: string,
  receiptId: string | undefined,
): Promise<number> {
  const [row] = await db.execute<{ revoked: number }>(sql`
    WITH revoked AS (
      UPDATE tokens SET revoked_at = now(), revoked_reason = ${reason}
      WHERE user_id = ${userId} AND revoked_at IS NULL RETURNING id
    ), counted AS (
      UPDATE receipts SET tokens_revoked = tokens_revoked + (SELECT count(*) FROM revoked)
      WHERE id = ${receiptId ?? null}::uuid AND EXISTS (SELECT 1 FROM revoked)
    )
    SELECT count(*)::int AS revoked FROM revoked`);
  return row!.revoked;
}

/**
 * What is left to a human; the receipt is complete when nothing but residual risk is. Returns the
 * offboarding's time to effect (IdP event → last edge removed, in seconds) when this call completed
 * the receipt, so it is measured once per offboarding however often the job runs.
 */
export async function finishReceipt(
  db: Database,
  receiptId: string,
  leftToHuman: readonly HumanStep[],
  complete: boolean,
): Promise<{ timeToEffectSeconds: number | null } | undefined> {
  // The CTE reads the row as it was before the UPDATE: only the first completion reports.
  const [row] = await db.execute<{ just_completed: boolean; seconds: number | null }>(sql`
    WITH prior AS (SELECT completed_at IS NULL AS was_open FROM receipts WHERE id = ${receiptId})
    UPDATE receipts r SET left_to_human = ${JSON.stringify(leftToHuman)}::jsonb,
      completed_at = CASE WHEN ${complete} THEN COALESCE(r.completed_at, now()) ELSE NULL END
    FROM prior WHERE r.id = ${receiptId}
    RETURNING prior.was_open AND r.completed_at IS NOT NULL AS just_completed,
      extract(epoch FROM (SELECT max(e.removed_at) FROM receipt_edges e
        WHERE e.receipt_id = r.id AND e.status = 'removed') - r.idp_event_at)::float8 AS seconds`);
  return row?.just_completed ? { timeToEffectSeconds: row.seconds } : undefined;
}
