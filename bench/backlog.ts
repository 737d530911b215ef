/**
 * Reconcile backlog benchmark (not a test): `npm run build && npx tsx bench/backlog.ts`.
 * An Okta-shaped initial push through the SCIM API (POST /Users with the body Okta sends, then the pushed
 * groups: one that an assignment rule maps to a team, and "Everyone", which no rule touches), against the
 * compiled daemon on real PostgreSQL (fsync on) and Redis, built-in platform. Measured:
 *   1. with `serve` + one `worker` running: the API's accept rate, and the time-to-effect of deprovisions
 *      (veterans with platform access deactivated in the middle of the push): from the SCIM response until
 *      their last platform edge is gone;
 *   2. with `serve` alone: the accept rate of a second push, then one `worker` started on the backlog it
 *      left, timed until every outbox row is completed (its drain rate, in outbox events per second).
 * Sizes: BACKLOG_USERS (default 10,000), BACKLOG_DEPROVISIONS (default 50), BACKLOG_CLIENTS (16),
 * BACKLOG_RULED_EVERY (default 10: one user in 10 is in the group a rule maps to a team, i.e. touched).
 * BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the daemon's processes.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { expectStatus, httpClient, load, ROOT, round, startBackends, startServer } from './support.js';

const USERS = Number(process.env.BACKLOG_USERS ?? 10_000);
const DEPROVISIONS = Number(process.env.BACKLOG_DEPROVISIONS ?? 50);
const CLIENTS = Number(process.env.BACKLOG_CLIENTS ?? 16);
/** Okta pushes group members in PATCHes of this many. */
const MEMBERS_PER_PATCH = 100;
/** One user in this many is in the group a rule maps to a team: the touched users, one job each. */
const RULED_EVERY = Number(process.env.BACKLOG_RULED_EVERY ?? 10);
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 4 });
const { sql } = database;
const { tenant, scimToken } = await createTenant(database.db, 'bench', 'bench');
// No scheduled drift scans: their outbox rows are not part of the push's backlog.
const env = {
  DATABASE_URL: backends.databaseUrl,
  REDIS_URL: backends.redisUrl,
  OUTBOX_POLL_MS: '200',
  DRIFT_TICK_MS: '0',
};
const api = await startServer('serve', env);
const client = httpClient(api.port, scimToken, CLIENTS);

await sql`INSERT INTO teams (tenant_id, name) VALUES (${tenant.id}, 'engineering')`;
await sql`INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role)
  VALUES (${tenant.id}, 'Engineering', 'team', 'engineering', 'member')`;

/** Users who already had access before the push (in the rule's group and on the platform). */
async function seedVeterans(count: number): Promise<{ id: string; account: string }[]> {
  const veterans = await sql<{ id: string; account: string }[]>`
    INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${tenant.id}, 'veteran' || n || '@example.com', 'scim' FROM generate_series(1, ${count}) n
    RETURNING id::text, lower(user_name) AS account`;
  const accounts = veterans.map((v) => v.account);
  await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
    SELECT ${tenant.id}, a, '{view}' FROM unnest(${accounts}::text[]) a`;
  await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
    SELECT ${tenant.id}, t.id, a, 'member' FROM unnest(${accounts}::text[]) a
    JOIN teams t ON t.tenant_id = ${tenant.id} AND t.name = 'engineering'`;
  return veterans;
}

const oktaUser = (userName: string, n: number) => ({
  schemas: [USER],
  userName,
  name: { givenName: `Given${n}`, familyName: `Family${n}` },
  emails: [{ primary: true, value: userName, type: 'work' }],
  displayName: `Given${n} Family${n}`,
  locale: 'en-US',
  externalId: `00u${n.toString(36).padStart(17, '0')}`,
  groups: [],
  password: 'Okta-sends-one-when-configured-1',
  active: true,
});

interface Push {
  users: number;
  requests: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
}

/** Users, then the two pushed groups and their members in PATCHes, as Okta's initial push does. */
async function push(label: string, midway?: () => void): Promise<Push> {
  const ids: string[] = [];
  const started = performance.now();
  const users = await load(USERS, CLIENTS, async (i) => {
    if (midway && i === Math.floor(USERS / 2)) midway();
    const r = await client.send('POST', '/scim/v2/Users', oktaUser(`${label}${i}@example.com`, i));
    expectStatus(r.status, 201, 'create user');
    ids[i] = (JSON.parse(r.body) as { id: string }).id;
  });
  let patches = 0;
  for (const [name, members] of [
    [`Engineering`, ids.filter((_, i) => i % RULED_EVERY === 0)],
    [`Everyone ${label}`, ids],
  ] as const) {
    const created = await client.send('POST', '/scim/v2/Groups', {
      schemas: [GROUP],
      displayName: name,
      members: [],
    });
    const groupId =
      created.status === 201
        ? (JSON.parse(created.body) as { id: string }).id
        : await sql`SELECT id::text FROM groups WHERE tenant_id = ${tenant.id} AND display_name = ${name}`.then(
            (rows) => rows[0]!.id as string,
          );
    const chunks = Array.from({ length: Math.ceil(members.length / MEMBERS_PER_PATCH) }, (_, k) =>
      members.slice(k * MEMBERS_PER_PATCH, (k + 1) * MEMBERS_PER_PATCH),
    );
    await load(chunks.length, Math.min(CLIENTS, 4), async (k) => {
      const r = await client.send('PATCH', `/scim/v2/Groups/${groupId}`, {
        schemas: [PATCH],
        Operations: [{ op: 'add', path: 'members', value: chunks[k]!.map((value) => ({ value })) }],
      });
      if (r.status !== 200 && r.status !== 204) throw new Error(`group PATCH: HTTP ${r.status}`);
    });
    patches += chunks.length + 1;
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    users: USERS,
    requests: USERS + patches,
    seconds: round(seconds, 2),
    perSecond: Math.round((USERS + patches) / seconds),
    p50: users.p50,
    p99: users.p99,
  };
}

const openOutbox = async () =>
  Number(
    (await sql`SELECT count(*)::int AS n FROM outbox WHERE completed_at IS NULL AND lane <> 'scan'`)[0]!.n,
  );
const allOutbox = async () =>
  Number((await sql`SELECT count(*)::int AS n FROM outbox WHERE lane <> 'scan'`)[0]!.n);

async function untilDrained(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await openOutbox()) > 0) {
    if (Date.now() > deadline) throw new Error(`backlog not drained within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// 1. A worker running during the push; veterans deactivated in the middle of it.
const veterans = await seedVeterans(DEPROVISIONS);
const worker = await startServer('worker', env);
const sentAt = new Map<string, number>();
const effective = new Map<string, number>();
const deprovisionsSent: Promise<void>[] = [];
const watcher = (async () => {
  while (effective.size < veterans.length) {
    const left = await sql<{ account: string }[]>`
      SELECT account FROM platform_enterprise_members WHERE tenant_id = ${tenant.id} AND account LIKE 'veteran%'
      UNION SELECT account FROM platform_team_members WHERE tenant_id = ${tenant.id} AND account LIKE 'veteran%'`;
    const remaining = new Set(left.map((r) => r.account));
    const now = performance.now();
    for (const [account, at] of sentAt)
      if (!remaining.has(account) && !effective.has(account)) effective.set(account, now - at);
    await new Promise((r) => setTimeout(r, 20));
  }
})();
const first = await push('okta', () => {
  veterans.forEach((veteran, k) => {
    deprovisionsSent.push(
      (async () => {
        await new Promise((r) => setTimeout(r, k * 20));
        const r = await client.send('PATCH', `/scim/v2/Users/${veteran.id}`, {
          schemas: [PATCH],
          Operations: [{ op: 'replace', value: { active: false } }],
        });
        expectStatus(r.status, 200, 'deactivate');
        sentAt.set(veteran.account, performance.now());
      })(),
    );
  });
});
await Promise.all(deprovisionsSent);
await watcher;
const pushEnded = performance.now();
await untilDrained(30 * 60_000);
const firstDrainSeconds = (performance.now() - pushEnded) / 1000;
const firstEvents = await allOutbox();
await worker.stop();
// Where a deprovision's time went: its outbox row committed -> relayed to Redis -> the job opening the
// receipt (queue, job start, lock, plan) -> the receipt complete (the cascade's own statements).
const [split] = await sql<{ relayed: number; waited: number; ran: number }[]>`
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM o.relayed_at - o.created_at) * 1000) AS relayed,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.started_at - o.relayed_at) * 1000) AS waited,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.completed_at - r.started_at) * 1000) AS ran
  FROM receipts r JOIN users u ON u.id = r.user_id
  JOIN outbox o ON o.subject_id = u.id::text AND o.lane = 'deprovision'
  WHERE u.user_name LIKE 'veteran%'`;
const latencies = [...effective.values()].sort((a, b) => a - b);
const pct = (p: number) =>
  round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!, 0);

// 2. The API alone, then one worker on the backlog it left.
const second = await push('again');
const backlog = await openOutbox();
const drainer = await startServer('worker', env);
// From the moment the worker says it runs: its start-up (Node, migrations check) is not draining.
const drainStarted = performance.now();
const backlogAtStart = await openOutbox();
await untilDrained(30 * 60_000);
const drainSeconds = (performance.now() - drainStarted) / 1000;
await drainer.stop();
// Settled by the relay in its claim (relayed and completed by one statement, one timestamp) vs by jobs.
const [settled] = await sql`
  SELECT count(*) FILTER (WHERE completed_at = relayed_at)::int AS by_relay, count(*)::int AS all_rows
  FROM (SELECT completed_at, relayed_at FROM outbox WHERE lane <> 'scan' ORDER BY id DESC LIMIT ${backlogAtStart}) o`;

const results = {
  machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}`,
  users: USERS,
  touchedUsers: Math.ceil(USERS / RULED_EVERY),
  withWorker: {
    accepted: first,
    outboxEvents: firstEvents,
    backlogLeftAfterPushSeconds: round(firstDrainSeconds, 2),
    deprovisionTimeToEffectMs: { count: latencies.length, p50: pct(50), p99: pct(99), max: pct(100) },
    deprovisionMedianMs: {
      committedToRelayed: round(split!.relayed, 0),
      relayedToReceiptOpened: round(split!.waited, 0),
      receiptOpenedToComplete: round(split!.ran, 0),
    },
  },
  apiAlone: {
    accepted: second,
    backlogEvents: backlog,
    backlogWhenWorkerReady: backlogAtStart,
    oneWorkerDrainSeconds: round(drainSeconds, 2),
    oneWorkerEventsPerSecond: Math.round(backlogAtStart / drainSeconds),
    settledByRelay: settled!.by_relay,
  },
};
console.log(JSON.stringify(results, null, 2));
console.log(
  `push accepted at ${second.perSecond} req/s; one worker drained ${backlogAtStart} events at ${results.apiAlone.oneWorkerEventsPerSecond} events/s; deprovision during the push p50 ${pct(50)} ms, p99 ${pct(99)} ms`,
);
writeFileSync(`${ROOT}/bench/results-backlog.json`, `${JSON.stringify(results, null, 2)}\n`);
await api.stop();
await database.close();
await backends.stop();
