import type { Logger } from '../log.js';
import type { Sql } from './client.js';

/**
 * A table is analyzed once it has changed by at least MIN_CHANGED_ROWS and by GROWTH_FACTOR times the
 * rows it held when last analyzed: a table growing from nothing is analyzed at about 1,000, 5,000,
 * 25,000 … rows. Plans go wrong when the statistics are off by orders of magnitude (an empty table that
 * holds thousands), not by a few times; each ANALYZE of a growing table costs the push PostgreSQL CPU
 * (with a factor of 1 the 10,000-user load created 4 % fewer users a second). A table in steady state is
 * left to autovacuum (its thresholds: migration 0024).
 */
const MIN_CHANGED_ROWS = 1000;
const GROWTH_FACTOR = 4;

/**
 * Analyzes the tables of idsync's schema that have outgrown their statistics (above); answers their names. One
 * process at a time (a try-lock: the others skip the round). A table idsync's role cannot analyze (not
 * its owner) is left out rather than tried every round.
 *
 * Why: PostgreSQL plans from a table's statistics, and an IdP's initial push grows users, group_members,
 * outbox and audit_log from nothing in seconds, while autovacuum visits each database once a minute. Until
 * then a user looked up by tenant and id walked the tenant's name index instead of the primary key
 * (measured: 2.7 ms instead of 0.03 at 10,000 users, and growing with the tenant), and every pooled
 * connection kept that plan for its prepared statements. ANALYZE replans them on every connection.
 */
export async function analyzeOutgrownTables(sql: Sql): Promise<string[]> {
  return sql.begin(async (tx) => {
    const [turn] = await tx<{ ours: boolean }[]>`
      SELECT pg_try_advisory_xact_lock(hashtext('idsync:analyze-outgrown-tables')) AS ours`;
    if (!turn?.ours) return [];
    const outgrown = await tx<{ name: string }[]>`
      SELECT c.oid::regclass::text AS name FROM pg_class c
      WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
        AND pg_has_role(current_user, c.relowner, 'USAGE')
        AND pg_stat_get_mod_since_analyze(c.oid) > GREATEST(${MIN_CHANGED_ROWS}, ${GROWTH_FACTOR} * c.reltuples)
      ORDER BY 1`;
    // regclass::text is the name as an identifier, quoted where it needs to be.
    for (const { name } of outgrown) await tx.unsafe(`ANALYZE ${name}`);
    return outgrown.map((t) => t.name);
  });
}

/** Runs analyzeOutgrownTables every `intervalMs` until stopped. */
export class StatisticsKeeper {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private failing = false;
  private stopped = false;

  constructor(private readonly options: { sql: Sql; log: Logger; intervalMs?: number }) {}

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.round;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.round = this.run().finally(() => this.schedule());
    }, this.options.intervalMs ?? 1_000);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    try {
      const analyzed = await analyzeOutgrownTables(this.options.sql);
      if (analyzed.length > 0)
        this.options.log.debug({ tables: analyzed }, 'analyzed tables that outgrew their statistics');
      this.failing = false;
    } catch (error) {
      // Once per streak: an unreachable database is reported by readiness and every request already.
      if (!this.failing)
        this.options.log.warn({ err: error }, 'could not refresh table statistics; will retry');
      this.failing = true;
    }
  }
}
