import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { accountKeyOf } from '../src/db/schema.js';
import { userPageSql } from '../src/scim/user-queries.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';

/*
 * Issue 17: right after an IdP's initial push PostgreSQL's statistics still describe the empty table.
 * A `userName eq` lookup must then still go by the key, not walk the tenant's users in creation order
 * (seen in the peers' sitting: 10,000 rows filtered per lookup, 5 ms instead of 0.1).
 */

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

const rowsFiltered = (node: PlanNode): number =>
  (node['Rows Removed by Filter'] ?? 0) + (node.Plans ?? []).reduce((n, p) => n + rowsFiltered(p), 0);

describe('a userName eq lookup on statistics taken before the initial push', () => {
  it('reads the key, not the tenant', async () => {
    const database = await createTestDatabase();
    const { sql: pg } = database;
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await pg`ANALYZE users`;
    await pg`ALTER TABLE users SET (autovacuum_enabled = false)`;
    await pg`INSERT INTO users (tenant_id, user_name, origin)
      SELECT ${tenant.id}, 'user' || n || '@example.com', 'scim' FROM generate_series(1, 5000) n`;
    const plan = async (unique: boolean) => {
      const where = sql`users.user_name_key = ${accountKeyOf('User4321@Example.com')}`;
      const values = { tenantId: tenant.id, baseUrl: 'http://x/scim/v2', count: 100, offset: 0 };
      const [row] = await database.db.execute<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
        sql`EXPLAIN (ANALYZE, FORMAT JSON) ${userPageSql(where, values, true, unique)}`,
      );
      return row!['QUERY PLAN'][0].Plan;
    };
    // What the ordered page did on those statistics: the proof that the setting reproduces the trap.
    expect(rowsFiltered(await plan(false))).toBeGreaterThan(1000);
    expect(rowsFiltered(await plan(true))).toBeLessThan(10);
  });
});
