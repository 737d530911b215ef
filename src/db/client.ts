import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';

/**
 * Drizzle without its relational query API (`db.query.*`), which idsync does not use: building it walks
 * the whole schema, and a job builds a Database over its reserved connection every time it runs (a CPU
 * profile of a worker draining a push backlog: 1,024 of the 1,124 ms sampled inside withReservedSession).
 */
export type Database = PostgresJsDatabase & { $client: Sql };
export type Sql = postgres.Sql;

export interface DatabaseHandle {
  sql: Sql;
  db: Database;
  /** Waits up to `timeoutMs` (default 5 s) for running queries, then closes every connection. */
  close(timeoutMs?: number): Promise<void>;
}

export interface ConnectOptions {
  max?: number;
  /** A connection attempt fails after this long (postgres.js counts whole seconds; rounded up). */
  connectTimeoutMs?: number;
  /**
   * PostgreSQL cancels any statement running longer than this. Set for request-serving pools, so a
   * request cannot hang on a wedged database; left off for workers, whose drift scans may run longer.
   */
  statementTimeoutMs?: number;
  /** How the pool's sessions show in pg_stat_activity (default `idsync`). */
  applicationName?: string;
  /**
   * The pool's sessions run every prepared statement on its generic plan from the first call
   * (`plan_cache_mode`): for a pool whose statements have one good plan whatever their values, and
   * whose parameters PostgreSQL would otherwise plan anew at every call (an OFFSET it cannot estimate).
   */
  genericPlans?: boolean;
}

export function connectDatabase(url: string, options: ConnectOptions = {}): DatabaseHandle {
  const sql = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    ...(options.connectTimeoutMs ? { connect_timeout: Math.ceil(options.connectTimeoutMs / 1000) } : {}),
    connection: {
      // Identifies idsync's sessions in pg_stat_activity.
      application_name: options.applicationName ?? 'idsync',
      ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
      ...(options.genericPlans ? { plan_cache_mode: 'force_generic_plan' } : {}),
    },
  });
  const db = drizzle(preparingClient(sql));
  return { sql, db, close: (timeoutMs = 5_000) => sql.end({ timeout: Math.max(0, timeoutMs) / 1000 }) };
}

/**
 * Statements with more parameters than this are sent unprepared: their text varies with the number of
 * rows (multi-row inserts), and caching every variant on every connection would only cost memory.
 */
const MAX_PREPARED_PARAMETERS = 100;

/**
 * drizzle hands every query to postgres.js with `prepare: false` unless it was built with `.prepare(name)`.
 * postgres.js then sends an unnamed Parse and Describe, waits for the answer, and only then binds and
 * executes: two round trips per statement, and PostgreSQL plans it afresh each time. Measured with
 * pg_stat_statements on the userName filter: 0.48 ms planning against 0.09 ms executing, every call.
 * This wrapper lets postgres.js prepare parameterised statements once per connection (its own default),
 * inside transactions and savepoints too, so a repeated statement is one round trip and no planning.
 */
function preparingClient(sql: Sql): Sql {
  const wrap = (client: Sql): Sql =>
    new Proxy(client, {
      get(target, property, receiver) {
        if (property === 'unsafe') {
          return (text: string, parameters: unknown[] = [], queryOptions: Record<string, unknown> = {}) =>
            target.unsafe(text, parameters as postgres.ParameterOrJSON<never>[], {
              ...queryOptions,
              prepare: parameters.length > 0 && parameters.length <= MAX_PREPARED_PARAMETERS,
            });
        }
        if (property === 'begin' || property === 'savepoint') {
          const original = Reflect.get(target, property, receiver) as (...args: unknown[]) => unknown;
          return (...args: unknown[]) => {
            const body = args.pop() as (inner: Sql) => unknown;
            return original.call(target, ...args, (inner: Sql) => body(wrap(inner)));
          };
        }
        return Reflect.get(target, property, receiver);
      },
    });
  return wrap(sql);
}

/**
 * One pooled connection kept for one piece of work: its session-level advisory locks and every query
 * of the work go over it. A job that held a connection for its lock and then queried through the pool
 * could wedge a worker once every connection was held by such a job (issue 12); a job that uses only its
 * own connection needs exactly one, whatever else is running.
 */
export interface ReservedSession {
  sql: postgres.ReservedSql;
  /** Drizzle over the reserved connection. It has no `transaction()`: use `inTransaction`. */
  db: Database;
}

/**
 * Opens every connection of the pool and runs `work` once on each: all are reserved before any is used,
 * so each is a different connection, and none is handed back before every `work` has settled. Rejects
 * with the first failure.
 */
export async function onEachConnection(
  handle: DatabaseHandle,
  work: (session: ReservedSession) => Promise<void>,
): Promise<void> {
  const opened = await Promise.allSettled(
    Array.from({ length: handle.sql.options.max }, () => handle.sql.reserve()),
  );
  const reserved = opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  try {
    const settled = opened.some((result) => result.status === 'rejected')
      ? opened
      : await Promise.allSettled(reserved.map((connection) => work(sessionOn(handle, connection))));
    const failed = settled.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    for (const connection of reserved) connection.release();
  }
}

function sessionOn(handle: DatabaseHandle, reserved: postgres.ReservedSql): ReservedSession {
  // Drizzle reads the client's type options; the reserved connection shares the pool's.
  const client = Object.assign(reserved, { options: handle.sql.options }) as unknown as Sql;
  return { sql: reserved, db: drizzle(preparingClient(client)) };
}

export async function withReservedSession<T>(
  handle: DatabaseHandle,
  work: (session: ReservedSession) => Promise<T>,
): Promise<T> {
  const reserved = await handle.sql.reserve();
  try {
    return await work(sessionOn(handle, reserved));
  } finally {
    reserved.release();
  }
}
