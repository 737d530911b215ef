import { Param, sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { accountKeyOf } from '../src/db/schema.js';
import { boundOnce, preparedStatement } from '../src/db/statement.js';
import { ENTERPRISE_USER_SCHEMA, USER_SCHEMA } from '../src/scim/schemas.js';
import { userPageSql } from '../src/scim/user-queries.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/*
 * Issue 17: a hot statement sends each of its values once. drizzle numbers every occurrence of a value as a
 * parameter of its own; boundOnce gives a placeholder one `$n` wherever it occurs and writes the
 * statement's constant strings in as literals, which must read back as exactly the same strings.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});

describe('a prepared statement', () => {
  it('binds a placeholder used in several places once, and PostgreSQL sees the one value everywhere', async () => {
    const statement = sql`SELECT ${sql.placeholder('a')}::text AS first, ${sql.placeholder('b')}::int AS b,
      ${sql.placeholder('a')}::text AS again, (${sql.placeholder('a')}::text = ${sql.placeholder('a')}::text) AS same`;
    const bound = boundOnce(statement);
    expect(bound.sql).toContain('$1::text AS first');
    expect(bound.sql).toContain('$2::int AS b');
    expect(bound.sql).toContain('$1::text AS again');
    expect(bound.params).toHaveLength(2);

    const read = preparedStatement<{ a: string; b: number }>(() => statement);
    const [row] = await read(database.db, { a: 'x', b: 7 });
    expect(row).toEqual({ first: 'x', b: 7, again: 'x', same: true });
  });

  it('keeps one placeholder name with two encoders as two values, each mapped by its own encoder', async () => {
    const asJson = new Param(sql.placeholder('v'), {
      mapToDriverValue: (value: unknown) => JSON.stringify(value),
    });
    const statement = sql`SELECT ${asJson}::jsonb AS encoded, ${sql.placeholder('v')}::text AS plain, ${asJson}::jsonb AS encoded_again`;
    const bound = boundOnce(statement);
    expect(bound.params).toHaveLength(2);
    expect(bound.sql).toContain('$1::jsonb AS encoded,');
    expect(bound.sql).toContain('$2::text AS plain');
    expect(bound.sql).toContain('$1::jsonb AS encoded_again');

    const read = preparedStatement<{ v: unknown }>(() => statement);
    const [row] = await read(database.db, { v: 'text' });
    expect(row).toEqual({ encoded: 'text', plain: 'text', encoded_again: 'text' });
  });

  it('writes constant strings in as literals that read back exactly, whatever standard_conforming_strings says', async () => {
    const constants = ['plain', "it's", 'back\\slash', "both\\'\\\\", "E'\\x41'", '$1', 'ünïcødé'];
    const statement = sql.join(
      constants.map((value, i) => sql`${value} AS ${sql.identifier(`c${i}`)}`),
      sql`, `,
    );
    const bound = boundOnce(sql`SELECT ${statement}, ${5}::int AS five`);
    expect(bound.params).toEqual([5]);
    for (const setting of ['on', 'off']) {
      const [row] = await database.sql.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL standard_conforming_strings = ${setting}`);
        await tx.unsafe('SET LOCAL escape_string_warning = off');
        return tx.unsafe(bound.sql, bound.params as never[]);
      });
      expect(
        Object.values(row!).slice(0, constants.length),
        `standard_conforming_strings ${setting}`,
      ).toEqual(constants);
      expect(row!.five).toBe(5);
    }
  });

  it('sends a `userName eq` lookup its five values once each, with no schema URN among them', () => {
    const byUserName = sql`users.user_name_key = ${accountKeyOf(sql.placeholder('userName'))}`;
    const bound = boundOnce(userPageSql(byUserName, 'placeholders', true, { unique: true }));
    const names = bound.params.map((param) => (param as { name?: string }).name);
    expect(names.sort()).toEqual(['baseUrl', 'count', 'offset', 'tenantId', 'userName']);
    expect(bound.sql).toContain(`'${ENTERPRISE_USER_SCHEMA}'`);
    expect(bound.sql).toContain(`'${JSON.stringify([USER_SCHEMA])}'`);
  });
});
