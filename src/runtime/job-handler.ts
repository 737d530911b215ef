import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../db/client.js';
import { pollAuditTrail } from '../drift/audit-trail.js';
import { failedJobsOf } from '../drift/failed-jobs.js';
import { runDriftScan } from '../drift/scan.js';
import { AUDIT_POLL, syncAuditPollSchedulers } from '../jobs/audit-poll-schedule.js';
import {
  completeAnnouncements,
  openAnnouncements,
  recordForReconcile,
  recordForReconcileEach,
} from '../jobs/outbox.js';
import type { LaneQueues } from '../jobs/queues.js';
import type { JobHandler } from '../jobs/workers.js';
import { recordActivity } from '../platform/activity.js';
import type { ConnectorFor } from '../platform/factory.js';
import { loadPlatform } from '../platform/settings.js';
import { type Cause, type ReconcileDependencies, reconcileUser } from '../reconcile/reconciler.js';

/**
 * What a job for each kind of subject does. A user job reconciles the user; a group job (a rename)
 * fans out to the group's members through the outbox, so the fan-out is as durable as any change. A
 * tenant job is a drift scan; the scheduler's tick (tenant `*`) queues the scans that are due.
 */
export function createJobHandler(
  database: DatabaseHandle,
  connectorFor: ConnectorFor,
  queues: LaneQueues,
): JobHandler {
  const deps: ReconcileDependencies = { database, connectorFor };
  return async (payload, context) => {
    const cause = (payload.cause ?? {}) as Cause;
    switch (payload.subjectType) {
      case 'user': {
        // One connection, one connector, one plan: an offboarding found in the reconcile lane is applied
        // there, at deprovision priority, instead of being planned again in the other lane.
        const lane = context.lane === 'reconcile' ? 'reconcile' : 'deprovision';
        const result = await reconcileUser(deps, payload.tenantId, payload.subjectId, cause, lane);
        context.log.info(
          {
            operations: result.applied.length,
            blocked: result.blocked.length,
            offboarding: result.offboarding,
          },
          'user reconciled',
        );
        return;
      }
      case 'group': {
        // A rename: every member is reconciled, through the outbox, so the fan-out is as durable as any change.
        const covered = await openAnnouncements(database.db, payload.tenantId, 'group', payload.subjectId);
        await database.db.transaction(async (tx) => {
          await recordForReconcileEach(
            tx,
            { lane: 'reconcile', subjectType: 'user', cause },
            sql`SELECT tenant_id, user_id FROM group_members WHERE group_id = ${payload.subjectId}`,
          );
          await completeAnnouncements(tx, covered);
        });
        return;
      }
      case 'tenant': {
        if (payload.subjectId === DRIFT_TICK) {
          await queueDueScans(database);
          await syncAuditPollSchedulers(database.db, queues.scan);
          return;
        }
        if (payload.subjectId === AUDIT_POLL) {
          // A stopped connection is not polled (its scheduler goes at the next drift tick).
          if ((await loadPlatform(database.db, payload.tenantId))?.connector_status !== 'ok') return;
          const polled = await pollAuditTrail(
            { database, connector: await connectorFor(payload.tenantId, 'scan'), log: context.log },
            payload.tenantId,
          );
          if (polled.events > 0)
            context.log.info({ ...polled, findings: polled.findings.length }, 'audit trail polled');
          return;
        }
        if (cause.event === 'schedule' && (await scannedWithinInterval(database, payload.tenantId))) return;
        const result = await runDriftScan(
          {
            database,
            connector: await connectorFor(payload.tenantId, 'scan'),
            failedJobs: () => failedJobsOf(database.db, queues, payload.tenantId),
          },
          payload.tenantId,
          String(cause.event ?? 'schedule'),
        );
        context.log.info({ report: result.reportId, findings: result.summary.total }, 'drift scan stored');
        await recordReleaseActivity(database, connectorFor, payload.tenantId);
        return;
      }
      default:
        context.log.warn({ subjectType: payload.subjectType }, 'no reconciler for this kind of subject yet');
    }
  };
}

/** Releases of the last year are read after each scan (one request per app, scan priority). */
const RELEASE_WINDOW_MS = 365 * 86_400_000;

/** Who deployed lately, from the platform's releases: part of the scan's work, in the scan lane. */
export async function recordReleaseActivity(
  database: DatabaseHandle,
  connectorFor: ConnectorFor,
  tenantId: string,
): Promise<number> {
  const connector = await connectorFor(tenantId, 'scan');
  if (!connector.activity) return 0;
  const activity = await connector.activity.releaseActivity(new Date(Date.now() - RELEASE_WINDOW_MS));
  await recordActivity(database.db, tenantId, activity);
  return activity.length;
}

/** The subject id of the scheduler's periodic tick. */
export const DRIFT_TICK = '*';

/** Queues a scan for every tenant whose latest report is older than its scan interval. */
async function queueDueScans(database: DatabaseHandle): Promise<void> {
  const due = await database.db.execute<{ id: string }>(sql`
    SELECT t.id::text FROM tenants t
    WHERE NOT EXISTS (
      SELECT 1 FROM drift_reports r WHERE r.tenant_id = t.id
        AND r.created_at > now() - make_interval(mins => t.drift_scan_interval_minutes))
    AND NOT EXISTS (
      SELECT 1 FROM outbox o WHERE o.tenant_id = t.id AND o.subject_type = 'tenant' AND o.relayed_at IS NULL)`);
  await recordForReconcile(
    database.db,
    due.map((t) => ({
      tenantId: t.id,
      lane: 'scan',
      subjectType: 'tenant',
      subjectId: t.id,
      cause: { event: 'schedule' },
    })),
  );
}

async function scannedWithinInterval(database: DatabaseHandle, tenantId: string): Promise<boolean> {
  const [row] = await database.db.execute<{ recent: boolean }>(sql`
    SELECT EXISTS (SELECT 1 FROM drift_reports r JOIN tenants t ON t.id = r.tenant_id WHERE r.tenant_id = ${tenantId}
      AND r.created_at > now() - make_interval(mins => t.drift_scan_interval_minutes)) AS recent`);
  return row?.recent ?? false;
}
