/**
 * SCIM benchmark (not a test): `npm run build && npx tsx bench/scim.ts`.
 * Real PostgreSQL and Redis on loopback, the compiled server in its own process, 16 concurrent clients.
 * Prints one JSON document with every figure; BENCHMARKS.md records a run.
 */
import os from 'node:os';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { expectStatus, httpClient, load, peakRssMb, startBackends, startServer } from './support.js';

const CONCURRENCY = 16;
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 4 });
const { tenant, scimToken } = await createTenant(database.db, 'bench', 'bench');
const server = await startServer('serve', {
  DATABASE_URL: backends.databaseUrl,
  REDIS_URL: backends.redisUrl,
});
const client = httpClient(server.port, scimToken, CONCURRENCY);
const results: Record<string, unknown> = {
  machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.cpus()[0]?.model ?? ''}`,
  node: process.version,
  concurrency: CONCURRENCY,
};

try {
  // Warm-up: JIT, connection pools.
  await load(500, CONCURRENCY, async (i) => {
    const r = await client.send(
      'GET',
      `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "warm${i}@example.com"`)}`,
    );
    expectStatus(r.status, 200, 'warm-up');
  });

  results.create10kUsers = await load(10_000, CONCURRENCY, async (i) => {
    const r = await client.send('POST', '/scim/v2/Users', {
      schemas: [USER],
      userName: `user${i}@example.com`,
      externalId: `ext-${i}`,
      name: { givenName: `Given${i}`, familyName: `Family${i}` },
      emails: [{ value: `user${i}@example.com`, type: 'work', primary: true }],
      active: true,
    });
    expectStatus(r.status, 201, 'create user');
  });

  // Grow the tenant to 100,000 users directly in SQL: the figures below are about reads, not seeding.
  await database.sql`
    INSERT INTO users (tenant_id, user_name, external_id, origin, attributes)
    SELECT ${tenant.id}, 'seed' || n || '@example.com', 'seed-' || n, 'scim',
      jsonb_build_object('name', jsonb_build_object('givenName', 'G' || n, 'familyName', 'F' || n),
                         'emails', jsonb_build_array(jsonb_build_object('value', 'seed' || n || '@example.com', 'type', 'work', 'primary', true)))
    FROM generate_series(1, 90000) AS n`;
  // What autovacuum does in a live system after a bulk load: statistics and the visibility map.
  await database.sql`VACUUM ANALYZE users`;

  results.userNameFilterAt100k = await load(10_000, CONCURRENCY, async (i) => {
    const n = (i * 7919) % 90000;
    const r = await client.send(
      'GET',
      `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "SEED${n + 1}@example.com"`)}`,
    );
    expectStatus(r.status, 200, 'userName filter');
    if (!r.body.includes('"totalResults":1'))
      throw new Error(`userName filter found nothing for seed${n + 1}`);
  });

  // One client: the latency a single IdP connection sees, without queueing behind 15 others.
  results.userNameFilterAt100kOneClient = await load(2_000, 1, async (i) => {
    const n = (i * 7919) % 90000;
    const r = await client.send(
      'GET',
      `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "seed${n + 1}@example.com"`)}`,
    );
    expectStatus(r.status, 200, 'userName filter');
  });

  results.firstPagesOf100At100k = await load(2_000, CONCURRENCY, async (i) => {
    const r = await client.send('GET', `/scim/v2/Users?startIndex=${1 + (i % 10) * 100}&count=100`);
    expectStatus(r.status, 200, 'page');
  });

  results.firstPagesOf100At100kOneClient = await load(500, 1, async (i) => {
    const r = await client.send('GET', `/scim/v2/Users?startIndex=${1 + (i % 10) * 100}&count=100`);
    expectStatus(r.status, 200, 'page');
  });

  results.randomPagesOf100At100k = await load(1_000, CONCURRENCY, async (i) => {
    const start = 1 + ((i * 104729) % 999) * 100;
    const r = await client.send('GET', `/scim/v2/Users?startIndex=${start}&count=100`);
    expectStatus(r.status, 200, 'page');
  });

  const userIds = (
    await database.sql<
      { id: string }[]
    >`SELECT id::text FROM users WHERE tenant_id = ${tenant.id} ORDER BY created_at LIMIT 12000`
  ).map((r) => r.id);

  // PATCH adding 1,000 members at once, five times on fresh groups (one client: it is one request).
  const thousandMs: number[] = [];
  for (let round = 0; round < 5; round++) {
    const created = await client.send('POST', '/scim/v2/Groups', {
      schemas: [GROUP],
      displayName: `Thousand ${round}`,
    });
    expectStatus(created.status, 201, 'create group');
    const groupId = JSON.parse(created.body).id as string;
    const members = userIds.slice(round * 1000, round * 1000 + 1000).map((value) => ({ value }));
    const t = performance.now();
    const r = await client.send('PATCH', `/scim/v2/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: members }],
    });
    thousandMs.push(performance.now() - t);
    expectStatus(r.status, 204, 'add 1,000 members');
  }
  thousandMs.sort((a, b) => a - b);
  results.patchAdd1000Members = {
    runs: thousandMs.map((ms) => Math.round(ms)),
    medianMs: Math.round(thousandMs[2]!),
    maxMs: Math.round(thousandMs[4]!),
  };

  // A group of 10,000 members, then single-member PATCHes (add one, remove one) from 16 clients.
  const big = await client.send('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Ten Thousand' });
  const bigId = JSON.parse(big.body).id as string;
  await database.sql`
    INSERT INTO group_members (tenant_id, group_id, user_id)
    SELECT ${tenant.id}, ${bigId}, id FROM users WHERE tenant_id = ${tenant.id} AND user_name LIKE 'seed%' ORDER BY id LIMIT 10000`;
  const outsiders = userIds.slice(0, 2000);
  const singleMemberPatch = async (i: number) => {
    const member = outsiders[Math.floor(i / 2) % outsiders.length]!;
    const op =
      i % 2 === 0
        ? { op: 'add', path: 'members', value: [{ value: member }] }
        : { op: 'remove', path: `members[value eq "${member}"]` };
    const r = await client.send('PATCH', `/scim/v2/Groups/${bigId}`, { schemas: [PATCH], Operations: [op] });
    expectStatus(r.status, 204, 'single-member PATCH');
  };
  // IdPs send one group's changes one after another; 16 clients on one group measure lock contention.
  results.singleMemberPatchOn10kGroupOneClient = await load(2_000, 1, singleMemberPatch);
  results.singleMemberPatchOn10kGroup16ClientsSameGroup = await load(4_000, CONCURRENCY, (i) =>
    singleMemberPatch(i + 2_000),
  );

  results.serverPeakRssMb = peakRssMb(server.child.pid!);
  console.log(JSON.stringify(results, null, 2));
} finally {
  await server.stop();
  await database.close();
  await backends.stop();
}
