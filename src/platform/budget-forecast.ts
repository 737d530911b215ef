import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { Lane, LaneQueues } from '../jobs/queues.js';
import type { BudgetState } from './heroku/budget.js';

export interface BudgetForecast {
  budget: BudgetState;
  /** Queued jobs of this tenant per lane and the requests they are expected to need. */
  queued: Record<Lane, { jobs: number; requests: number }>;
  /** Minutes until the queued deprovisions, and then everything, are done; 0 when the budget covers them. */
  deprovisionsDoneInMinutes: number;
  allDoneInMinutes: number;
}

/** A reconcile of someone who stays usually changes an edge or two. */
const REQUESTS_PER_RECONCILE = 2;

/**
 * What the queued work will cost against the shared budget. A deprovision costs one request per edge
 * the mirror holds for the user; a scan one request per page of members and collaborators (pages of
 * 1,000) plus the listings of teams and apps.
 */
export async function forecastBudget(
  db: Database,
  queues: LaneQueues,
  tenantId: string,
  budget: BudgetState,
): Promise<BudgetForecast> {
  const waiting = async (lane: Lane) =>
    (await queues[lane].getJobs(['waiting', 'active', 'delayed', 'prioritized'], 0, 99_999)).filter(
      (job) => job?.data.tenantId === tenantId,
    );
  const [deprovisions, reconciles, scans] = await Promise.all([
    waiting('deprovision'),
    waiting('reconcile'),
    waiting('scan'),
  ]);
  const userIds = deprovisions.filter((j) => j.data.subjectType === 'user').map((j) => j.data.subjectId);
  const [edges] = await db.execute<{ n: number }>(sql`
    WITH accounts AS (SELECT user_name_key AS key FROM users WHERE tenant_id = ${tenantId} AND id::text = ANY(${sql.param(userIds)}::text[]))
    SELECT ((SELECT count(*) FROM platform_enterprise_members WHERE tenant_id = ${tenantId} AND account_key(account) IN (SELECT key FROM accounts))
      + (SELECT count(*) FROM platform_team_members WHERE tenant_id = ${tenantId} AND account_key(account) IN (SELECT key FROM accounts))
      + (SELECT count(*) FROM platform_app_collaborators WHERE tenant_id = ${tenantId} AND account_key(account) IN (SELECT key FROM accounts)))::int AS n`);
  const [shape] = await db.execute<{ requests: number }>(sql`
    SELECT (1 + ceil((SELECT count(*) FROM platform_enterprise_members WHERE tenant_id = ${tenantId}) / 1000.0)
      + (SELECT coalesce(sum(greatest(1, ceil(n / 1000.0))) + count(*), 0) FROM (
          SELECT count(m.account) AS n FROM teams t LEFT JOIN platform_team_members m ON m.team_id = t.id
          WHERE t.tenant_id = ${tenantId} GROUP BY t.id) per_team)
      + (SELECT count(*) FROM apps WHERE tenant_id = ${tenantId}))::int AS requests`);
  const queued = {
    deprovision: { jobs: deprovisions.length, requests: edges?.n ?? 0 },
    reconcile: { jobs: reconciles.length, requests: reconciles.length * REQUESTS_PER_RECONCILE },
    scan: { jobs: scans.length, requests: scans.length * (shape?.requests ?? 0) },
  };
  const available = budget.remaining ?? budget.capacity ?? 0;
  const minutesFor = (requests: number) =>
    Math.max(0, Math.ceil(((requests - available) / budget.refillPerMinute) * 10) / 10);
  const total = queued.deprovision.requests + queued.reconcile.requests + queued.scan.requests;
  return {
    budget,
    queued,
    deprovisionsDoneInMinutes: minutesFor(queued.deprovision.requests),
    allDoneInMinutes: minutesFor(total),
  };
}
