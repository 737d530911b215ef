/**
 * Heroku connector benchmark (not a test): `npm run build && npx tsx bench/heroku.ts`.
 * The compiled daemon (`idsync start`, real PostgreSQL and Redis) against the Heroku simulator from
 * test/ with 50 ms latency on every request. Three figures:
 *  1. drift read: 50 teams × 500 members and 1,000 apps (20 a team), counting requests;
 *  2. cascade: a user in the Enterprise Account, 20 teams and 30 apps, from the SCIM response to the
 *     last membership gone on the simulator;
 *  3. layoff: 1,000 users (Enterprise Account + 1 team + 1 app each) deactivated by SCIM while a scan
 *     is queued, with the bucket too small for both: deprovisions must finish before any scan request,
 *     and the requests sent must equal the operations needed.
 * The layoff runs Heroku's bucket 60× faster (refill 75 a second instead of a minute) so the run takes
 * seconds; that changes how long the scan waits, not the order.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { HerokuSimulator } from '../test/support/heroku-simulator.js';
import { expectStatus, httpClient, ROOT, round, startBackends, startServer } from './support.js';

const LATENCY_MS = 50;
const TEAMS = 50;
const APPS_PER_TEAM = 20;
const REGULAR_USERS = 4_800;
const LAYOFF = 1_000;
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const simulator = new HerokuSimulator({ latencyMs: LATENCY_MS, capacity: 4_500, refillPerMinute: 75 });
await simulator.start();
const teamName = (i: number) => `team-${i}`;
const regular = (i: number) => `staff${i}@example.com`;
const laidOff = (i: number) => `leaver${i}@example.com`;
const teamMembers: [string, 'admin' | 'member'][][] = Array.from({ length: TEAMS }, (_, t) => [
  [regular(t), 'admin'],
]);
for (let i = 0; i < REGULAR_USERS; i++) {
  simulator.addEnterpriseMember(regular(i));
  for (let j = 0; j < 5; j++) {
    const t = (i + j * 10) % TEAMS;
    if (!(i === t && j === 0)) teamMembers[t]!.push([regular(i), 'member']);
  }
}
for (let i = 0; i < LAYOFF; i++) {
  simulator.addEnterpriseMember(laidOff(i));
  teamMembers[i % TEAMS]!.push([laidOff(i), 'member']);
}
const casey = 'casey@example.com';
simulator.addEnterpriseMember(casey);
for (let t = 0; t < TEAMS; t++) {
  simulator.addTeam(
    teamName(t),
    [...new Map(teamMembers[t]!).entries()].map(([e, r]) => [e, r]),
  );
  if (t < 20) simulator.addTeamMember(teamName(t), casey, 'member');
}
for (let a = 0; a < TEAMS * APPS_PER_TEAM; a++) {
  const collaborators: [string, string[]][] = [
    [regular(a % REGULAR_USERS), ['view', 'deploy']],
    [regular((a * 7) % REGULAR_USERS), ['view']],
  ];
  if (a < LAYOFF) collaborators.push([laidOff(a), ['view', 'deploy']]);
  if (a >= LAYOFF - 30 && a < LAYOFF) collaborators.push([casey, ['view', 'deploy', 'operate']]);
  simulator.addApp(`app-${a}`, teamName(a % TEAMS), collaborators);
}

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 4 });
const { sql } = database;
const { tenant, scimToken } = await createTenant(database.db, 'bench', 'bench');
const secretKey = randomBytes(32).toString('hex');
const setBudget = (refillPerMinute: number) =>
  simulator.connect(database.db, tenant.id, secretKey, {
    budgetKey: simulator.account.id,
    refillPerMinute,
    reserve: 100,
  });
await setBudget(75);
const userIds = new Map<string, string>();
for (const row of await sql<{ id: string; account: string }[]>`
  INSERT INTO users (tenant_id, user_name, origin)
  SELECT ${tenant.id}, a, 'scim' FROM unnest(${[casey, ...Array.from({ length: LAYOFF }, (_, i) => laidOff(i)), ...Array.from({ length: REGULAR_USERS }, (_, i) => regular(i))]}::text[]) a
  RETURNING id::text, lower(user_name) AS account`) {
  userIds.set(row.account, row.id);
}

const adminToken = randomBytes(24).toString('hex');
const env = {
  DATABASE_URL: backends.databaseUrl,
  REDIS_URL: backends.redisUrl,
  IDSYNC_SECRET_KEY: secretKey,
  IDSYNC_ADMIN_TOKEN: adminToken,
  OUTBOX_POLL_MS: '200',
  DRIFT_TICK_MS: '0',
};
const daemon = await startServer('start', env);
const scim = httpClient(daemon.port, scimToken, 16);
const admin = httpClient(daemon.port, adminToken, 2);
const latestSeq = async () =>
  (await sql<{ seq: number }[]>`SELECT max(seq) AS seq FROM drift_reports WHERE tenant_id = ${tenant.id}`)[0]
    ?.seq ?? 0;
const waitFor = async (condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 600_000) => {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

// 1. The full drift read (it also fills idsync's mirror of Heroku).
const readStart = simulator.requests.length;
const readStarted = performance.now();
expectStatus((await admin.send('POST', '/api/tenants/bench/drift/scan')).status, 202, 'drift scan');
await waitFor(async () => (await latestSeq()) === 1, 'the first drift report');
const readSeconds = round((performance.now() - readStarted) / 1000, 1);
const readRequests = simulator.requests.slice(readStart);
const memberPages = readRequests.filter((r) => r.path.endsWith('/members')).length;
const collaboratorPages = readRequests.filter((r) => r.path.endsWith('/collaborators')).length;
const teamAppLists = readRequests.filter((r) => /^\/teams\/[^/]+\/apps$/.test(r.path)).length;
const drift = {
  teams: TEAMS,
  membersPerTeam: simulator.team(teamName(30))!.members.size,
  apps: simulator.apps.size,
  enterpriseMembers: simulator.members.size,
  requests: readRequests.length,
  memberPages,
  collaboratorPages,
  teamAppLists,
  other: readRequests.length - memberPages - collaboratorPages - teamAppLists,
  seconds: readSeconds,
};
console.log('drift read', drift);

// 2. One cascade: Enterprise Account, 20 teams, 30 apps.
const cascadeStart = simulator.requests.length;
const patched = performance.now();
const sent = Date.now();
expectStatus(
  (
    await scim.send('PATCH', `/scim/v2/Users/${userIds.get(casey)}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: false } }],
    })
  ).status,
  200,
  'deactivate',
);
const responded = performance.now();
await waitFor(() => simulator.grantsOf(casey).length === 0, 'the cascade');
const lastRemoval = Math.max(
  ...simulator.requests
    .slice(cascadeStart)
    .filter((r) => r.method === 'DELETE')
    .map((r) => r.at),
);
const cascade = {
  edges: 1 + 20 + 30,
  requests: simulator.requests.slice(cascadeStart).length,
  scimResponseMs: round(responded - patched, 1),
  endToEndMs: lastRemoval - sent,
};
console.log('cascade', cascade);

// 3. The layoff, with a scan queued as it starts and a bucket too small for both.
await setBudget(75 * 60);
simulator.setBudget({ remaining: 3_150, refillPerMinute: 75 * 60 });
const layoffStart = simulator.requests.length;
const layoffStarted = Date.now();
let scanQueuedAt = 0;
const deactivations = Array.from({ length: LAYOFF }, (_, i) =>
  scim.send('PATCH', `/scim/v2/Users/${userIds.get(laidOff(i))}`, {
    schemas: [PATCH],
    Operations: [{ op: 'replace', value: { active: false } }],
  }),
);
await waitFor(
  () => simulator.requests.slice(layoffStart).some((r) => r.method === 'DELETE'),
  'the first removal',
);
expectStatus((await admin.send('POST', '/api/tenants/bench/drift/scan')).status, 202, 'drift scan');
scanQueuedAt = Date.now();
for (const response of await Promise.all(deactivations)) expectStatus(response.status, 200, 'deactivate');
await waitFor(
  () => Array.from({ length: LAYOFF }, (_, i) => laidOff(i)).every((e) => simulator.grantsOf(e).length === 0),
  'the layoff',
);
const layoffDone = Date.now();
await waitFor(async () => (await latestSeq()) === 2, 'the scan after the layoff');
const during = simulator.requests.slice(layoffStart);
const removals = during.filter((r) => r.method === 'DELETE' && r.status < 300);
const lastDeprovisionRequest = Math.max(...during.filter((r) => r.method === 'DELETE').map((r) => r.at));
const firstScanRequest = Math.min(...during.filter((r) => r.method === 'GET').map((r) => r.at));
const layoff = {
  users: LAYOFF,
  operationsNeeded: LAYOFF * 3,
  deleteRequests: during.filter((r) => r.method === 'DELETE').length,
  successfulRemovals: removals.length,
  otherWrites: during.filter((r) => r.method !== 'DELETE' && r.method !== 'GET').length,
  rateLimited: during.filter((r) => r.status === 429).length,
  deprovisionSeconds: round((layoffDone - layoffStarted) / 1000, 1),
  scanQueuedAfterMs: scanQueuedAt - layoffStarted,
  firstScanRequestAfterLastRemovalMs: firstScanRequest - lastDeprovisionRequest,
  scanRequests: during.filter((r) => r.method === 'GET').length,
  scanDoneSeconds: round((Date.now() - layoffStarted) / 1000, 1),
};
console.log('layoff', layoff);
if (simulator.violations.length) console.log('schema violations', simulator.violations.slice(0, 5));

const results = {
  machine: {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model,
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
  },
  latencyMs: LATENCY_MS,
  drift,
  cascade,
  layoff,
  schemaViolations: simulator.violations.length,
};
writeFileSync(path.join(ROOT, 'bench/results-heroku.json'), `${JSON.stringify(results, null, 2)}\n`);
await daemon.stop();
await simulator.stop();
await database.close();
await backends.stop();
