/**
 * Where a touched user's reconcile goes (not a test): `npm run build && npx tsx bench/reconcile-touched.ts`.
 * Users an assignment rule touches (in the group it maps to a team) are pushed through the SCIM API by
 * `serve` alone; then one `worker` (profiled with --cpu-prof) drains the backlog, once on the built-in
 * platform (no HTTP: what the job costs by itself) and once on the Heroku connector against the
 * simulator from test/ (every request `TOUCHED_LATENCY_MS` late, default 50). Per touched user:
 *  - wall time of the drain, BullMQ jobs run, and the jobs' own run time (finishedOn - processedOn);
 *  - SQL statements and their server time (pg_stat_statements), Redis commands, CPU of the worker,
 *    PostgreSQL and Redis, and the worker's CPU by library (BullMQ/ioredis, postgres, idsync...);
 *  - platform requests and the time the plan's requests took (audit duration_ms).
 * The simulator's bucket is made large there so that it does not pace the drain; what Heroku's real
 * budget (4,500, 75 a minute) allows is computed from the requests per user and printed beside it.
 * A third drain runs on a small bucket refilled TOUCHED_PACED_SPEEDUP (20) times faster than Heroku's, to check that the budget then
 * sets the drain rate (the prediction from requests per user is printed beside the measured time).
 * Sizes: TOUCHED_USERS (default 500), TOUCHED_CLIENTS (16), TOUCHED_CONCURRENCY (worker, default 8).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { queueName } from '../src/jobs/queues.js';
import { createTenant } from '../src/tenants/tenants.js';
import { HerokuSimulator } from '../test/support/heroku-simulator.js';
import { cpuByOwner } from './cpu-profile-summary.js';
import { endPhase, startPhase } from './process-cost.js';
import { expectStatus, httpClient, load, ROOT, round, startBackends, startServer } from './support.js';

const USERS = Number(process.env.TOUCHED_USERS ?? 500);
const CLIENTS = Number(process.env.TOUCHED_CLIENTS ?? 16);
const CONCURRENCY = process.env.TOUCHED_CONCURRENCY ?? '8';
const LATENCY_MS = Number(process.env.TOUCHED_LATENCY_MS ?? 50);
/** Heroku's documented budget (REAL-API-NOTES D11) and idsync's default reserve for non-deprovisions. */
const HEROKU = { capacity: 4_500, refillPerMinute: 75, reserve: 100 };
const MEMBERS_PER_PATCH = 100;
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const simulator = new HerokuSimulator({
  latencyMs: LATENCY_MS,
  capacity: 1_000_000,
  refillPerMinute: 1_000_000,
});
await simulator.start();
simulator.addTeam('engineering', []);

const backends = await startBackends({ shared_preload_libraries: 'pg_stat_statements' });
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 4 });
const { sql } = database;
await sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
const redis = new Redis(backends.redisUrl, { maxRetriesPerRequest: null });
const secretKey = randomBytes(32).toString('hex');
const adminToken = randomBytes(24).toString('hex');
const env = {
  DATABASE_URL: backends.databaseUrl,
  REDIS_URL: backends.redisUrl,
  IDSYNC_SECRET_KEY: secretKey,
  IDSYNC_ADMIN_TOKEN: adminToken,
  OUTBOX_POLL_MS: '200',
  DRIFT_TICK_MS: '0',
  WORKER_CONCURRENCY: CONCURRENCY,
};
const api = await startServer('serve', env);
const admin = httpClient(api.port, adminToken, 2);

async function tenantWithRule(slug: string) {
  const created = await createTenant(database.db, slug, slug);
  await sql`INSERT INTO teams (tenant_id, name) VALUES (${created.tenant.id}, 'engineering')`;
  await sql`INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role)
    VALUES (${created.tenant.id}, 'Engineering', 'team', 'engineering', 'member')`;
  return created;
}

const openOutbox = async (tenantId: string) =>
  Number(
    (
      await sql`SELECT count(*)::int AS n FROM outbox
        WHERE tenant_id = ${tenantId} AND completed_at IS NULL AND lane <> 'scan'`
    )[0]!.n,
  );

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 30 * 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Okta's initial push of touched users: the users, then the ruled group's members in PATCHes of 100. */
async function push(scimToken: string, label: string): Promise<void> {
  const client = httpClient(api.port, scimToken, CLIENTS);
  const ids: string[] = [];
  await load(USERS, CLIENTS, async (i) => {
    const r = await client.send('POST', '/scim/v2/Users', {
      schemas: [USER],
      userName: `${label}${i}@example.com`,
      name: { givenName: `Given${i}`, familyName: `Family${i}` },
      emails: [{ primary: true, value: `${label}${i}@example.com`, type: 'work' }],
      active: true,
    });
    expectStatus(r.status, 201, 'create user');
    ids[i] = (JSON.parse(r.body) as { id: string }).id;
  });
  const group = await client.send('POST', '/scim/v2/Groups', {
    schemas: [GROUP],
    displayName: 'Engineering',
  });
  expectStatus(group.status, 201, 'create group');
  const groupId = (JSON.parse(group.body) as { id: string }).id;
  for (let k = 0; k < ids.length; k += MEMBERS_PER_PATCH) {
    const r = await client.send('PATCH', `/scim/v2/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [
        {
          op: 'add',
          path: 'members',
          value: ids.slice(k, k + MEMBERS_PER_PATCH).map((value) => ({ value })),
        },
      ],
    });
    if (r.status !== 200 && r.status !== 204) throw new Error(`group PATCH: HTTP ${r.status}`);
  }
}

/** Starts a profiled worker on the backlog the push left, and measures it until the backlog is gone. */
async function drain(tenantId: string, platformHasEdge: () => Promise<number>) {
  const queue = new Queue(queueName('reconcile'), { connection: redis, prefix: 'idsync' });
  await queue.obliterate({ force: true }).catch(() => undefined);
  const events = await openOutbox(tenantId);
  const requestsBefore = simulator.requests.length;
  const profileDir = mkdtempSync(path.join(os.tmpdir(), 'idsync-touched-prof-'));
  process.env.BENCH_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${profileDir}`;
  const worker = await startServer('worker', env);
  delete process.env.BENCH_NODE_ARGS;
  const before = await startPhase({ serverPid: worker.child.pid!, sql, redis });
  const started = performance.now();
  await until(async () => (await openOutbox(tenantId)) === 0, 'the backlog to drain');
  const seconds = (performance.now() - started) / 1000;
  const cost = await endPhase({ serverPid: worker.child.pid!, sql, redis }, before, USERS);
  const [server] = await sql<{ ms: number; calls: number }[]>`
    SELECT sum(total_exec_time)::float8 AS ms, sum(calls)::int AS calls FROM pg_stat_statements
    WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_backend_pid%'`;
  const jobs = await queue.getJobs(['completed'], 0, -1);
  const runMs = jobs.map((j) => (j.finishedOn ?? 0) - (j.processedOn ?? 0)).sort((a, b) => a - b);
  const [audit] = await sql<{ operations: number; plan_ms: number }[]>`
    SELECT count(*)::int AS operations,
      coalesce(sum(duration_ms) FILTER (WHERE rn = 1), 0)::int AS plan_ms FROM (
        SELECT duration_ms, row_number() OVER (PARTITION BY subject_id, at ORDER BY id) AS rn
        FROM audit_log WHERE tenant_id = ${tenantId} AND action LIKE 'platform.%') a`;
  await worker.stop();
  await queue.close();
  const profile = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
  const per = (n: number) => round(n / USERS, 2);
  return {
    touchedUsers: USERS,
    outboxEvents: events,
    jobs: jobs.length,
    drainSeconds: round(seconds, 2),
    usersPerSecond: round(USERS / seconds, 1),
    jobRunMs: {
      p50: runMs[Math.floor(runMs.length / 2)] ?? 0,
      p99: runMs[Math.floor(runMs.length * 0.99)] ?? 0,
    },
    perUser: {
      sqlStatements: cost.sqlStatements,
      sqlServerMs: per(server!.ms),
      redisCommands: cost.redisCommands,
      workerCpuMs: cost.nodeCpuMs,
      postgresCpuMs: cost.postgresCpuMs,
      redisCpuMs: cost.redisCpuMs,
      platformOperations: per(audit!.operations),
      platformRequests: per(simulator.requests.length - requestsBefore),
      platformApplyMs: per(audit!.plan_ms),
    },
    usersWithTheirEdge: await platformHasEdge(),
    workerCpuByLibraryMs: profile ? cpuByOwner(path.join(profileDir, profile)) : null,
    topStatements: cost.topStatements,
    topRedisCommands: cost.topRedisCommands,
  };
}

// 1. Built-in platform: the job's own cost, no HTTP.
const builtin = await tenantWithRule('builtin');
await push(builtin.scimToken, 'b');
const builtinDrain = await drain(builtin.tenant.id, async () =>
  Number(
    (
      await sql`SELECT count(*)::int AS n FROM platform_team_members
          WHERE tenant_id = ${builtin.tenant.id} AND account LIKE 'b%'`
    )[0]!.n,
  ),
);
console.log('built-in', JSON.stringify(builtinDrain, null, 2));

/** A tenant on the Heroku simulator; a first scan fills its mirror (the team's id). */
async function herokuTenant(slug: string, budget: { budgetKey: string; refillPerMinute: number }) {
  const created = await tenantWithRule(slug);
  await simulator.connect(database.db, created.tenant.id, secretKey, { ...budget, reserve: HEROKU.reserve });
  const scanner = await startServer('worker', env);
  expectStatus((await admin.send('POST', `/api/tenants/${slug}/drift/scan`)).status, 202, 'drift scan');
  await until(
    async () =>
      Number(
        (await sql`SELECT count(*)::int AS n FROM drift_reports WHERE tenant_id = ${created.tenant.id}`)[0]!
          .n,
      ) > 0,
    'the first drift scan',
  );
  await scanner.stop();
  return created;
}

const teamMembersNamed = async (prefix: string) =>
  [...simulator.team('engineering')!.members.values()].filter((m) => m.user.email.startsWith(prefix)).length;

// 2. Heroku connector against the simulator, its bucket too large to pace anything.
const heroku = await herokuTenant('heroku', { budgetKey: 'unpaced', refillPerMinute: 1_000_000 });
await push(heroku.scimToken, 'h');
const herokuDrain = await drain(heroku.tenant.id, () => teamMembersNamed('h'));
console.log('heroku', JSON.stringify(herokuDrain, null, 2));

// What Heroku's real budget allows a drain of touched users (each needing this many requests).
const requestsPerUser = herokuDrain.perUser.platformRequests;
const budgetBound = (capacity: number, refillPerMinute: number) => ({
  capacity,
  refillPerMinute,
  reserve: HEROKU.reserve,
  requestsPerTouchedUser: requestsPerUser,
  burstUsers: Math.floor((capacity - HEROKU.reserve) / requestsPerUser),
  steadyUsersPerMinute: round(refillPerMinute / requestsPerUser, 1),
  steadyPlatformMsPerUser: round((60_000 / refillPerMinute) * requestsPerUser, 1),
});
const realBudget = budgetBound(HEROKU.capacity, HEROKU.refillPerMinute);
console.log('real Heroku budget', realBudget);

// 3. The same on a paced bucket: Heroku's refill sped up PACED_SPEEDUP times and a small bucket, to see
// the budget (not the job's own cost) set the drain rate, as it would on the real API.
const PACED_SPEEDUP = Number(process.env.TOUCHED_PACED_SPEEDUP ?? 20);
const PACED_CAPACITY = 500;
simulator.setBudget({
  capacity: PACED_CAPACITY,
  remaining: PACED_CAPACITY,
  refillPerMinute: HEROKU.refillPerMinute * PACED_SPEEDUP,
});
const paced = await herokuTenant('paced', {
  budgetKey: 'paced',
  refillPerMinute: HEROKU.refillPerMinute * PACED_SPEEDUP,
});
simulator.setBudget({ remaining: PACED_CAPACITY });
await push(paced.scimToken, 'p');
const pacedDrain = await drain(paced.tenant.id, () => teamMembersNamed('p'));
const pacedBound = budgetBound(PACED_CAPACITY, HEROKU.refillPerMinute * PACED_SPEEDUP);
const pacedPredictedSeconds = round(
  Math.max(0, USERS - pacedBound.burstUsers) / (pacedBound.steadyUsersPerMinute / 60),
  1,
);
console.log('paced', JSON.stringify({ ...pacedDrain, bound: pacedBound, pacedPredictedSeconds }, null, 2));

const results = {
  machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, load average ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
  workerConcurrency: Number(CONCURRENCY),
  simulatorLatencyMs: LATENCY_MS,
  builtin: builtinDrain,
  heroku: herokuDrain,
  realBudget,
  paced: {
    speedup: PACED_SPEEDUP,
    bound: pacedBound,
    predictedSeconds: pacedPredictedSeconds,
    drain: pacedDrain,
  },
};
writeFileSync(`${ROOT}/bench/results-reconcile-touched.json`, `${JSON.stringify(results, null, 2)}\n`);
await redis.quit();
await api.stop();
await database.close();
await backends.stop();
await simulator.stop();
