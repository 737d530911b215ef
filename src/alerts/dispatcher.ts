import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Sql } from '../db/client.js';
import { PollingLoop } from '../jobs/polling-loop.js';
import type { Logger } from '../log.js';
import { WEBHOOK_CHANNEL } from './notify.js';

/** The BullMQ queue of webhook deliveries: its own lane, so a slow receiver never delays an offboarding. */
export const WEBHOOK_QUEUE = 'idsync-webhook';

/** Attempts per delivery; with back-off doubling from `backoffMs` (2 s), about 4 minutes in all. */
export const WEBHOOK_ATTEMPTS = 8;

/**
 * A delivery still pending this long after it was queued is queued again: if Redis lost its job (no
 * persistence, a failover) it is re-created; a job that ended (failed every attempt, its row left
 * pending because marking it failed did not reach the database) is removed and added afresh, since
 * BullMQ would ignore a new job under a kept job's id; a job still waiting or retrying is left alone.
 * Longer than the whole back-off of WEBHOOK_ATTEMPTS at the default delay.
 */
const REQUEUE_AFTER_SECONDS = 15 * 60;

export interface WebhookJob {
  deliveryId: number;
}

export interface WebhookDispatcherOptions {
  sql: Sql;
  redis: Redis;
  prefix: string;
  log: Logger;
  /** Safety-net poll; the NOTIFY sent with each delivery row normally wakes the dispatcher at once. */
  pollMs: number;
  /** First back-off delay; doubles per attempt (BullMQ exponential). */
  backoffMs?: number;
}

export const openWebhookQueue = (redis: Redis, prefix: string) =>
  new Queue<WebhookJob>(WEBHOOK_QUEUE, { connection: redis, prefix });

/**
 * Moves committed delivery rows into the webhook lane, at least once, like the outbox relay: rows are
 * claimed with FOR UPDATE SKIP LOCKED, queued, and marked queued in the same transaction; if Redis
 * refuses, the transaction rolls back and the rows wait. The job id is the row's, so a row queued twice
 * is one job, and one delivery is never sent twice at once.
 */
export class WebhookDispatcher {
  private readonly polling: PollingLoop;
  private readonly queue: Queue<WebhookJob>;

  constructor(private readonly options: WebhookDispatcherOptions) {
    this.queue = openWebhookQueue(options.redis, options.prefix);
    this.polling = new PollingLoop({ sql: options.sql, channel: WEBHOOK_CHANNEL, round: () => this.round() });
  }

  start(): Promise<void> {
    return this.polling.start();
  }

  /** Stops dispatching and closes its queue; answers whether that happened within `withinMs`. */
  stop(withinMs?: number): Promise<boolean> {
    return this.polling.stop(withinMs, () => this.queue.close());
  }

  async dispatchOnce(): Promise<number> {
    return this.options.sql.begin(async (tx) => {
      const rows = await tx<{ id: string; requeued: boolean }[]>`
        SELECT id::text, queued_at IS NOT NULL AS requeued FROM webhook_deliveries
        WHERE status = 'pending'
          AND (queued_at IS NULL OR queued_at < now() - make_interval(secs => ${REQUEUE_AFTER_SECONDS}))
        ORDER BY id LIMIT 200 FOR UPDATE SKIP LOCKED`;
      if (rows.length === 0) return 0;
      for (const row of rows.filter((r) => r.requeued)) {
        const kept = await this.queue.getJob(`delivery-${row.id}`);
        const state = await kept?.getState();
        if (kept && (state === 'failed' || state === 'completed')) await kept.remove();
      }
      await this.queue.addBulk(
        rows.map((row) => ({
          name: 'webhook',
          data: { deliveryId: Number(row.id) },
          opts: {
            jobId: `delivery-${row.id}`,
            attempts: WEBHOOK_ATTEMPTS,
            backoff: { type: 'exponential', delay: this.options.backoffMs ?? 2_000 },
            removeOnComplete: { age: 24 * 3600 },
            removeOnFail: { age: 7 * 24 * 3600 },
          },
        })),
      );
      await tx`UPDATE webhook_deliveries SET queued_at = now()
        WHERE id = ANY(${rows.map((r) => r.id)}::bigint[])`;
      return rows.length;
    });
  }

  /** Queues a batch; goes again at once while rows wait, else pauses for the poll. */
  private async round(): Promise<number> {
    try {
      return (await this.dispatchOnce()) > 0 ? 0 : this.options.pollMs;
    } catch (error) {
      this.options.log.warn({ err: error }, 'webhook dispatcher: could not queue deliveries; retrying');
      return this.options.pollMs;
    }
  }
}
