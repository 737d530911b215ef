import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import * as schema from './schema.js';

export type Database = PostgresJsDatabase<typeof schema>;
export type Sql = postgres.Sql;

export interface DatabaseHandle {
  sql: Sql;
  db: Database;
  close(): Promise<void>;
}

export function connectDatabase(url: string, options: { max?: number } = {}): DatabaseHandle {
  const sql = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    // Identifies idsync's sessions in pg_stat_activity.
    connection: { application_name: 'idsync' },
  });
  const db = drizzle(sql, { schema });
  return { sql, db, close: () => sql.end({ timeout: 5 }) };
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

export async function withReservedSession<T>(
  handle: DatabaseHandle,
  work: (session: ReservedSession) => Promise<T>,
): Promise<T> {
  const reserved = await handle.sql.reserve();
  try {
    // Drizzle reads the client's type options; the reserved connection shares the pool's.
    const client = Object.assign(reserved, { options: handle.sql.options }) as unknown as Sql;
    return await work({ sql: reserved, db: drizzle(client, { schema }) });
  } finally {
    reserved.release();
  }
}
