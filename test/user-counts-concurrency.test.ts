import { describe, expect, it } from 'vitest';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';

/*
 * Live-user counters (drizzle/0023): after concurrent creates, deletes and deprovisions in two tenants,
 * including statements that span both tenants, every tenant's counters sum to its count(*) of live users.
 */
describe('live-user counters under concurrency', () => {
  it('agree with count(*) of live users after concurrent single- and multi-tenant writes', async () => {
    const database = await createTestDatabase();
    const sql = database.sql;
    const a = (await createTenant(database.db, 'count-a', 'test')).tenant.id;
    const b = (await createTenant(database.db, 'count-b', 'test')).tenant.id;
    const slots = await sql`SELECT tenant_id, count(*)::int AS n FROM user_counts GROUP BY tenant_id`;
    expect(slots.map((s) => s.n)).toEqual([16, 16]);
    const work = Array.from({ length: 24 }, (_, i) =>
      sql.begin(async (tx) => {
        await tx`INSERT INTO users (tenant_id, user_name, origin)
          SELECT t, 'u' || ${i} || '-' || n || '@example.com', 'scim' FROM unnest(${[a, b]}::uuid[]) t, generate_series(1, 5) n`;
        await tx`UPDATE users SET deprovisioned_at = now() WHERE user_name LIKE ${`u${i}-1@%`}`;
        await tx`DELETE FROM users WHERE user_name LIKE ${`u${i}-2@%`} AND tenant_id = ${i % 2 ? a : b}`;
      }),
    );
    await Promise.all(work);
    await sql`UPDATE users SET deprovisioned_at = NULL WHERE user_name LIKE 'u1-1@%' OR user_name LIKE 'u2-1@%'`;
    const rows = await sql`
      SELECT t.id::text AS tenant,
        (SELECT count(*)::int FROM users u WHERE u.tenant_id = t.id AND u.deprovisioned_at IS NULL) AS live,
        (SELECT sum(live)::int FROM user_counts c WHERE c.tenant_id = t.id) AS counted
      FROM tenants t ORDER BY t.id`;
    for (const row of rows) expect(row.counted).toBe(row.live);
    expect(rows.reduce((s, r) => s + r.live, 0)).toBe(24 * 10 - 24 * 2 - 24 + 4);
  });
});
