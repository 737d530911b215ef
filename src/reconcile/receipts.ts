import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { isUuid } from '../db/uuid.js';
import { notFound } from '../errors.js';

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
      AND ${byId ? sql`r.user_id = ${userRef}` : sql`u.user_name_key = account_key(${userRef})`}
    ORDER BY r.idp_event_at DESC LIMIT 1`);
  if (!row) throw notFound(`no offboarding receipt for user ${userRef}`);
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
