import { afterEach, describe, expect, it } from 'vitest';
import { connectDatabase, type DatabaseHandle } from '../src/db/client.js';
import { createLogger } from '../src/log.js';
import type { Daemon } from '../src/runtime/daemon.js';
import { PAGE_SCAN_CONNECTIONS, PIPELINED_READ_CONNECTIONS } from '../src/runtime/pool-size.js';
import { DEFAULT_PAGE_SIZE } from '../src/scim/router.js';
import { listUsersJson, warmUserReads } from '../src/scim/user-queries.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';

/*
 * Issue 17: the SCIM read pools are opened and their statements readied before the port opens, so the
 * first pages after a start do not pay for new connections, parses and plans.
 */

interface PreparedRow {
  statement: string;
  generic_plans: number;
  custom_plans: number;
}

/** The statements reading users prepared on the only connection of `handle` (not postgres.js's own). */
async function preparedOn(handle: DatabaseHandle): Promise<PreparedRow[]> {
  return handle.sql<PreparedRow[]>`
    SELECT statement, generic_plans::int, custom_plans::int FROM pg_prepared_statements
    WHERE statement LIKE '%FROM users%' AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY statement`;
}

const handles: DatabaseHandle[] = [];
let daemon: Daemon | undefined;
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  for (const handle of handles.splice(0)) await handle.close();
});

describe('warmUserReads', () => {
  it('prepares the pipelined pool’s statements without planning them, and the first read uses them', async () => {
    const database = await createTestDatabase();
    const one = connectDatabase(database.url, { max: 1 });
    handles.push(one);
    await warmUserReads(one.db, 'pipelined', DEFAULT_PAGE_SIZE, 'http://x/scim/v2');
    const warmed = await preparedOn(one);
    // userName eq, a user by id, a page by offset, after a walker's end, after any client's end.
    expect(warmed).toHaveLength(5);
    // Not planned: PostgreSQL's choice of plan is left to the first five real calls.
    expect(warmed.every((row) => row.generic_plans === 0 && row.custom_plans === 0)).toBe(true);

    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await database.sql`INSERT INTO users (tenant_id, user_name, origin)
      SELECT ${tenant.id}, 'user' || n || '@example.com', 'scim' FROM generate_series(1, 150) n`;
    const page = await listUsersJson(
      { main: one.db, pipelined: one.db, pageScans: one.db },
      tenant.id,
      undefined,
      { startIndex: 1, count: DEFAULT_PAGE_SIZE },
      'http://x/scim/v2',
      true,
    );
    expect(page.total).toBe(150);
    expect(page.resources).toHaveLength(DEFAULT_PAGE_SIZE);
    const after = await preparedOn(one);
    // The same five statements, the page by offset now planned once: it ran on the warmed statement.
    expect(after.map((row) => row.statement)).toEqual(warmed.map((row) => row.statement));
    expect(after.reduce((plans, row) => plans + row.generic_plans + row.custom_plans, 0)).toBe(1);
  });

  it('runs the page-scan pool’s statements once on their generic plans', async () => {
    const database = await createTestDatabase();
    const one = connectDatabase(database.url, { max: 1, genericPlans: true });
    handles.push(one);
    await warmUserReads(one.db, 'pageScans', DEFAULT_PAGE_SIZE, 'http://x/scim/v2');
    const warmed = await preparedOn(one);
    // A page by offset, a gated seek, a gated seek that skips.
    expect(warmed).toHaveLength(3);
    expect(warmed.every((row) => row.generic_plans === 1 && row.custom_plans === 0)).toBe(true);
  });
});

describe('a serving daemon', () => {
  it('has its SCIM read pools open before its first request', async () => {
    const database = await createTestDatabase();
    daemon = await startTestDaemon({
      mode: 'serve',
      config: testConfig(database.url),
      log: createLogger('silent'),
    });
    const open = await database.sql<{ application_name: string; connections: number }[]>`
      SELECT application_name, count(*)::int AS connections FROM pg_stat_activity
      WHERE datname = current_database() AND application_name IN ('idsync reads', 'idsync page scans')
      GROUP BY application_name ORDER BY application_name`;
    expect(open).toEqual([
      { application_name: 'idsync page scans', connections: PAGE_SCAN_CONNECTIONS },
      { application_name: 'idsync reads', connections: PIPELINED_READ_CONNECTIONS },
    ]);
  });
});
