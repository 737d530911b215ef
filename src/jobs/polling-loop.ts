import type { Sql } from '../db/client.js';
import { settlesWithin } from './settles-within.js';

export interface PollingLoopOptions {
  sql: Sql;
  /** The PostgreSQL channel whose NOTIFY wakes the loop at once instead of at the next poll. */
  channel: string;
  /**
   * One round of work; answers how long to pause before the next (0: at once, e.g. more rows wait; the
   * poll interval when idle; a back-off after a failure). It handles and logs its own errors: a round
   * that throws ends the loop.
   */
  round: () => Promise<number>;
}

/**
 * Runs rounds of work until stopped, between them sleeping until a NOTIFY on the channel or the pause
 * the round asked for, whichever comes first: the shape of every PostgreSQL-to-Redis mover (the outbox
 * relay, the webhook dispatcher), where the NOTIFY is the fast path and the poll the safety net.
 */
export class PollingLoop {
  private running = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private unlisten: (() => Promise<void>) | undefined;

  constructor(private readonly options: PollingLoopOptions) {}

  async start(): Promise<void> {
    this.running = true;
    const listener = await this.options.sql.listen(this.options.channel, () => this.wake?.());
    this.unlisten = () => listener.unlisten();
    this.loop = this.run();
  }

  /**
   * Stops: the round under way finishes, the LISTEN ends, then `andThen` runs (closing what the rounds
   * used). Answers whether all of it settled within `withinMs` (the caller's share of the shutdown
   * budget); what did not goes on in the background.
   */
  async stop(withinMs = Number.POSITIVE_INFINITY, andThen?: () => Promise<unknown>): Promise<boolean> {
    this.running = false;
    this.wake?.();
    const stopped = (async () => {
      await this.loop;
      await this.unlisten?.().catch(() => {});
      await andThen?.();
    })();
    return settlesWithin(stopped, withinMs);
  }

  private async run(): Promise<void> {
    while (this.running) await this.pause(await this.options.round());
  }

  private pause(ms: number): Promise<void> {
    if (!this.running || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}
