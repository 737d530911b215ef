import { Param, type SQL, sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { accountKeyOf } from '../src/db/schema.js';
import { boundOnce, preparedStatement } from '../src/db/statement.js';
import { addMembersSql } from '../src/scim/groups.js';
import { ENTERPRISE_USER_SCHEMA, USER_SCHEMA } from '../src/scim/schemas.js';
import { LITERAL_PAGE_SIZES, userPageSql } from '../src/scim/user-queries.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/*
 * Issue 17: a hot statement sends each of its values once. drizzle numbers every occurrence of a value as a
 * parameter of its own; boundOnce gives a placeholder one `$n` wherever it occurs.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});

const placeholderName = (param: unknown) =>
  (param as { name?: string; value?: { name?: string } }).name ??
  (param as { value?: { name?: string } }).value?.name;

describe('a prepared statement', () => {
  it('binds a placeholder used in several places once, and PostgreSQL sees the one value everywhere', async () => {
    const statement = sql`SELECT ${sql.placeholder('a')}::text AS first, ${sql.placeholder('b')}::int AS b,
      ${sql.placeholder('a')}::text AS again, (${sql.placeholder('a')}::text = ${sql.placeholder('a')}::text) AS same,
      ${'constant'}::text AS constant`;
    const bound = boundOnce(statement);
    expect(bound.sql).toContain('$1::text AS first');
    expect(bound.sql).toContain('$2::int AS b');
    expect(bound.sql).toContain('$1::text AS again');
    expect(bound.sql).toContain('$3::text AS constant');
    expect(bound.params).toHaveLength(3);

    const read = preparedStatement<{ a: string; b: number }>(() => statement);
    const [row] = await read(database.db, { a: 'x', b: 7 });
    expect(row).toEqual({ first: 'x', b: 7, again: 'x', same: true, constant: 'constant' });
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

  it('sends a `userName eq` lookup its five values once each, with no schema URN among them', () => {
    const byUserName = sql`users.user_name_key = ${accountKeyOf(sql.placeholder('userName'))}`;
    const bound = boundOnce(userPageSql(byUserName, 'placeholders', true, { unique: true }));
    expect(bound.params.map(placeholderName).sort()).toEqual([
      'baseUrl',
      'count',
      'offset',
      'tenantId',
      'userName',
    ]);
    // The URNs are in the stored rendering (users.scim_head), not in the statement.
    expect(bound.sql).not.toContain(USER_SCHEMA);
    expect(bound.sql).not.toContain(ENTERPRISE_USER_SCHEMA);
  });

  /*
   * One `$n` per placeholder is one type per placeholder. PostgreSQL gives each parameter the type of the
   * use its analysis meets first, so a placeholder used as two types would now fail, or worse be sent as
   * the other type. Each hot statement's parameters must have, bound once, the types drizzle's own
   * numbering gave every one of their uses.
   */
  it('gives each placeholder of the hot statements the type every one of its uses had', async () => {
    const after = sql`(${sql.placeholder('afterCreatedAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`;
    const changes = sql`${sql.placeholder('changes')}::text`;
    const byUserName = sql`users.user_name_key = ${accountKeyOf(sql.placeholder('userName'))}`;
    const statements: [string, SQL][] = [['member adds', addMembersSql()]];
    for (const groups of [true, false]) {
      statements.push([
        `userName eq, groups ${groups}`,
        userPageSql(byUserName, 'placeholders', groups, { unique: true }),
      ]);
      for (const literalCount of [undefined, [...LITERAL_PAGE_SIZES][0]]) {
        const shapes = {
          offset: {},
          after: { after },
          afterIfUnchanged: { afterIfUnchanged: { after, changes } },
          skipIfUnchanged: {
            afterIfUnchanged: { after, changes, skip: sql`${sql.placeholder('skip')}::int` },
          },
        };
        for (const [shape, options] of Object.entries(shapes)) {
          statements.push([
            `page ${shape}, groups ${groups}, count ${literalCount ?? '$n'}`,
            userPageSql(undefined, 'placeholders', groups, { ...options, literalCount }),
          ]);
        }
      }
    }
    const typesByName = async (text: string, params: unknown[]) => {
      const described = await database.sql.unsafe(text).describe();
      const byName = new Map<string, Set<number>>();
      let constants = 0;
      params.forEach((param, i) => {
        // Values that are not placeholders stay one parameter each, in the same order either way.
        const name = placeholderName(param) ?? `constant ${constants++}`;
        byName.set(name, (byName.get(name) ?? new Set()).add(described.types[i]!));
      });
      return byName;
    };
    for (const [label, statement] of statements) {
      const numbered = new PgDialect().sqlToQuery(statement);
      const bound = boundOnce(statement);
      const before = await typesByName(numbered.sql, numbered.params);
      const now = await typesByName(bound.sql, bound.params);
      for (const [name, types] of now) {
        expect(types.size, `${label}: ${name}`).toBe(1);
        expect([...(before.get(name) ?? [])], `${label}: ${name}`).toEqual([...types]);
      }
      expect(bound.params.length, label).toBeLessThanOrEqual(numbered.params.length);
    }
  });
});
