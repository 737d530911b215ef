/**
 * Cost of a SCIM page of 100 Users (issue 17), not a test:
 * `npm run build && USERS=2000 ROUNDS=5 [COMPARE=<checkout of another commit>] npx tsx bench/pages.ts`.
 * Creates USERS users through the real server (Okta-shaped bodies; every fifth with the enterprise
 * extension), puts the first half in five groups, then measures
 * - PostgreSQL: EXPLAIN ANALYZE execution time of the page statements the server runs, by offset and
 *   seeking after the page before (median of many), in that tenant and in one holding the same users but
 *   no group,
 * - one client walking every page in order, ROUNDS times (wall time per page, server CPU per page),
 * - 16 clients fetching pages by index.
 * With COMPARE, the page statements of that checkout's src/scim/user-queries.ts (it needs its own `npm ci`)
 * are EXPLAINed too, each in turn with this one's on the same data (`compared` in the PostgreSQL figures).
 * The seek figures are the walker's seek with its values written in (custom plans); in the tenant without
 * groups every user has one created_at (copied in one statement), so its pages are ordered by id alone.
 * Prints one JSON document.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { userPageSql } from '../src/scim/user-queries.js';
import { createTenant } from '../src/tenants/tenants.js';
import { expectStatus, httpClient, load, round, startBackends, startServer } from './support.js';

const USERS = Number(process.env.USERS ?? 2_000);
if (!(USERS >= 200)) throw new Error('USERS must be at least 200: a seek needs a page before it');
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const PAGE = 100;
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

/** Children of a process (the daemon runs its HTTP processes as cluster workers; PostgreSQL a backend per connection). */
const childrenOf = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
const commOf = (pid: number) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
/** User + system CPU so far of a process and its descendants (live and reaped), in ms (10 ms ticks). */
const cpuMs = (pid: number): number => {
  let fields: string[];
  try {
    fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  } catch {
    return 0; // exited meanwhile
  }
  const own = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) * 10;
  return own + childrenOf(pid).reduce((sum, child) => sum + cpuMs(child), 0);
};
const postmaster = () => childrenOf(process.pid).find((pid) => commOf(pid).startsWith('postgres'));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 2 });
const { tenant, scimToken } = await createTenant(database.db, 'bench', 'bench');
const server = await startServer('serve', {
  DATABASE_URL: backends.databaseUrl,
  REDIS_URL: backends.redisUrl,
});
const client = httpClient(server.port, scimToken, 16);
const results: Record<string, unknown> = {
  machine: `${os.cpus().length} cores, load average ${os.loadavg()[0]?.toFixed(1)} at start`,
  users: USERS,
};

try {
  const ids: string[] = [];
  await load(USERS, 8, async (i) => {
    const r = await client.send('POST', '/scim/v2/Users', {
      schemas: i % 5 === 0 ? [USER, ENTERPRISE] : [USER],
      userName: `user${i}@example.com`,
      externalId: `00u${i}`,
      name: { givenName: `Given${i}`, familyName: `Family${i}` },
      displayName: `Given${i} Family${i}`,
      emails: [{ value: `user${i}@example.com`, type: 'work', primary: true }],
      active: true,
      ...(i % 5 === 0 ? { [ENTERPRISE]: { employeeNumber: String(i), department: 'Engineering' } } : {}),
    });
    expectStatus(r.status, 201, 'create user');
    ids[i] = JSON.parse(r.body).id as string;
  });
  for (let g = 0; g < 5; g++) {
    const created = await client.send('POST', '/scim/v2/Groups', {
      schemas: [GROUP],
      displayName: `Team ${g}`,
    });
    expectStatus(created.status, 201, 'create group');
    const members = ids
      .slice(0, USERS / 2)
      .filter((_, i) => i % 5 <= g)
      .map((value) => ({ value }));
    const r = await client.send('PATCH', `/scim/v2/Groups/${JSON.parse(created.body).id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: members }],
    });
    expectStatus(r.status, 204, 'add members');
  }

  // The same users again in a tenant without any group: what an IdP that pushes no groups pays.
  const { tenant: groupless } = await createTenant(database.db, 'groupless', 'groupless');
  await database.sql`
    INSERT INTO users (tenant_id, user_name, external_id, active, attributes, origin)
    SELECT ${groupless.id}, user_name, external_id, active, attributes, origin FROM users WHERE tenant_id = ${tenant.id}`;
  await database.sql`VACUUM ANALYZE`;

  // PostgreSQL alone: the statement the server runs for `startIndex=N&count=100`, with its values inlined:
  // by offset (a page no one has ended before), and seeking after the user the page before ended with (a
  // walker's next page).
  // COMPARE=<checkout of another commit>: its statements too, each EXPLAINed beside this one's, in turn.
  const baseUrl = `http://127.0.0.1:${server.port}/scim/v2`;
  const compared = process.env.COMPARE
    ? (
        (await import(
          path.resolve(process.env.COMPARE, 'src/scim/user-queries.ts')
        )) as typeof import('../src/scim/user-queries.js')
      ).userPageSql
    : undefined;
  const explainPages = async (tenantId: string, kind: 'offset' | 'seek') => {
    const order = await database.sql<{ created_at: string; id: string }[]>`
      SELECT created_at::text, id::text FROM users WHERE tenant_id = ${tenantId} AND deprovisioned_at IS NULL
      ORDER BY created_at, id`;
    const builds = compared ? { current: userPageSql, compared } : { current: userPageSql };
    const executionMs = new Map<string, number[]>();
    const planningMs = new Map<string, number[]>();
    for (let i = 0; i < 200; i++) {
      const offset =
        kind === 'seek'
          ? (1 + ((i * 7) % (Math.ceil(USERS / PAGE) - 1))) * PAGE
          : ((i * 7) % Math.ceil(USERS / PAGE)) * PAGE;
      const end = order[offset - 1];
      const entries = Object.entries(builds);
      for (const [name, build] of i % 2 ? entries.reverse() : entries) {
        const statement = build(
          undefined,
          { tenantId, baseUrl, count: PAGE, offset },
          true,
          kind === 'seek' && end ? { after: sql`(${end.created_at}::timestamptz, ${end.id}::uuid)` } : {},
        );
        const [row] = await database.db.execute<{
          'QUERY PLAN': [{ 'Execution Time': number; 'Planning Time': number }];
        }>(sql`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${statement}`);
        const plan = row!['QUERY PLAN'][0];
        if (i >= 20) {
          executionMs.set(name, [...(executionMs.get(name) ?? []), plan['Execution Time']]);
          planningMs.set(name, [...(planningMs.get(name) ?? []), plan['Planning Time']]);
        }
      }
    }
    const medians = (name: string) => ({
      executionMsMedian: round(median(executionMs.get(name)!), 3),
      planningMsMedian: round(median(planningMs.get(name)!), 3),
    });
    return { ...medians('current'), ...(compared ? { compared: medians('compared') } : {}) };
  };
  results.postgresPage = await explainPages(tenant.id, 'offset');
  results.postgresPageTenantWithoutGroups = await explainPages(groupless.id, 'offset');
  results.postgresSeekPage = await explainPages(tenant.id, 'seek');
  results.postgresSeekPageTenantWithoutGroups = await explainPages(groupless.id, 'seek');

  // One client walking every page in order: what an IdP's full sync sees.
  const pages = Math.ceil(USERS / PAGE);
  let bytes = 0;
  const walk = () =>
    load(pages, 1, async (i) => {
      const r = await client.send('GET', `/scim/v2/Users?startIndex=${1 + i * PAGE}&count=${PAGE}`);
      expectStatus(r.status, 200, 'page');
      bytes = r.body.length;
    });
  await walk(); // warm-up: JIT, prepared statements, caches
  const walks = [];
  const pg = postmaster();
  const cpuBefore = cpuMs(server.child.pid!);
  const pgBefore = pg ? cpuMs(pg) : Number.NaN;
  for (let r = 0; r < ROUNDS; r++) walks.push(await walk());
  const cpuAfter = cpuMs(server.child.pid!);
  const pgAfter = pg ? cpuMs(pg) : Number.NaN;
  results.oneClientWalk = {
    pagesPerSecond: Math.round(median(walks.map((w) => w.perSecond))),
    p50Ms: median(walks.map((w) => w.p50)),
    p99Ms: median(walks.map((w) => w.p99)),
    serverCpuMsPerPage: round((cpuAfter - cpuBefore) / (pages * ROUNDS), 2),
    postgresCpuMsPerPage: round((pgAfter - pgBefore) / (pages * ROUNDS), 2),
    pageBytes: bytes,
  };

  const total = pages * ROUNDS * 4;
  const cpuBefore16 = cpuMs(server.child.pid!);
  const pgBefore16 = pg ? cpuMs(pg) : Number.NaN;
  const parallel = await load(total, 16, async (i) => {
    const r = await client.send(
      'GET',
      `/scim/v2/Users?startIndex=${1 + ((i * 7) % pages) * PAGE}&count=${PAGE}`,
    );
    expectStatus(r.status, 200, 'page');
  });
  results.sixteenClientsByIndex = {
    ...parallel,
    serverCpuMsPerPage: round((cpuMs(server.child.pid!) - cpuBefore16) / total, 2),
    postgresCpuMsPerPage: round(((pg ? cpuMs(pg) : Number.NaN) - pgBefore16) / total, 2),
  };
  results.loadAverageAtEnd = round(os.loadavg()[0]!, 1);
  console.log(JSON.stringify(results, null, 2));
} finally {
  await server.stop();
  await database.close();
  await backends.stop();
}
