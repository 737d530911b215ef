import { fillPlaceholders, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { Database } from './client.js';

const dialect = new PgDialect();

/**
 * A statement for a hot request path, turned into SQL text once instead of on every call. Its varying
 * values are `sql.placeholder(name)`s; postgres.js prepares it per connection. Building a large drizzle
 * template (a SCIM User rendered as JSON is ~40 fragments) cost more Node CPU per request than reading
 * the answer did.
 */
export function preparedStatement<Values extends Record<string, unknown>>(build: () => SQL) {
  let query: { sql: string; params: unknown[] } | undefined;
  const bound = (values: Values) => {
    query ??= dialect.sqlToQuery(build());
    return { text: query.sql, params: fillPlaceholders(query.params, values) as never[] };
  };
  const rows = async <Row extends Record<string, unknown>>(db: Database, values: Values): Promise<Row[]> => {
    const { text, params } = bound(values);
    return (await db.$client.unsafe(text, params)) as unknown as Row[];
  };
  return Object.assign(rows, {
    /** The same rows as arrays of column values as they came off the wire (see rawRows). */
    raw: async (db: Database, values: Values): Promise<RawRow[]> => {
      const { text, params } = bound(values);
      return (await db.$client.unsafe(text, params).raw()) as unknown as RawRow[];
    },
    /**
     * Prepares it on the connection without running it: parsed and described, not yet planned, so
     * nothing about `values` weighs in PostgreSQL's later choice between custom and generic plans.
     */
    prepare: async (db: Database, values: Values): Promise<void> => {
      const { text, params } = bound(values);
      await db.$client.unsafe(text, params).describe();
    },
  });
}

/** A row as postgres.js's raw mode gives it: each column's bytes (text format), null for NULL. */
export type RawRow = (Buffer | null)[];

/**
 * Runs a built statement and keeps its rows in wire form: for text relayed to a client as it is (a page
 * of rendered users), decoding each value into a JS string and encoding it again for the socket was most
 * of the garbage a page made.
 */
export async function rawRows(db: Database, statement: SQL): Promise<RawRow[]> {
  const { sql: text, params } = dialect.sqlToQuery(statement);
  return (await db.$client.unsafe(text, params as never[]).raw()) as unknown as RawRow[];
}
