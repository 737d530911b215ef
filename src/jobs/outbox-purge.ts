import type { Sql } from '../db/client.js';
import type { Logger } from '../log.js';

export interface OutboxPurgeOptions {
  sql: Sql;
  log: Logger;
  /** Relayed rows older than this are deleted. */
  retentionDays: number;
  /** How often to look for rows to purge. */
  intervalMs?: number;
  /** Rows per DELETE: short statements, so a large backlog never holds locks or bloats one transaction. */
  batchSize?: number;
}

/**
 * Deletes relayed outbox rows once they are older than the retention period. Rows not yet relayed, and
 * user and group rows no job has completed, are never touched, whatever their age: they are work the
 * relay or the sweeper still owes. Several workers may purge at once; SKIP LOCKED keeps them apart.
 */
export class OutboxPurger {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(private readonly options: OutboxPurgeOptions) {}

  start(): void {
    const tick = () => {
      this.running = this.purge()
        .catch((error) =>
          this.options.log.warn(
            { component: 'outbox-purge', err: error },
            'outbox purge failed; retried later',
          ),
        )
        .finally(() => {
          this.running = undefined;
        });
    };
    this.timer = setInterval(tick, this.options.intervalMs ?? 3_600_000);
    this.timer.unref();
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** Deletes every relayed row past retention, one batch per statement; returns how many. */
  async purge(): Promise<number> {
    const batchSize = this.options.batchSize ?? 1_000;
    let total = 0;
    for (;;) {
      const deleted = await this.options.sql`
        DELETE FROM outbox WHERE id IN (
          SELECT id FROM outbox
          WHERE relayed_at < now() - make_interval(days => ${this.options.retentionDays})
            AND (completed_at IS NOT NULL OR subject_type NOT IN ('user', 'group'))
          ORDER BY id LIMIT ${batchSize} FOR UPDATE SKIP LOCKED)`;
      total += deleted.count;
      if (deleted.count < batchSize || this.stopped) break;
    }
    if (total > 0) {
      this.options.log.info({ component: 'outbox-purge', rows: total }, 'purged relayed outbox rows');
    }
    return total;
  }
}
