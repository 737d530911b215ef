import type { Sql } from '../db/client.js';
import { isUuid } from '../db/uuid.js';
import type { Logger } from '../log.js';
import { settleAnnouncements } from '../reconcile/untouched.js';
import { type JobPayload, jobOptions, type Lane, type LaneQueues, type SubjectType } from './queues.js';

interface OutboxRow {
  id: string;
  tenant_id: string;
  lane: Lane;
  subject_type: SubjectType;
  subject_id: string;
  cause: Record<string, unknown>;
  relay_count: number;
}

export interface OutboxRelayOptions {
  sql: Sql;
  queues: LaneQueues;
  log: Logger;
  /** Safety-net poll; a NOTIFY from the outbox trigger normally wakes the relay at once. */
  pollMs: number;
  batchSize?: number;
}

/**
 * Moves committed outbox rows into BullMQ, at least once. Rows are claimed with FOR UPDATE SKIP LOCKED
 * (several relays can run side by side), added to their lane's queue, and marked relayed in the same
 * transaction; if Redis refuses, the transaction rolls back and the rows wait for the next attempt. A
 * row relayed twice (Redis accepted, commit lost) yields one job: its job id is derived from the row id.
 * Reconcile-lane rows of users no rule touches and who hold nothing (most of an IdP's initial push) are
 * settled in the same transaction by one statement for the whole batch (`settleAnnouncements`) and never
 * become jobs: the push then costs the reconciler a statement per batch, not a job per user.
 */
export class OutboxRelay {
  private running = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private failing = false;

  constructor(private readonly options: OutboxRelayOptions) {}

  async start(): Promise<void> {
    this.running = true;
    const listener = await this.options.sql.listen('idsync_outbox', () => this.wake?.());
    this.unlisten = () => listener.unlisten();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.unlisten?.().catch(() => {});
  }

  /** Relays one batch; returns how many rows it moved. */
  async relayOnce(): Promise<number> {
    const batchSize = this.options.batchSize ?? 500;
    return this.options.sql.begin(async (tx) => {
      const rows = await tx<OutboxRow[]>`
        SELECT id, tenant_id, lane, subject_type, subject_id, cause, relay_count FROM outbox
        WHERE relayed_at IS NULL AND completed_at IS NULL ORDER BY id LIMIT ${batchSize} FOR UPDATE SKIP LOCKED`;
      if (rows.length === 0) return 0;
      const quiet = await settleAnnouncements(
        tx,
        rows
          .filter((r) => r.lane === 'reconcile' && r.subject_type === 'user' && isUuid(r.subject_id))
          .map((r) => ({ outboxId: r.id, tenantId: r.tenant_id, userId: r.subject_id })),
      );
      const toQueue = rows.filter(
        (r) => !(r.lane === 'reconcile' && r.subject_type === 'user' && quiet.has(r.subject_id)),
      );
      const byLane = new Map<Lane, OutboxRow[]>();
      for (const row of toQueue) byLane.set(row.lane, [...(byLane.get(row.lane) ?? []), row]);
      for (const [lane, laneRows] of byLane) {
        await this.options.queues[lane].addBulk(
          laneRows.map((row) => {
            const payload: JobPayload = {
              tenantId: row.tenant_id,
              subjectType: row.subject_type,
              subjectId: row.subject_id,
              outboxId: Number(row.id),
              cause: row.cause,
            };
            return {
              name: `${row.subject_type}:${lane}`,
              data: payload,
              opts: jobOptions(payload, lane, row.relay_count + 1),
            };
          }),
        );
      }
      await tx`UPDATE outbox SET relayed_at = now(), relay_count = relay_count + 1
        WHERE id = ANY(${toQueue.map((r) => r.id)}::bigint[])`;
      return rows.length;
    });
  }

  private async run(): Promise<void> {
    let backoffMs = 100;
    while (this.running) {
      let moved = 0;
      try {
        moved = await this.relayOnce();
        // An empty poll proves only that PostgreSQL answers; Redis may still be down, so it is asked.
        if (this.failing && (moved > 0 || (await this.redisAnswers()))) {
          this.options.log.info({ component: 'outbox-relay' }, 'outbox relay recovered');
          this.failing = false;
        }
        backoffMs = 100;
      } catch (error) {
        if (!this.failing) {
          this.options.log.warn(
            { component: 'outbox-relay', err: error },
            'outbox relay cannot reach Redis or PostgreSQL; rows stay in the outbox and will be retried',
          );
        }
        this.failing = true;
        await this.pause(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 5_000);
        continue;
      }
      if (moved === 0) await this.pause(this.options.pollMs);
    }
  }

  private async redisAnswers(): Promise<boolean> {
    try {
      await this.options.queues.deprovision.getJobCounts('wait');
      return true;
    } catch {
      return false;
    }
  }

  private pause(ms: number): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }
}
