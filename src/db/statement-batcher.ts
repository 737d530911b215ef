/**
 * Many callers' rows written by one statement. Each statement is a write to PostgreSQL's socket, a
 * wake-up of its backend, a plan, an executor start, statement triggers and a commit; an IdP's initial
 * push sends thousands of creates at 16 or more at a time, and written one by one those fixed costs were
 * most of a create's cost (measured on the 2-core machine: 0.42 ms of PostgreSQL and 0.10–0.17 ms of
 * Node per user alone, 0.11–0.16 ms and 0.03–0.04 ms in statements of 8–16 users).
 *
 * No timer: a row goes at once while fewer than `flights` statements are running, so a lone caller
 * waits for nothing; rows that arrive while all are running wait for the next free one and go together,
 * at most `maxBatch` per statement. Each caller's promise settles when the statement holding its row
 * has committed (or failed).
 *
 * A statement fails as a whole (it is one transaction), so a row that cannot be written must not take
 * the others down with it: when `isRowError` says the failure may be one row's doing (bad data, a
 * constraint), the statement's rows are written again one per statement and each caller gets its own
 * outcome. Any other failure (the connection lost mid-statement, where the commit may or may not have
 * happened) is every caller's, and is not retried here.
 */
export class StatementBatcher<Row, Outcome> {
  private readonly waiting: {
    row: Row;
    resolve: (outcome: Outcome) => void;
    reject: (error: unknown) => void;
  }[] = [];
  private running = 0;

  constructor(
    /** Writes the rows in one statement; returns one outcome per row, in the rows' order. */
    private readonly write: (rows: Row[]) => Promise<Outcome[]>,
    private readonly options: { flights: number; maxBatch: number; isRowError: (error: unknown) => boolean },
  ) {}

  submit(row: Row): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      this.waiting.push({ row, resolve, reject });
      this.startStatements();
    });
  }

  private startStatements(): void {
    while (this.running < this.options.flights && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.options.maxBatch);
      this.running += 1;
      void this.writeBatch(batch).finally(() => {
        this.running -= 1;
        this.startStatements();
      });
    }
  }

  private async writeBatch(batch: typeof this.waiting): Promise<void> {
    let outcomes: Outcome[];
    try {
      outcomes = await this.write(batch.map((waiter) => waiter.row));
    } catch (error) {
      if (batch.length > 1 && this.options.isRowError(error)) {
        for (const waiter of batch) await this.writeBatch([waiter]);
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
