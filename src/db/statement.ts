import { fillPlaceholders, is, Param, Placeholder, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { Database } from './client.js';

const dialect = new PgDialect();

/**
 * A prepared statement's SQL text with each placeholder bound once. drizzle sends every occurrence of a
 * value as a parameter of its own: the `userName eq` page sent the tenant id five times and the base URL
 * and the user name twice, 14 parameters and ~600 bytes per Bind (with three constant URNs) for 5
 * values. postgres.js sends what it holds at once when that reaches 1 KB, so two lookups went per socket
 * write; PostgreSQL parsed each copy again.
 *
 * The same placeholder (by name, and by the encoder a column gave it) is one `$n` wherever it occurs, so
 * one parameter of one type: PostgreSQL resolves that type from whichever use its parse analysis meets
 * first (not necessarily the first in the text), and postgres.js then sends the value as that type. Every
 * use of a placeholder must therefore take the same type; cast it where a use differs.
 * `test/prepared-statements.test.ts` compares each hot statement's parameter types with drizzle's own
 * numbering. Values that are not placeholders stay parameters.
 */
export function boundOnce(statement: SQL): { sql: string; params: unknown[] } {
  const slots = new Map<string, Map<unknown, string>>();
  const kept: boolean[] = [];
  let count = 0;
  const escapeParam = (index: number, value: unknown): string => {
    const placeholder = is(value, Placeholder)
      ? value
      : is(value, Param) && is(value.value, Placeholder)
        ? value.value
        : undefined;
    const encoder = is(value, Param) ? value.encoder : undefined;
    const byEncoder = placeholder && (slots.get(placeholder.name) ?? new Map<unknown, string>());
    const slot = byEncoder?.get(encoder);
    kept[index] = slot === undefined;
    if (slot !== undefined) return slot;
    count += 1;
    if (placeholder && byEncoder) {
      slots.set(placeholder.name, byEncoder);
      byEncoder.set(encoder, `$${count}`);
    }
    return `$${count}`;
  };
  const query = new SlotDialect(escapeParam).sqlToQuery(statement);
  return { sql: query.sql, params: query.params.filter((_, index) => kept[index]) };
}

/** drizzle's dialect with its parameter numbering replaced (it hands escapeParam on unbound, hence bind). */
class SlotDialect extends PgDialect {
  constructor(private readonly slotFor: (index: number, value: unknown) => string) {
    super();
    this.escapeParam = this.escapeParam.bind(this);
  }

  override escapeParam(index: number, value?: unknown): string {
    return this.slotFor(index, value);
  }
}

/**
 * A statement for a hot request path, turned into SQL text once instead of on every call. Its varying
 * values are `sql.placeholder(name)`s; postgres.js prepares it per connection. Building a large drizzle
 * template (a SCIM User rendered as JSON is ~40 fragments) cost more Node CPU per request than reading
 * the answer did.
 */
export function preparedStatement<Values extends Record<string, unknown>>(build: () => SQL) {
  let query: { sql: string; params: unknown[] } | undefined;
  const bound = (values: Values) => {
    query ??= boundOnce(build());
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
