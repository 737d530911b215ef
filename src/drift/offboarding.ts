import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';

export interface OffboardingRow {
  userId: string;
  userName: string;
  idpEvent: string;
  idpEventAt: string;
  lastEdgeRemovedAt: string | null;
  /** From the IdP event to the last edge removed. */
  timeToEffectMs: number | null;
  edgesRemoved: number;
  tokensRevoked: number;
  leftToHuman: number;
  status: 'complete' | 'incomplete';
}

export interface OffboardingView {
  from: string;
  to: string;
  stats: {
    offboarded: number;
    complete: number;
    p50Ms: number | null;
    p95Ms: number | null;
    maxMs: number | null;
  };
  offboardings: OffboardingRow[];
}

/**
 * Every offboarding whose IdP event falls in [from, to), with time-to-effect; percentiles over the
 * completed ones, computed by PostgreSQL.
 */
export async function offboardingView(
  db: Database,
  tenantId: string,
  from: Date,
  to: Date,
): Promise<OffboardingView> {
  const rows = await db.execute<{
    user_id: string;
    user_name: string;
    idp_event: string;
    idp_event_at: string;
    last_edge: string | null;
    ms: number | null;
    edges: number;
    tokens_revoked: number;
    left_to_human: number;
    complete: boolean;
  }>(sql`
    SELECT r.user_id::text, u.user_name, r.idp_event, to_json(r.idp_event_at)#>>'{}' AS idp_event_at,
      to_json(e.last_edge)#>>'{}' AS last_edge,
      (extract(epoch FROM e.last_edge - r.idp_event_at) * 1000)::bigint::float8 AS ms,
      coalesce(e.edges, 0)::int AS edges, r.tokens_revoked, jsonb_array_length(r.left_to_human) AS left_to_human,
      r.completed_at IS NOT NULL AS complete
    FROM receipts r JOIN users u ON u.id = r.user_id
    LEFT JOIN LATERAL (
      SELECT max(removed_at) AS last_edge, count(*) AS edges FROM receipt_edges
      WHERE receipt_id = r.id AND status = 'removed'
    ) e ON true
    WHERE r.tenant_id = ${tenantId} AND r.idp_event_at >= ${from.toISOString()}::timestamptz
      AND r.idp_event_at < ${to.toISOString()}::timestamptz
    ORDER BY r.idp_event_at DESC`);
  const offboardings: OffboardingRow[] = rows.map((r) => ({
    userId: r.user_id,
    userName: r.user_name,
    idpEvent: r.idp_event,
    idpEventAt: new Date(r.idp_event_at).toISOString(),
    lastEdgeRemovedAt: r.last_edge ? new Date(r.last_edge).toISOString() : null,
    timeToEffectMs: r.ms === null ? null : Number(r.ms),
    edgesRemoved: r.edges,
    tokensRevoked: r.tokens_revoked,
    leftToHuman: r.left_to_human,
    status: r.complete ? 'complete' : 'incomplete',
  }));
  const times = offboardings
    .filter((o) => o.status === 'complete' && o.timeToEffectMs !== null)
    .map((o) => o.timeToEffectMs!)
    .sort((a, b) => a - b);
  return {
    from: from.toISOString(),
    to: to.toISOString(),
    stats: {
      offboarded: offboardings.length,
      complete: offboardings.filter((o) => o.status === 'complete').length,
      p50Ms: percentile(times, 0.5),
      p95Ms: percentile(times, 0.95),
      maxMs: times.length ? times[times.length - 1]! : null,
    },
    offboardings,
  };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}
