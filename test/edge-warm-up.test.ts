import { afterEach, describe, expect, it } from 'vitest';
import { connectDatabase, type DatabaseHandle } from '../src/db/client.js';
import type { Daemon } from '../src/runtime/daemon.js';
import { warmEdgeReads } from '../src/runtime/edge-warm-up.js';
import { PAGE_SCAN_CONNECTIONS, PIPELINED_READ_CONNECTIONS } from '../src/runtime/pool-size.js';
import { DEFAULT_PAGE_SIZE } from '../src/scim/router.js';
import {
  findUserJson,
  listUsersJson,
  planUserPageScans,
  prepareUserReads,
} from '../src/scim/user-queries.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { usersOfPage } from './support/scim-fixtures.js';

/*
 * Issue 17: the SCIM read pools are opened and their statements readied before the port opens, so the
 * first pages after a start do not pay for new connections, parses and plans.
 */

interface PreparedRow {
  statement: string;
  plans: number;
  generic_plans: number;
}

/** The statements reading users prepared on the only connection of `handle` (not postgres.js's own). */
async function preparedOn(handle: DatabaseHandle): Promise<PreparedRow[]> {
  return handle.sql<PreparedRow[]>`
    SELECT statement, (generic_plans + custom_plans)::int AS plans, generic_plans::int FROM pg_prepared_statements
    WHERE statement LIKE '%FROM users%' AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY statement`;
}

const BASE_URL = 'http://x/scim/v2';
const handles: DatabaseHandle[] = [];
let daemon: Daemon | undefined;
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  for (const handle of handles.splice(0)) await handle.close();
});

/** A pool of one connection, so what is prepared on it can be read back from it. */
function oneConnection(url: string, genericPlans = false): DatabaseHandle {
  const handle = connectDatabase(url, { max: 1, genericPlans });
  handles.push(handle);
  return handle;
}

describe('readying the pipelined pool', () => {
  it('prepares its statements without planning them, and each kind of read then uses them', async () => {
    const database = await createTestDatabase();
    const one = oneConnection(database.url);
    await prepareUserReads(one.db, DEFAULT_PAGE_SIZE, BASE_URL);
    const warmed = await preparedOn(one);
    // userName eq, a user by id, a page by offset, after a walker's end, after any client's end.
    expect(warmed).toHaveLength(5);
    // Not planned: PostgreSQL's choice of plan is left to the first five real calls.
    expect(warmed.every((row) => row.plans === 0)).toBe(true);

    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await database.sql`INSERT INTO users (tenant_id, user_name, origin)
      SELECT ${tenant.id}, 'user' || n || '@example.com', 'scim' FROM generate_series(1, 150) n`;
    const pools = { main: one.db, pipelined: one.db, pageScans: one.db };
    const page = (startIndex: number, connection: string) =>
      listUsersJson(
        pools,
        tenant.id,
        undefined,
        { startIndex, count: DEFAULT_PAGE_SIZE },
        BASE_URL,
        true,
        connection,
      );
    // By offset; then the walker's next page, after its end; then the same page by another client,
    // after that end if the tenant is unchanged.
    const first = usersOfPage(await page(1, 'walker'));
    const next = usersOfPage(await page(DEFAULT_PAGE_SIZE + 1, 'walker'));
    const nextByAnother = usersOfPage(await page(DEFAULT_PAGE_SIZE + 1, 'another'));
    expect([first.length, next.length]).toEqual([DEFAULT_PAGE_SIZE, 50]);
    // The users share one created_at: their ids order them, each user once across the pages.
    const ids = [...first, ...next].map((user) => user.id as string);
    expect(ids).toEqual([...ids].sort());
    expect(new Set(ids).size).toBe(150);
    expect(nextByAnother.map((user) => user.id)).toEqual(next.map((user) => user.id));
    const byName = await listUsersJson(
      pools,
      tenant.id,
      { userName: 'USER7@example.com' },
      { startIndex: 1, count: DEFAULT_PAGE_SIZE },
      BASE_URL,
      true,
    );
    expect(byName.total).toBe(1);
    const id = usersOfPage(byName)[0]!.id as string;
    expect(JSON.parse((await findUserJson(one.db, tenant.id, id, BASE_URL))!.resource).userName).toBe(
      'user7@example.com',
    );

    // Still those five statements, each planned once: every read ran on a warmed one. A value of another
    // JavaScript type in the warm-up (a Date for a string) would have prepared a statement no read uses.
    const after = await preparedOn(one);
    expect(after.map((row) => row.statement)).toEqual(warmed.map((row) => row.statement));
    expect(after.map((row) => row.plans)).toEqual([1, 1, 1, 1, 1]);
  });
});

describe('readying the page-scan pool', () => {
  it('runs its statements once on their generic plans, which a deep page then reuses', async () => {
    const database = await createTestDatabase();
    const one = oneConnection(database.url, true);
    await planUserPageScans(one.db, DEFAULT_PAGE_SIZE, BASE_URL);
    const warmed = await preparedOn(one);
    // A page by offset, a gated seek, a gated seek that skips.
    expect(warmed).toHaveLength(3);
    expect(warmed.every((row) => row.plans === 1 && row.generic_plans === 1)).toBe(true);

    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const deep = await listUsersJson(
      { main: one.db, pipelined: one.db, pageScans: one.db },
      tenant.id,
      undefined,
      { startIndex: 1001, count: DEFAULT_PAGE_SIZE },
      BASE_URL,
      true,
    );
    expect(deep.total).toBe(0);
    const after = await preparedOn(one);
    expect(after.map((row) => row.statement)).toEqual(warmed.map((row) => row.statement));
    // The page by offset ran once more on its generic plan; nothing was planned for the values at hand.
    expect(after.reduce((uses, row) => uses + row.generic_plans, 0)).toBe(4);
    expect(after.every((row) => row.plans === row.generic_plans)).toBe(true);
  });
});

describe('warmEdgeReads', () => {
  it('prepares the pipelined pool and plans the page-scan pool, each with its own statements', async () => {
    const database = await createTestDatabase();
    const pipelinedReads = oneConnection(database.url);
    const pageScans = oneConnection(database.url, true);
    const { log, output } = capturingLogger('warn');
    await warmEdgeReads({ pipelinedReads, pageScans }, BASE_URL, log, 30_000);
    expect(output()).toBe('');
    const prepared = await preparedOn(pipelinedReads);
    expect(prepared).toHaveLength(5);
    expect(prepared.every((row) => row.plans === 0)).toBe(true);
    const planned = await preparedOn(pageScans);
    expect(planned).toHaveLength(3);
    expect(planned.every((row) => row.generic_plans === 1)).toBe(true);
  });

  it('logs a failure and returns, every connection handed back', async () => {
    const database = await createTestDatabase();
    const pipelinedReads = oneConnection(database.url);
    const pageScans = oneConnection(database.url, true);
    await database.sql`ALTER TABLE users RENAME TO users_elsewhere`;
    const { log, output } = capturingLogger('warn');
    await warmEdgeReads({ pipelinedReads, pageScans }, BASE_URL, log, 30_000);
    expect(output()).toContain('could not ready the SCIM read statements');
    await database.sql`ALTER TABLE users_elsewhere RENAME TO users`;
    // Both pools answer: their one connection each was released.
    expect(await pipelinedReads.sql`SELECT 1 AS one`).toEqual([{ one: 1 }]);
    expect(await pageScans.sql`SELECT 1 AS one`).toEqual([{ one: 1 }]);
  });

  it('waits no longer than its deadline for a wedged database, and finishes after it', async () => {
    const database = await createTestDatabase();
    const pipelinedReads = oneConnection(database.url);
    const pageScans = oneConnection(database.url, true);
    // Every warm-up statement reads users: each waits for this lock.
    const holder = await database.sql.reserve();
    await holder.unsafe('BEGIN');
    await holder.unsafe('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
    const { log, output } = capturingLogger('warn');
    const started = Date.now();
    await warmEdgeReads({ pipelinedReads, pageScans }, BASE_URL, log, 300);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(output()).toContain('readying the SCIM read statements is taking long');
    await holder.unsafe('COMMIT');
    holder.release();
    // The warm-up goes on in the background: once it has, each connection holds its statements.
    for (const deadline = Date.now() + 10_000; (await preparedOn(pageScans)).length < 3; ) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await preparedOn(pipelinedReads)).toHaveLength(5);
    expect(output()).not.toContain('could not ready');
  });
});

describe('a serving daemon', () => {
  it('has its SCIM read pools open and readied before its first request', async () => {
    const database = await createTestDatabase();
    const { log, output } = capturingLogger('warn');
    daemon = await startTestDaemon({ mode: 'serve', config: testConfig(database.url), log });
    const open = await database.sql<{ application_name: string; connections: number }[]>`
      SELECT application_name, count(*)::int AS connections FROM pg_stat_activity
      WHERE datname = current_database() AND application_name IN ('idsync reads', 'idsync page scans')
      GROUP BY application_name ORDER BY application_name`;
    expect(open).toEqual([
      { application_name: 'idsync page scans', connections: PAGE_SCAN_CONNECTIONS },
      { application_name: 'idsync reads', connections: PIPELINED_READ_CONNECTIONS },
    ]);
    expect(output()).not.toContain('SCIM read statements');
  });
});
