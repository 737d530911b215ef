import { sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountKeyOf } from '../src/db/schema.js';
import { PlatformMirror } from '../src/platform/mirror.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/*
 * Every statement is prepared per connection, so after five executions PostgreSQL may run it on a generic
 * plan, often made on statistics taken when the tables were nearly empty. A name's key written as a bare
 * account_key($n) then let such a plan scan the tenant's whole mirror and key each row (50 ms a table at
 * 10,000 rows, BENCHMARKS.md); accountKeyOf's sub-select lets it read the drizzle/0021 expression index.
 */

describe('accountKeyOf', () => {
  it('computes the key of the value in a sub-select, once per statement', () => {
    const query = new PgDialect().sqlToQuery(sql`user_name_key = ${accountKeyOf('Ann@Example.com')}`);
    expect(query).toMatchObject({
      sql: 'user_name_key = (SELECT account_key($1))',
      params: ['Ann@Example.com'],
    });
  });
});

const ROWS = 2_000;

interface Scan {
  relation: string;
  index: string | null;
  rowsRemovedByFilter: number;
}

function scansOf(node: Record<string, unknown>, found: Scan[] = []): Scan[] {
  if (typeof node['Relation Name'] === 'string')
    found.push({
      relation: node['Relation Name'],
      index: (node['Index Name'] as string | undefined) ?? null,
      rowsRemovedByFilter: Number(node['Rows Removed by Filter'] ?? 0),
    });
  for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) scansOf(child, found);
  return found;
}

describe('the mirror looks an account up by name through its key index, even on a generic plan with stale statistics', () => {
  let database: TestDatabase;
  let tenantId: string;
  /** The statements the mirror sent, as drizzle rendered them. */
  const sent: { text: string; params: unknown[] }[] = [];
  let client: postgres.Sql;
  let mirror: PlatformMirror;

  beforeAll(async () => {
    database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    tenantId = tenant.id;
    const seed = (from: number, to: number) =>
      database.sql.begin(async (tx) => {
        await tx`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
        SELECT ${tenantId}, 'user' || n || '@example.com', '{view}' FROM generate_series(${from}::int, ${to}::int) n`;
        await tx`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
        SELECT ${tenantId}, t.id, 'user' || n || '@example.com', 'member'
        FROM generate_series(${from}::int, ${to}::int) n, teams t WHERE t.tenant_id = ${tenantId}`;
        await tx`INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions)
        SELECT ${tenantId}, a.id, 'user' || n || '@example.com', '{view}'
        FROM generate_series(${from}::int, ${to}::int) n, apps a WHERE a.tenant_id = ${tenantId}`;
      });
    await database.sql`INSERT INTO teams (tenant_id, name) VALUES (${tenantId}, 'core')`;
    await database.sql`INSERT INTO apps (tenant_id, name) VALUES (${tenantId}, 'api')`;
    // Statistics taken with one row per table (a first scan), then the rest of the platform arrives.
    await seed(0, 0);
    await database.sql`ANALYZE platform_enterprise_members, platform_team_members, platform_app_collaborators`;
    await seed(1, ROWS - 1);

    // One connection that forces generic plans, and a drizzle logger to capture the mirror's statements.
    client = postgres(database.url, {
      max: 1,
      onnotice: () => {},
      connection: { plan_cache_mode: 'force_generic_plan' },
    });
    const db = drizzle(client, { logger: { logQuery: (text, params) => sent.push({ text, params }) } });
    mirror = new PlatformMirror(db, tenantId);
  });
  afterAll(() => client?.end());

  /** EXPLAIN ANALYZE of the statement as PostgreSQL runs it prepared: the generic plan, forced. */
  async function scansOfGenericPlan(statement: { text: string; params: unknown[] }): Promise<Scan[]> {
    const literal = (value: unknown) => `'${String(value).replaceAll("'", "''")}'`;
    await client.unsafe('DEALLOCATE ALL');
    await client.unsafe(`PREPARE lookup AS ${statement.text}`);
    const [row] = await client.unsafe(
      `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE lookup(${statement.params.map(literal).join(', ')})`,
    );
    const [explained] = row!['QUERY PLAN'] as { Plan: Record<string, unknown> }[];
    return scansOf(explained!.Plan);
  }

  const mirrorTables = ['platform_enterprise_members', 'platform_team_members', 'platform_app_collaborators'];
  const keyScans = (scans: Scan[]) => scans.filter((scan) => mirrorTables.includes(scan.relation));

  it('readAccess: finds the user by a differently spelled name and keys no row it scans', async () => {
    sent.length = 0;
    const access = await mirror.readAccess('  User1234@EXAMPLE.com ');
    expect(access).toEqual({
      enterprise: ['view'],
      teams: new Map([['core', 'member']]),
      apps: new Map([['api', ['view']]]),
    });
    expect(sent).toHaveLength(1);
    expect(keyScans(await scansOfGenericPlan(sent[0]!))).toEqual([
      {
        relation: 'platform_enterprise_members',
        index: 'platform_enterprise_members_account_key_idx',
        rowsRemovedByFilter: 0,
      },
      {
        relation: 'platform_team_members',
        index: 'platform_team_members_account_key_idx',
        rowsRemovedByFilter: 0,
      },
      {
        relation: 'platform_app_collaborators',
        index: 'platform_app_collaborators_account_key_idx',
        rowsRemovedByFilter: 0,
      },
    ]);
  });

  it('enterpriseMember: the same', async () => {
    sent.length = 0;
    expect(await mirror.enterpriseMember('USER77@example.com')).toEqual({
      account: 'USER77@example.com',
      permissions: ['view'],
      federated: null,
    });
    expect(await scansOfGenericPlan(sent[0]!)).toEqual([
      {
        relation: 'platform_enterprise_members',
        index: 'platform_enterprise_members_account_key_idx',
        rowsRemovedByFilter: 0,
      },
    ]);
  });
});
