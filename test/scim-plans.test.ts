import { fillPlaceholders, sql } from 'drizzle-orm';
import type postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { accountKeyOf } from '../src/db/schema.js';
import { boundOnce } from '../src/db/statement.js';
import { addMembersSql } from '../src/scim/groups.js';
import { LITERAL_PAGE_SIZES, listUsersJson, userPageSql } from '../src/scim/user-queries.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';

/*
 * Issue 17: right after an IdP's initial push PostgreSQL's statistics still describe the empty table.
 * A `userName eq` lookup must then still go by the key, not walk the tenant's users in creation order
 * (seen in the peers' sitting: 10,000 rows filtered per lookup, 5 ms instead of 0.1).
 */

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

const rowsFiltered = (node: PlanNode): number =>
  (node['Rows Removed by Filter'] ?? 0) + (node.Plans ?? []).reduce((n, p) => n + rowsFiltered(p), 0);

/** A tenant of 5,000 users on statistics taken while `users` was empty, as right after an initial push. */
async function tenantAfterAPush() {
  const database = await createTestDatabase();
  const { sql: pg } = database;
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  await pg`ANALYZE users`;
  await pg`ALTER TABLE users SET (autovacuum_enabled = false)`;
  await pg`INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${tenant.id}, 'user' || n || '@example.com', 'scim' FROM generate_series(1, 5000) n`;
  return { database, pg, tenant };
}

describe('a userName eq lookup on statistics taken before the initial push', () => {
  it('reads the key, not the tenant', async () => {
    const { database, tenant } = await tenantAfterAPush();
    const plan = async (unique: boolean) => {
      const where = sql`users.user_name_key = ${accountKeyOf('User4321@Example.com')}`;
      const values = { tenantId: tenant.id, baseUrl: 'http://x/scim/v2', count: 100, offset: 0 };
      const [row] = await database.db.execute<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
        sql`EXPLAIN (ANALYZE, FORMAT JSON) ${userPageSql(where, values, true, { unique })}`,
      );
      return row!['QUERY PLAN'][0].Plan;
    };
    // What the ordered page did on those statistics: the proof that the setting reproduces the trap.
    expect(rowsFiltered(await plan(false))).toBeGreaterThan(1000);
    const unique = await plan(true);
    expect(rowsFiltered(unique)).toBeLessThan(10);
    // The count and the page are both of the one row found: it is read once (three times before).
    expect(usersRowsRead(unique)).toBe(1);
  });
});

/** Rows of `users` the plan read (returned or filtered out), over all its loops. */
const usersRowsRead = (node: PlanNode): number =>
  (node['Relation Name'] === 'users'
    ? ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1)
    : 0) + (node.Plans ?? []).reduce((n, p) => n + usersRowsRead(p), 0);

/** Indexes of `users` the plan scans (Bitmap Index Scans name no relation, only their index). */
const usersIndexes = (node: PlanNode): string[] => [
  ...(node['Index Name']?.startsWith('users_') ? [node['Index Name']] : []),
  ...(node.Plans ?? []).flatMap(usersIndexes),
];

/** A value as an SQL literal, for EXECUTE of a statement PREPAREd from the app's own text. */
const literal = (value: unknown): string =>
  value === null || value === undefined
    ? 'NULL'
    : Array.isArray(value)
      ? literal(`{${value.map((v) => (v === null ? 'NULL' : `"${String(v)}"`)).join(',')}}`)
      : `'${String(value).replaceAll("'", "''")}'`;

/** EXPLAIN ANALYZE of the statement as a connection runs it after five calls: a generic plan. */
async function genericPlan(pg: postgres.Sql, text: string, values: unknown[]): Promise<PlanNode> {
  const connection = await pg.reserve();
  try {
    await connection.unsafe('SET plan_cache_mode = force_generic_plan');
    await connection.unsafe(`PREPARE probe AS ${text}`);
    await connection.unsafe('BEGIN');
    const [row] = await connection.unsafe(
      `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE probe(${values.map(literal).join(', ')})`,
    );
    return (row as unknown as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan;
  } finally {
    await connection.unsafe('ROLLBACK');
    await connection.unsafe('DEALLOCATE ALL');
    connection.release();
  }
}

describe('a member add on statistics taken before the initial push', () => {
  it('looks the member up by its id, not by walking the tenant, in the generic plan a pool ends up with', async () => {
    const { pg, tenant } = await tenantAfterAPush();
    const [group] = await pg<{ id: string }[]>`
      INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'engineering') RETURNING id::text`;
    // The last user in the tenant's name order: a walk by that index reaches it last.
    const [member] = await pg<{ id: string }[]>`
      SELECT id::text FROM users WHERE tenant_id = ${tenant.id} ORDER BY user_name_key DESC LIMIT 1`;

    // The join it was, on these statistics: the proof that they reproduce the trap.
    const join = await genericPlan(
      pg,
      `WITH wanted AS (SELECT w.id FROM unnest($2::uuid[]) AS w(id))
       SELECT u.id FROM wanted JOIN users u ON u.id = wanted.id AND u.tenant_id = $1 AND u.deprovisioned_at IS NULL`,
      [tenant.id, [member!.id]],
    );
    expect(usersRowsRead(join)).toBeGreaterThan(1000);

    const statement = boundOnce(addMembersSql());
    const values = fillPlaceholders(statement.params, {
      tenantId: tenant.id,
      groupId: group!.id,
      addOf: [1],
      ids: [member!.id],
      displays: [null],
      causes: ['{}'],
      actors: ['scim'],
      correlationIds: [null],
    });
    const add = await genericPlan(pg, statement.sql, values);
    expect(usersRowsRead(add)).toBe(1);
    // By the primary key alone: the tenant condition (written so no index matches it) is no way in.
    expect(usersIndexes(add).length).toBeGreaterThan(0);
    expect(new Set(usersIndexes(add))).toEqual(new Set(['users_pkey']));
  });
});

describe('an unfiltered page of users', () => {
  it('is planned once per connection, not at every call, when its size is a common one', async () => {
    const database = await createTestDatabase();
    // One connection, so the statements it prepared can be read back from it.
    const one = connectDatabase(database.url, { max: 1 });
    try {
      const plans = async (count: number) => {
        // A tenant of its own each time: no page end remembered from an earlier call.
        const { tenant } = await createTenant(database.db, `acme-${count}`, 'test');
        // Created a second apart, as an IdP's push creates them, and analyzed: every table, so the
        // plans' costs do not depend on which tables autovacuum happened to analyze (group_members
        // never analyzed is estimated at some rows, analyzed and empty at none).
        await database.sql`INSERT INTO users (tenant_id, user_name, origin, created_at)
          SELECT ${tenant.id}, 'user' || n || '@example.com', 'scim', now() - (5000 - n) * interval '1 second'
          FROM generate_series(1, 5000) n`;
        await database.sql`ANALYZE`;
        await one.sql`DEALLOCATE ALL`;
        // Pages from the last to the first, none starting at or after where another ended (by offset);
        // a walker on one connection (its first page by offset, the next ones after the last user
        // seen); then the same pages by index (after the walker's ends, the tenant being unchanged).
        const passes = [
          [undefined, (page: number) => 1 + Math.floor(count / 2) + (7 - page) * count],
          ['walker', (page: number) => 1 + page * count],
          [undefined, (page: number) => 1 + page * count],
        ] as const;
        for (const [connection, startIndex] of passes)
          for (let page = 0; page < 8; page++)
            await listUsersJson(
              { main: one.db, pipelined: one.db, pageScans: one.db },
              tenant.id,
              undefined,
              { startIndex: startIndex(page), count },
              'http://x',
              true,
              connection,
            );
        const rows = await one.sql<{ kind: string; generic_plans: number; custom_plans: number }[]>`
          SELECT CASE WHEN statement LIKE '%IS DISTINCT FROM%' THEN 'after if unchanged'
              WHEN statement LIKE '%(users.created_at, users.id) >%' THEN 'after' ELSE 'offset' END AS kind,
            generic_plans::int, custom_plans::int FROM pg_prepared_statements
          WHERE statement LIKE '%user_counts%' AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY 1`;
        return rows.map((r) => ({ kind: r.kind, generic: r.generic_plans, custom: r.custom_plans }));
      };
      expect(LITERAL_PAGE_SIZES.has(100)).toBe(true);
      // 10 calls by offset (the first two pages from offset 0 and 8 more), 7 after a remembered end of
      // each kind: PostgreSQL plans each of the first five, then keeps the generic plan — by offset once
      // the custom plans it averages cost more than the generic one's estimate: here a sixth is planned
      // too, the first pages' small offsets making the average cheap.
      const [afterEnd, afterIfUnchanged, byOffset] = await plans(100);
      expect(afterEnd).toEqual({ kind: 'after', generic: 2, custom: 5 });
      expect(afterIfUnchanged).toEqual({ kind: 'after if unchanged', generic: 2, custom: 5 });
      expect(byOffset).toMatchObject({ kind: 'offset' });
      expect(byOffset!.generic + byOffset!.custom).toBe(10);
      expect(byOffset!.custom).toBeLessThanOrEqual(6);
      // A size outside the list keeps its size a placeholder: one statement per kind, whatever the size.
      // Whether PostgreSQL keeps their generic plans is a balance of estimates (a `LIMIT $n` is priced at
      // a tenth of the tenant) that runs have decided both ways for the walker's seek, so only the calls
      // are counted here.
      expect(LITERAL_PAGE_SIZES.has(37)).toBe(false);
      const placeholderSize = await plans(37);
      expect(placeholderSize.map((p) => ({ kind: p.kind, calls: p.generic + p.custom }))).toEqual([
        { kind: 'after', calls: 7 },
        { kind: 'after if unchanged', calls: 7 },
        { kind: 'offset', calls: 10 },
      ]);
    } finally {
      await one.close();
    }
  });
});

/** Rows of `group_members` the plan read (returned or filtered out), over all its loops. */
const membershipsRead = (node: PlanNode): number =>
  (node['Relation Name'] === 'group_members'
    ? ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1)
    : 0) + (node.Plans ?? []).reduce((n, p) => n + membershipsRead(p), 0);

/**
 * The generic plans of a page of 100 seeking after the 900th user of the tenant (by creation, then id): the
 * walker's seek and the seek gated on the tenant's count of changes, each with the size written in and as
 * a placeholder.
 */
async function seekPagePlans(pg: postgres.Sql, tenantId: string) {
  const [end] = await pg<{ created_at: string; id: string }[]>`
    SELECT created_at::text, id::text FROM users WHERE tenant_id = ${tenantId}
    ORDER BY created_at, id OFFSET 899 LIMIT 1`;
  const [counts] = await pg<{ changes: string }[]>`
    SELECT sum(changes)::text AS changes FROM user_counts WHERE tenant_id = ${tenantId}`;
  const after = sql`(${sql.placeholder('afterCreatedAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`;
  const shapes = {
    'walker’s seek': { after },
    'gated seek': { afterIfUnchanged: { after, changes: sql`${sql.placeholder('changes')}::text` } },
  };
  const plans: { label: string; plan: PlanNode }[] = [];
  for (const [shape, options] of Object.entries(shapes)) {
    for (const literalCount of [100, undefined]) {
      const statement = boundOnce(userPageSql(undefined, 'placeholders', true, { ...options, literalCount }));
      const values = fillPlaceholders(statement.params, {
        tenantId,
        baseUrl: 'http://x/scim/v2',
        count: 100,
        offset: 900,
        afterCreatedAt: end!.created_at,
        afterId: end!.id,
        changes: counts!.changes,
      });
      plans.push({
        label: `${shape}, size ${literalCount ?? '$n'}`,
        plan: await genericPlan(pg, statement.sql, values),
      });
    }
  }
  return plans;
}

describe('a page that seeks after a remembered end, in its generic plan', () => {
  it('reads its own users and their groups by index, not the whole tenant', async () => {
    const database = await createTestDatabase();
    const { sql: pg } = database;
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await pg`INSERT INTO users (tenant_id, user_name, origin, created_at)
      SELECT ${tenant.id}, 'user' || n || '@example.com', 'scim', now() - (5000 - n) * interval '1 second'
      FROM generate_series(1, 5000) n`;
    // The first 1,000 users in two groups each, so the page's groups are gathered too.
    await pg`INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'one'), (${tenant.id}, 'two')`;
    await pg`INSERT INTO group_members (tenant_id, group_id, user_id)
      SELECT ${tenant.id}, g.id, u.id FROM groups g,
        (SELECT id FROM users WHERE tenant_id = ${tenant.id} ORDER BY created_at LIMIT 1000) u`;
    await pg`ANALYZE`;
    for (const { label, plan } of await seekPagePlans(pg, tenant.id)) {
      // The page's 100 users along the order index, each read once: joined to ids paged first instead,
      // such a plan hashed all 5,000, and looked up by those ids it read each user twice.
      expect(usersRowsRead(plan), label).toBe(100);
      // And its memberships by the page's users: 100 of them in two groups each (of 2,000 in the table).
      expect(membershipsRead(plan), label).toBe(200);
    }
  });

  it('reads only its own users on statistics taken before the initial push, all created in one statement', async () => {
    // One INSERT gives every user the same created_at (as a CSV import does): the order is by id alone.
    const { pg, tenant } = await tenantAfterAPush();
    for (const { label, plan } of await seekPagePlans(pg, tenant.id)) {
      expect(usersRowsRead(plan), label).toBe(100);
    }
  });
});
