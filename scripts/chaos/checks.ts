import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { DatabaseHandle } from '../../src/db/client.js';
import { LANES, queueName } from '../../src/jobs/queues.js';

/*
 * What "nothing lost, nothing doubled" means, measured from PostgreSQL and BullMQ after a run. Every
 * figure is a count a human could check with one query.
 */

export interface Verdict {
  /** Edges (memberships, collaborations, live tokens) that differ from what the IdP wants. */
  edgesMissed: number;
  /** Platform operations applied more than once to the same user (the audit log's outcomes). */
  appliedTwice: number;
  /** Receipts beyond one per offboarded user, or for a user who was not offboarded. */
  spuriousReceipts: number;
  /** Offboarded users with no receipt. */
  missingReceipts: number;
  /** Receipts not marked complete. */
  incompleteReceipts: number;
  /** Jobs left in BullMQ's failed set (each would need `idsync jobs retry`). */
  jobsLeftFailed: number;
  /** Whether the cluster reached the expected state before the deadline, untouched by a human. */
  converged: boolean;
  pass: boolean;
}

export async function appliedTwice(database: DatabaseHandle, tenantId: string): Promise<number> {
  const [row] = await database.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM (
      SELECT subject_id, after->'operation' FROM audit_log
      WHERE tenant_id = ${tenantId} AND action LIKE 'platform.%' AND after->>'outcome' = 'applied'
      GROUP BY subject_id, after->'operation' HAVING count(*) > 1) twice`;
  return row!.n;
}

export async function receiptFigures(database: DatabaseHandle, tenantId: string, offboarded: string[]) {
  const [row] = await database.sql<
    { spurious: number; missing: number; incomplete: number; total: number; empty: number }[]
  >`
    WITH expected AS (SELECT unnest(${offboarded}::uuid[]) AS user_id),
    ranked AS (
      SELECT r.*, row_number() OVER (PARTITION BY r.user_id ORDER BY r.started_at) AS n,
        EXISTS (SELECT 1 FROM expected e WHERE e.user_id = r.user_id) AS wanted
      FROM receipts r WHERE r.tenant_id = ${tenantId})
    SELECT
      (SELECT count(*) FROM ranked WHERE NOT wanted OR n > 1)::int AS spurious,
      (SELECT count(*) FROM expected e WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE r.user_id = e.user_id))::int AS missing,
      (SELECT count(*) FROM ranked WHERE completed_at IS NULL)::int AS incomplete,
      (SELECT count(*) FROM ranked)::int AS total,
      (SELECT count(*) FROM ranked r WHERE r.tokens_revoked = 0
         AND NOT EXISTS (SELECT 1 FROM receipt_edges e WHERE e.receipt_id = r.id))::int AS empty`;
  return row!;
}

/** Built-in platform edges and live idsync tokens the given (offboarded) users still hold. */
export async function builtinEdgesLeft(
  database: DatabaseHandle,
  tenantId: string,
  users: { id: string; account: string }[],
): Promise<number> {
  const accounts = users.map((u) => u.account);
  const [row] = await database.sql<{ n: number }[]>`
    SELECT ((SELECT count(*) FROM platform_enterprise_members WHERE tenant_id = ${tenantId} AND account = ANY(${accounts}))
      + (SELECT count(*) FROM platform_team_members WHERE tenant_id = ${tenantId} AND account = ANY(${accounts}))
      + (SELECT count(*) FROM platform_app_collaborators WHERE tenant_id = ${tenantId} AND account = ANY(${accounts}))
      + (SELECT count(*) FROM tokens WHERE user_id = ANY(${users.map((u) => u.id)}::uuid[]) AND revoked_at IS NULL))::int AS n`;
  return row!.n;
}

/** The BullMQ queues idsync uses (default prefix), read from the harness. */
export class QueueProbe {
  private readonly queues: Queue[];

  constructor(
    private readonly connection: Redis,
    prefix = 'idsync',
  ) {
    this.queues = LANES.map((lane) => new Queue(queueName(lane), { connection, prefix }));
    for (const q of this.queues) q.on('error', () => {});
  }

  /** Jobs waiting, delayed or running in the deprovision and reconcile lanes. */
  async pending(): Promise<number> {
    let n = 0;
    for (const q of this.queues.slice(0, 2)) {
      const c = await q.getJobCounts('wait', 'prioritized', 'delayed', 'active', 'waiting-children');
      n += Object.values(c).reduce((a, b) => a + b, 0);
    }
    return n;
  }

  async failed(): Promise<number> {
    let n = 0;
    for (const q of this.queues) n += (await q.getJobCounts('failed')).failed ?? 0;
    return n;
  }

  /** Jobs whose worker died while they ran: how many once, how many twice or more. */
  async stalls(): Promise<{ once: number; twiceOrMore: number }> {
    let once = 0;
    let twice = 0;
    for (const q of this.queues.slice(0, 2)) {
      const jobs = await q.getJobs(['completed', 'failed', 'active', 'wait', 'delayed', 'prioritized']);
      for (const job of jobs) {
        if (job.stalledCounter >= 2) twice += 1;
        else if (job.stalledCounter === 1) once += 1;
      }
    }
    return { once, twiceOrMore: twice };
  }

  /** A running deprovision or reconcile job that has already been through one worker's death. */
  async activeStalledJob(): Promise<string | undefined> {
    for (const q of this.queues.slice(0, 2)) {
      for (const job of await q.getActive()) if (job.stalledCounter >= 1) return job.id;
    }
    return undefined;
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()));
    this.connection.disconnect();
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `condition` until it holds or `timeoutMs` passes; returns whether it held. */
export async function waitFor(
  condition: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 500,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await condition()) return true;
    } catch {
      // a dependency may be coming back; keep polling until the deadline
    }
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}
