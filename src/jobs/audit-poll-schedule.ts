import type { Queue } from 'bullmq';
import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { JobPayload } from './queues.js';

/** The subject id of a tenant's audit-trail poll job (subject type `tenant`). */
export const AUDIT_POLL = 'audit-poll';

const schedulerId = (tenantId: string) => `${AUDIT_POLL}:${tenantId}`;

/**
 * One BullMQ job scheduler per tenant whose platform has an audit trail (Heroku), every
 * `audit_poll_seconds`, in the scan lane: polls share the platform's rate budget with scans and always
 * yield to deprovisioning. Upserting is idempotent (BullMQ keeps one scheduler per id, whichever worker
 * writes it), so every worker may run this at start and on each drift tick; a tenant whose connection
 * stopped or moved off Heroku loses its scheduler.
 */
export async function syncAuditPollSchedulers(db: Database, queue: Queue<JobPayload>): Promise<number> {
  const tenants = await db.execute<{ id: string; seconds: number }>(sql`
    SELECT id::text, audit_poll_seconds AS seconds FROM tenants
    WHERE connector = 'heroku' AND connector_status = 'ok'`);
  const wanted = new Set(tenants.map((t) => schedulerId(t.id)));
  for (const tenant of tenants) {
    await queue.upsertJobScheduler(
      schedulerId(tenant.id),
      { every: tenant.seconds * 1000 },
      {
        name: AUDIT_POLL,
        data: { tenantId: tenant.id, subjectType: 'tenant', subjectId: AUDIT_POLL },
        opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
      },
    );
  }
  for (const scheduler of await queue.getJobSchedulers()) {
    if (scheduler.key.startsWith(`${AUDIT_POLL}:`) && !wanted.has(scheduler.key)) {
      await queue.removeJobScheduler(scheduler.key);
    }
  }
  return tenants.length;
}
