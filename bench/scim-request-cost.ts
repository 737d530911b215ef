/**
 * Node CPU per SCIM request (issue 17; not a test): `npm run build && npx tsx bench/scim-request-cost.ts`.
 *
 * The compiled `idsync serve` (WORKER_PROCESSES=1, LOG_LEVEL=warn as in production) in its own process;
 * each phase reads the server's CPU time from /proc before and after (bench/process-cost.ts) and prints
 * microseconds per request. CPU per request moves far less with the load of other processes on a shared
 * machine than req/s does. The server's idle CPU (outbox polling, timers) is measured first and taken off.
 * Sizes: FILTERS, CREATES, MEMBER_ADDS, PAGES (requests per phase), ROUNDS (each phase repeated).
 *
 * A/B on a loaded machine: COMPARE_DIST=.scratch/dist-before (a copy of an earlier build, beside a
 * node_modules holding what it imports) starts that build too, on the same database, and every phase
 * alternates blocks of requests between the two servers, so both see the same load at the same time.
 */
import os from 'node:os';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { treeCpuMs } from './process-cost.js';
import { expectStatus, httpClient, load, round, startBackends, startServer } from './support.js';

const CONCURRENCY = 8;
const size = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const FILTERS = size('FILTERS', 3000);
const CREATES = size('CREATES', 2000);
const MEMBER_ADDS = size('MEMBER_ADDS', 2000);
const PAGES = size('PAGES', 1000);
const ROUNDS = size('ROUNDS', 2);
const SEEDED_USERS = 2000 + MEMBER_ADDS * ROUNDS;
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 2 });
const { tenant, scimToken } = await createTenant(database.db, 'bench', 'bench');
await database.sql`
  INSERT INTO users (tenant_id, user_name, external_id, origin, attributes)
  SELECT ${tenant.id}, 'seed' || n || '@example.com', 'seed-' || n, 'scim',
    jsonb_build_object('name', jsonb_build_object('givenName', 'G' || n, 'familyName', 'F' || n),
                       'emails', jsonb_build_array(jsonb_build_object('value', 'seed' || n || '@example.com', 'type', 'work', 'primary', true)))
  FROM generate_series(1, ${SEEDED_USERS}) AS n`;
await database.sql`VACUUM ANALYZE users`;
const userIds = (
  await database.sql<{ id: string }[]>`
    SELECT id::text FROM users WHERE tenant_id = ${tenant.id} ORDER BY user_name`
).map((r) => r.id);

const builds = [
  { name: 'dist', dist: 'dist' },
  ...(process.env.COMPARE_DIST ? [{ name: process.env.COMPARE_DIST, dist: process.env.COMPARE_DIST }] : []),
];
const servers = await Promise.all(
  builds.map(async (build) => {
    const server = await startServer('serve', {
      DATABASE_URL: backends.databaseUrl,
      REDIS_URL: backends.redisUrl,
      WORKER_PROCESSES: '1',
      BENCH_DIST: build.dist,
    });
    return {
      ...build,
      server,
      pid: server.child.pid!,
      client: httpClient(server.port, scimToken, CONCURRENCY),
    };
  }),
);
type Server = (typeof servers)[number];
const BLOCKS_PER_SERVER = 4;

/**
 * Runs one phase, alternating blocks of requests between the servers, and charges each server's CPU
 * over its own blocks, less what it burns idle meanwhile. `op` gets a request number unique in the phase.
 */
async function phase(
  requests: number,
  idleMsPerSecond: Map<Server, number>,
  op: (client: Server['client'], i: number) => Promise<void>,
) {
  const cost = new Map(servers.map((s) => [s, { cpuMs: 0, seconds: 0, requests: 0 }]));
  const block = Math.ceil(requests / (servers.length * BLOCKS_PER_SERVER));
  for (let start = 0, turn = 0; start < requests; start += block, turn++) {
    const server = servers[turn % servers.length]!;
    const count = Math.min(block, requests - start);
    const before = treeCpuMs(server.pid);
    const timing = await load(count, CONCURRENCY, (i) => op(server.client, start + i));
    const spent = cost.get(server)!;
    spent.cpuMs += treeCpuMs(server.pid) - before - idleMsPerSecond.get(server)! * timing.seconds;
    spent.seconds += timing.seconds;
    spent.requests += count;
  }
  return Object.fromEntries(
    servers.map((s) => {
      const spent = cost.get(s)!;
      return [
        s.name,
        {
          nodeCpuUsPerRequest: Math.round((spent.cpuMs * 1000) / spent.requests),
          perSecond: Math.round(spent.requests / spent.seconds),
        },
      ];
    }),
  );
}

try {
  const filterOf = (n: number) =>
    `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "seed${n + 1}@example.com"`)}`;
  // Warm-up: JIT, connection pools, the token cache.
  for (const { client } of servers)
    await load(1000, CONCURRENCY, async (i) => {
      expectStatus((await client.send('GET', filterOf(i % SEEDED_USERS))).status, 200, 'warm-up');
    });
  const idleBefore = servers.map((s) => treeCpuMs(s.pid));
  const idleStarted = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const idleSeconds = (performance.now() - idleStarted) / 1000;
  const idleMsPerSecond = new Map(
    servers.map((s, n) => [s, (treeCpuMs(s.pid) - idleBefore[n]!) / idleSeconds] as const),
  );

  const group = await servers[0]!.client.send('POST', '/scim/v2/Groups', {
    schemas: [GROUP],
    displayName: 'Bench',
  });
  expectStatus(group.status, 201, 'create group');
  const groupId = JSON.parse(group.body).id as string;

  const rounds: Record<string, unknown>[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    rounds.push({
      filterUserNameEq: await phase(FILTERS, idleMsPerSecond, async (client, i) => {
        const response = await client.send('GET', filterOf((i * 7919) % SEEDED_USERS));
        expectStatus(response.status, 200, 'userName filter');
        if (!response.body.includes('"totalResults":1')) throw new Error('userName filter found nothing');
      }),
      createUser: await phase(CREATES, idleMsPerSecond, async (client, i) => {
        const n = r * CREATES + i;
        const response = await client.send('POST', '/scim/v2/Users', {
          schemas: [USER],
          userName: `user${n}@example.com`,
          externalId: `ext-${n}`,
          name: { givenName: `Given${n}`, familyName: `Family${n}` },
          emails: [{ value: `user${n}@example.com`, type: 'work', primary: true }],
          active: true,
        });
        expectStatus(response.status, 201, 'create user');
      }),
      patchAddOneMember: await phase(MEMBER_ADDS, idleMsPerSecond, async (client, i) => {
        const member = userIds[r * MEMBER_ADDS + i]!;
        const response = await client.send('PATCH', `/scim/v2/Groups/${groupId}`, {
          schemas: [PATCH],
          Operations: [{ op: 'add', path: 'members', value: [{ value: member }] }],
        });
        expectStatus(response.status, 204, 'add one member');
      }),
      pageOf100: await phase(PAGES, idleMsPerSecond, async (client, i) => {
        const response = await client.send(
          'GET',
          `/scim/v2/Users?startIndex=${1 + (i % 10) * 100}&count=100`,
        );
        expectStatus(response.status, 200, 'page');
      }),
    });
  }
  console.log(
    JSON.stringify(
      {
        machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}`,
        loadAverageAtEnd: os.loadavg().map((l) => round(l, 1)),
        node: process.version,
        concurrency: CONCURRENCY,
        idleServerCpuMsPerSecond: Object.fromEntries(
          servers.map((s) => [s.name, round(idleMsPerSecond.get(s)!, 1)]),
        ),
        rounds,
      },
      null,
      2,
    ),
  );
} finally {
  for (const { server } of servers) await server.stop();
  await database.close();
  await backends.stop();
}
