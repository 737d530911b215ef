/**
 * Many callers' rows written by one statement. Each statement is a write to PostgreSQL's socket, a
 * wake-up of its backend, a plan, an executor start, statement triggers and a commit; an IdP's initial
 * push sends thousands of creates at 16 or more at a time, and written one by one those fixed costs were
 * most of a create's cost (measured on the 2-core machine: 0.42 ms of PostgreSQL and 0.10–0.17 ms of
 * Node per user alone, 0.11–0.16 ms and 0.03–0.04 ms in statements of 8–16 users).
 *
 * A row goes at once while fewer than `flights` statements are running, so a lone caller waits for
 * nothing; rows that arrive while all are running wait for the next free one and go together, at most
 * `maxBatch` rows and `maxWeight` of weight per statement (a row heavier than that goes alone), so one
 * statement holds no more work than a statement timeout allows. With `slowAfterMs`, a statement running
 * longer than that (waiting on a lock another transaction holds) stops counting as a flight: the rows
 * behind it go in a new statement instead of waiting for it. Without it they wait: where the rows behind
 * would wait on the same lock, another statement would only hold another connection. Each caller's
 * promise settles when the statement holding its row has committed (or failed).
 *
 * A statement fails as a whole (it is one transaction), so one row must not take the others down with
 * it: when `isRolledBack` says PostgreSQL answered the statement with an error (bad data, a constraint,
 * a statement timeout), nothing of it was written and each of its rows is written again in a statement
 * of its own, side by side, each caller getting its own outcome. Any other failure (the connection lost
 * mid-statement, where the commit may or may not have happened) is every caller's, and is not retried.
 */
export class StatementBatcher<Row, Outcome> {
  private readonly waiting: Waiter<Row, Outcome>[] = [];
  /** When each running statement started. */
  private readonly running = new Set<{ startedAt: number }>();
  private recheck: NodeJS.Timeout | undefined;

  constructor(
    /** Writes the rows in one statement; returns one outcome per row, in the rows' order. */
    private readonly write: (rows: Row[]) => Promise<Outcome[]>,
    private readonly options: {
      flights: number;
      maxBatch: number;
      maxWeight: number;
      weigh: (row: Row) => number;
      /** Omitted: a statement counts as a flight until it ends, however long it waits. */
      slowAfterMs?: number;
      isRolledBack: (error: unknown) => boolean;
      /** Called when the last running statement ends with nothing waiting. */
      onIdle?: () => void;
    },
  ) {}

  submit(row: Row): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      this.waiting.push({ row, resolve, reject });
      this.startStatements();
    });
  }

  private startStatements(): void {
    const now = Date.now();
    const slowAfterMs = this.options.slowAfterMs ?? Number.POSITIVE_INFINITY;
    const flying = [...this.running].filter((s) => now - s.startedAt < slowAfterMs);
    while (flying.length < this.options.flights && this.waiting.length > 0) {
      const statement = { startedAt: now };
      flying.push(statement);
      this.running.add(statement);
      void this.writeBatch(this.takeBatch()).finally(() => {
        this.running.delete(statement);
        this.startStatements();
        if (this.running.size === 0 && this.waiting.length === 0) this.options.onIdle?.();
      });
    }
    if (this.waiting.length > 0 && this.recheck === undefined && this.options.slowAfterMs !== undefined) {
      // Rows wait behind statements that may turn slow: look again when the oldest would.
      const oldest = Math.min(...flying.map((s) => s.startedAt));
      this.recheck = setTimeout(
        () => {
          this.recheck = undefined;
          this.startStatements();
        },
        Math.max(1, oldest + slowAfterMs - now),
      );
    }
  }

  private takeBatch(): Waiter<Row, Outcome>[] {
    let rows = 0;
    let weight = 0;
    while (rows < this.waiting.length && rows < this.options.maxBatch) {
      const next = this.options.weigh(this.waiting[rows]!.row);
      if (rows > 0 && weight + next > this.options.maxWeight) break;
      weight += next;
      rows += 1;
    }
    return this.waiting.splice(0, rows);
  }

  private async writeBatch(batch: Waiter<Row, Outcome>[]): Promise<void> {
    let outcomes: Outcome[];
    try {
      outcomes = await this.write(batch.map((waiter) => waiter.row));
    } catch (error) {
      if (batch.length > 1 && this.options.isRolledBack(error)) {
        await Promise.all(batch.map((waiter) => this.writeBatch([waiter])));
      } else {
        for (const waiter of batch) waiter.reject(error);
      }
      return;
    }
    if (outcomes.length !== batch.length) {
      const mismatch = new Error(
        `a batched statement answered ${outcomes.length} outcomes for ${batch.length} rows`,
      );
      for (const waiter of batch) waiter.reject(mismatch);
      return;
    }
    for (const [i, waiter] of batch.entries()) waiter.resolve(outcomes[i]!);
  }
}

interface Waiter<Row, Outcome> {
  row: Row;
  resolve: (outcome: Outcome) => void;
  reject: (error: unknown) => void;
}

/**
 * A StatementBatcher per key (a tenant, a group): made when the key's first row comes, dropped when it
 * has nothing running or waiting, so keys that come and go (groups an IdP touched once) hold nothing.
 */
export class KeyedStatementBatchers<Row, Outcome> {
  private readonly batchers = new Map<string, StatementBatcher<Row, Outcome>>();

  constructor(private readonly make: (key: string, onIdle: () => void) => StatementBatcher<Row, Outcome>) {}

  submit(key: string, row: Row): Promise<Outcome> {
    let batcher = this.batchers.get(key);
    if (!batcher) {
      const made = this.make(key, () => {
        if (this.batchers.get(key) === made) this.batchers.delete(key);
      });
      this.batchers.set(key, made);
      batcher = made;
    }
    return batcher.submit(row);
  }

  /** Keys with rows running or waiting. */
  get size(): number {
    return this.batchers.size;
  }
}
