import type { Logger } from '../log.js';
import type { Sql } from './client.js';

/**
 * A table is analyzed once it has changed by at least MIN_CHANGED_ROWS and by GROWTH_FACTOR times the
 * rows it held when last analyzed: a table growing from nothing is analyzed at about 1,000, 5,000,
 * 25,000 … rows. A table never analyzed (PostgreSQL then guesses its size from its pages, which says
 * thousands of rows for a table of a few) is analyzed at its first change, which costs next to nothing at
 * that size: until then a user page looked up each user's groups by a bitmap scan of group_members
 * (measured: a page of 100 users took PostgreSQL 1.6 ms with group_members never analyzed, 0.95 ms after,
 * by an index scan). Plans go wrong when the statistics are off by orders of magnitude (an empty table that
 * holds thousands), not by a few times; each ANALYZE of a growing table costs the push PostgreSQL CPU
 * (with a factor of 1 the 10,000-user load created 4 % fewer users a second). In steady state only a
 * small table changed on every write (user_counts: 16 rows) comes up, every 1,000 writes, and costs
 * nothing; the rest is left to autovacuum (its thresholds: migration 0024).
 */
const MIN_CHANGED_ROWS = 1000;
const GROWTH_FACTOR = 4;

export interface AnalyzeRound {
  analyzed: string[];
  /** Tables someone held (a migration, a REINDEX): skipped, for the next round. */
  held: string[];
  /** Tables whose ANALYZE failed, with the reason; the others of the round were analyzed regardless. */
  failed: { table: string; reason: string }[];
}

/**
 * Analyzes the tables of idsync's schema that have outgrown their statistics (above). One process at a
 * time (a session try-lock on a connection of its own: the others skip the round). A table idsync's role
 * cannot analyze (not its owner) is left out rather than tried every round.
 *
 * Each ANALYZE is a statement of its own, with SKIP_LOCKED and no statement timeout: it holds one table's
 * lock at a time and only while it runs (never in a lock-order cycle with a migration or a REINDEX), a
 * table someone holds is left for the next round instead of waited for, and a table that fails does not
 * keep the others from being analyzed.
 *
 * Why: PostgreSQL plans from a table's statistics, and an IdP's initial push grows users, group_members,
 * outbox and audit_log from nothing in seconds, while autovacuum visits each database once a minute. Until
 * then a user looked up by tenant and id walked the tenant's name index instead of the primary key
 * (measured: 2.7 ms instead of 0.03 at 10,000 users, and growing with the tenant), and every pooled
 * connection kept that plan for its prepared statements. ANALYZE replans them on every connection.
 */
export async function analyzeOutgrownTables(sql: Sql): Promise<AnalyzeRound> {
  const session = await sql.reserve();
  try {
    const [turn] = await session<{ ours: boolean }[]>`
      SELECT pg_try_advisory_lock(hashtextextended('idsync:analyze-outgrown-tables', 0)) AS ours`;
    if (!turn?.ours) return { analyzed: [], held: [], failed: [] };
    let timeoutLifted = false;
    try {
      const outgrown = await session<{ name: string }[]>`
        SELECT c.oid::regclass::text AS name FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
          AND pg_has_role(current_user, c.relowner, 'USAGE')
          AND (pg_stat_get_mod_since_analyze(c.oid) > GREATEST(${MIN_CHANGED_ROWS}, ${GROWTH_FACTOR} * c.reltuples)
            -- reltuples is -1 until the table's first ANALYZE or VACUUM (PostgreSQL 14 on).
            OR (c.reltuples < 0 AND pg_stat_get_mod_since_analyze(c.oid) > 0))
        ORDER BY 1`;
      const round: AnalyzeRound = { analyzed: [], held: [], failed: [] };
      if (outgrown.length === 0) return round;
      const names = outgrown.map((t) => t.name);
      // A table SKIP_LOCKED passes over is only a WARNING; whether its last analysis moved tells.
      const lastAnalyzed = async () =>
        new Map(
          (
            await session<{ name: string; at: string | null }[]>`
              SELECT name, pg_stat_get_last_analyze_time(name::regclass)::text AS at FROM unnest(${names}::text[]) name`
          ).map((t) => [t.name, t.at]),
        );
      const before = await lastAnalyzed();
      // The API's statement timeout is for requests; a large table's sample may take longer.
      await session`SET statement_timeout = 0`;
      timeoutLifted = true;
      const failed = new Set<string>();
      for (const name of names) {
        try {
          // regclass::text is the name as an identifier, quoted where it needs to be.
          await session.unsafe(`ANALYZE (SKIP_LOCKED) ${name}`);
        } catch (error) {
          failed.add(name);
          round.failed.push({ table: name, reason: error instanceof Error ? error.message : String(error) });
        }
      }
      const after = await lastAnalyzed();
      for (const name of names) {
        if (!failed.has(name))
          (after.get(name) === before.get(name) ? round.held : round.analyzed).push(name);
      }
      return round;
    } finally {
      if (timeoutLifted) await session`RESET statement_timeout`;
      await session`SELECT pg_advisory_unlock(hashtextextended('idsync:analyze-outgrown-tables', 0))`;
    }
  } finally {
    session.release();
  }
}

const FAILED_ROUND_PAUSE_MS = 30_000;

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
    // After a failed round (the database away, a table that cannot be analyzed) the next waits longer.
    const pauseMs = this.failing ? FAILED_ROUND_PAUSE_MS : (this.options.intervalMs ?? 1_000);
    this.timer = setTimeout(() => {
      this.round = this.run().finally(() => this.schedule());
    }, pauseMs);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    try {
      const round = await analyzeOutgrownTables(this.options.sql);
      if (round.analyzed.length > 0)
        this.options.log.debug({ tables: round.analyzed }, 'analyzed tables that outgrew their statistics');
      if (round.failed.length > 0)
        throw new Error(round.failed.map((f) => `${f.table}: ${f.reason}`).join('; '));
      this.failing = false;
    } catch (error) {
      // Once per streak: an unreachable database is reported by readiness and every request already.
      if (!this.failing)
        this.options.log.warn({ err: error }, 'could not refresh table statistics; will retry');
      this.failing = true;
    }
  }
}
