import { sql } from 'drizzle-orm';
import { type DatabaseHandle, withReservedSession } from '../db/client.js';
import type { Logger } from '../log.js';
import { recordForReconcileEach } from './outbox.js';

export interface SweeperOptions {
  database: DatabaseHandle;
  log: Logger;
  /** How often each worker tries to sweep (one at a time across workers, by an advisory lock). */
  intervalMs: number;
  /** How long work may take before the sweeper treats it as lost. */
  graceMs: number;
  /** Most subjects one sweep sends again, so a sweep after a long outage stays one short statement. */
  batchSize?: number;
}

export interface SweepResult {
  /** False when another worker held the sweeper's lock. */
  swept: boolean;
  /** Outbox rows relayed longer than the grace ago and never completed: sent again. */
  resent: number;
  /** Offboarded users with access or tokens left and nothing in flight: queued for deprovisioning. */
  offboardingsQueued: number;
}

/**
 * A deprovision is done when its receipt is complete in PostgreSQL, not when a job was queued: Redis may
 * forget jobs (no persistence, a failover, FLUSHALL) after the relay marked their rows relayed, and a job
 * may fail for good. The sweeper finds, from PostgreSQL alone,
 * - outbox rows relayed more than `graceMs` ago that no finished job covered: it sends them again (a new
 *   job id; BullMQ's per-subject deduplication drops the copy if the first job is in fact still queued);
 * - users the IdP turned off more than `graceMs` ago who still have a platform grant or a live token and
 *   have no outbox row in flight (e.g. their jobs failed for good, or their rows were purged): it queues
 *   a deprovision; so are users whose receipt a dead worker left unfinished (edges still `removing`).
 *   A user with nothing left and no receipt open is never queued, so no empty receipt is ever written.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(private readonly options: SweeperOptions) {}

  start(): void {
    const tick = () => {
      this.running = this.sweepOnce()
        .catch((error: Error) =>
          this.options.log.warn({ component: 'sweeper', err: { message: error.message } }, 'sweep failed'),
        )
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, this.options.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.options.intervalMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  async sweepOnce(): Promise<SweepResult> {
    const { database, graceMs } = this.options;
    const limit = this.options.batchSize ?? 1_000;
    return withReservedSession(database, async ({ sql: connection, db }) => {
      const [lock] = await connection<{ locked: boolean }[]>`
        SELECT pg_try_advisory_lock(hashtextextended('idsync:sweeper', 0)) AS locked`;
      if (!lock?.locked) return { swept: false, resent: 0, offboardingsQueued: 0 };
      try {
        const resent = await db.execute(sql`
          UPDATE outbox SET relayed_at = NULL WHERE id IN (
            SELECT id FROM outbox
            WHERE completed_at IS NULL AND relayed_at < now() - make_interval(secs => ${graceMs / 1000})
              AND subject_type IN ('user', 'group')
            ORDER BY id LIMIT ${limit})`);
        const offboardingsQueued = await recordForReconcileEach(
          db,
          { lane: 'deprovision', subjectType: 'user', cause: { event: 'sweeper.offboarding-unfinished' } },
          sql`
            SELECT u.tenant_id, u.id FROM users u JOIN tenants t ON t.id = u.tenant_id
            WHERE u.deactivated_at < now() - make_interval(secs => ${graceMs / 1000})
              AND t.connector_status <> 'stopped'
              AND NOT EXISTS (
                SELECT 1 FROM outbox o WHERE o.tenant_id = u.tenant_id AND o.subject_type = 'user'
                  AND o.subject_id = u.id::text
                  AND (o.completed_at IS NULL OR o.created_at > now() - make_interval(secs => ${graceMs / 1000})))
              AND (
                EXISTS (SELECT 1 FROM platform_enterprise_members e
                  WHERE e.tenant_id = u.tenant_id AND account_key(e.account) = u.user_name_key)
                OR EXISTS (SELECT 1 FROM platform_team_members m
                  WHERE m.tenant_id = u.tenant_id AND account_key(m.account) = u.user_name_key)
                OR EXISTS (SELECT 1 FROM platform_app_collaborators c
                  WHERE c.tenant_id = u.tenant_id AND account_key(c.account) = u.user_name_key)
                OR EXISTS (SELECT 1 FROM tokens k WHERE k.user_id = u.id AND k.revoked_at IS NULL)
                OR EXISTS (SELECT 1 FROM receipts r WHERE r.user_id = u.id AND r.completed_at IS NULL))
            LIMIT ${limit}`,
        );
        if (resent.count > 0) await connection`SELECT pg_notify('idsync_outbox', '')`;
        const result = { swept: true, resent: resent.count, offboardingsQueued };
        if (resent.count > 0 || offboardingsQueued > 0) {
          this.options.log.warn(
            { component: 'sweeper', ...result },
            'sweeper sent again work that was lost or never finished',
          );
        }
        return result;
      } finally {
        await connection`SELECT pg_advisory_unlock(hashtextextended('idsync:sweeper', 0))`;
      }
    });
  }
}
