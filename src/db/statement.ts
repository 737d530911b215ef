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
  return async <Row extends Record<string, unknown>>(db: Database, values: Values): Promise<Row[]> => {
    query ??= dialect.sqlToQuery(build());
    const params = fillPlaceholders(query.params, values) as never[];
    return (await db.$client.unsafe(query.sql, params)) as unknown as Row[];
  };
}
