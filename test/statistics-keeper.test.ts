import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { analyzeOutgrownTables } from '../src/db/statistics-keeper.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

/*
 * Issue 17: an initial push grows users from nothing faster than autovacuum analyzes it, and until then
 * PostgreSQL plans a user's lookup by tenant and id on the tenant's name index: a walk of the tenant.
 */

/** Users written by a session of their own that then ends, so its counts reach the statistics at once. */
async function pushUsers(database: TestDatabase, tenantId: string, count: number) {
  const session = postgres(database.url, { max: 1, onnotice: () => {} });
  await session`INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${tenantId}, 'pushed' || n || '@example.com', 'scim' FROM generate_series(1, ${count}) n`;
  await session.end();
}

async function emptyStatistics(database: TestDatabase) {
  await database.sql`ANALYZE users`;
  await withoutAutovacuum(database, ['users']);
}

/**
 * Keeps autovacuum off `tables`: it visits each database about once a minute, and an analysis of its own
 * between the writes and the keeper's round would leave the keeper nothing outgrown to find.
 */
async function withoutAutovacuum(database: TestDatabase, tables: string[]) {
  for (const table of tables)
    await database.sql`ALTER TABLE ${database.sql(table)} SET (autovacuum_enabled = false)`;
}

describe('tables that outgrow their statistics', () => {
  it('are analyzed, and a lookup already prepared on a connection is replanned by the primary key', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await emptyStatistics(database);
    await pushUsers(database, tenant.id, 5000);
    const [last] = await database.sql<{ id: string }[]>`
      SELECT id::text FROM users WHERE tenant_id = ${tenant.id} ORDER BY user_name_key DESC LIMIT 1`;

    const connection = await database.sql.reserve();
    try {
      await connection.unsafe('SET plan_cache_mode = force_generic_plan');
      await connection.unsafe(`PREPARE lookup AS
        SELECT id FROM users WHERE tenant_id = $1::uuid AND id = $2::uuid AND deprovisioned_at IS NULL`);
      const plan = async () =>
        (await connection.unsafe(`EXPLAIN EXECUTE lookup('${tenant.id}', '${last!.id}')`))
          .map((row) => row['QUERY PLAN'] as string)
          .join('\n');
      // The trap, reproduced: the lookup walks the tenant's index and filters by id.
      expect(await plan()).not.toMatch(/users_pkey/);

      expect((await analyzeOutgrownTables(database.sql)).analyzed).toContain('users');
      expect(await plan()).toMatch(/Index Scan using users_pkey/);
      // Analyzed, the table is no longer outgrown: nothing is analyzed again until it grows again.
      expect((await analyzeOutgrownTables(database.sql)).analyzed).not.toContain('users');
    } finally {
      await connection.unsafe('DEALLOCATE ALL');
      connection.release();
    }
  });

  it('are analyzed past a table someone holds, on a pool with a short statement timeout', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await database.sql`ANALYZE`;
    await withoutAutovacuum(database, ['users', 'audit_log']);
    await pushUsers(database, tenant.id, 3000);
    const session = postgres(database.url, { max: 1, onnotice: () => {} });
    await session`INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id)
      SELECT ${tenant.id}, 'test', 'test', 'user', n::text FROM generate_series(1, 3000) n`;
    await session.end();
    // audit_log comes first in name order; a REINDEX or CREATE INDEX holds it like this.
    const blocker = await database.sql.reserve();
    await blocker`BEGIN`;
    await blocker`LOCK TABLE audit_log IN SHARE MODE`;
    const serving = connectDatabase(database.url, { max: 2, statementTimeoutMs: 500 });
    try {
      const round = await analyzeOutgrownTables(serving.sql);
      expect(round.failed).toEqual([]);
      expect(round.analyzed).toContain('users');
      expect(round.held).toEqual(['audit_log']);
      // The pool's own timeout is back for the requests that use the connection next.
      expect((await serving.sql`SHOW statement_timeout`)[0]!.statement_timeout).toBe('500ms');
    } finally {
      await blocker`COMMIT`;
      blocker.release();
      await serving.close();
    }
    // Released, the table held back is analyzed in the next round.
    expect((await analyzeOutgrownTables(database.sql)).analyzed).toContain('audit_log');
  });

  it('are analyzed at their first rows when never analyzed, and a user page then reads groups by index', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await withoutAutovacuum(database, ['users', 'groups', 'group_members']);
    await pushUsers(database, tenant.id, 500);
    const session = postgres(database.url, { max: 1, onnotice: () => {} });
    await session`WITH g AS (INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'Engineering') RETURNING id)
      INSERT INTO group_members (tenant_id, group_id, user_id) SELECT ${tenant.id}, g.id, users.id FROM g, users`;
    await session.end();
    const [never] = await database.sql<{ reltuples: number }[]>`
      SELECT reltuples FROM pg_class WHERE oid = 'group_members'::regclass`;
    expect(never!.reltuples).toBeLessThan(0);
    // How each rendered user's groups are found (user-queries.ts): 500 rows, far under MIN_CHANGED_ROWS.
    const plan = async () =>
      (
        await database.sql.unsafe(
          `EXPLAIN SELECT group_id FROM group_members WHERE user_id = '${randomUUID()}'`,
        )
      )
        .map((row) => row['QUERY PLAN'] as string)
        .join('\n');
    expect(await plan()).toMatch(/Bitmap Heap Scan on group_members/);

    const round = await analyzeOutgrownTables(database.sql);
    expect(round.analyzed).toEqual(expect.arrayContaining(['group_members', 'groups']));
    expect(await plan()).toMatch(/Index (Only )?Scan using group_members_user_idx/);
    // Once is enough: a table that has statistics waits for the growth rule again.
    expect((await analyzeOutgrownTables(database.sql)).analyzed).not.toContain('group_members');
  });

  it('are analyzed by a running idsync, without anyone asking', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await emptyStatistics(database);
    const analyzedAt = async () =>
      (
        await database.sql<{ at: string | null }[]>`
          SELECT last_analyze::text AS at FROM pg_stat_user_tables WHERE relname = 'users'`
      )[0]!.at;
    const before = await analyzedAt();
    const daemon = await startTestDaemon({
      mode: 'serve',
      config: testConfig(database.url),
      log: capturingLogger('silent').log,
    });
    try {
      await pushUsers(database, tenant.id, 2000);
      const deadline = Date.now() + 20_000;
      while ((await analyzedAt()) === before && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await analyzedAt()).not.toBe(before);
    } finally {
      await daemon.stop();
    }
  });
});
