import { randomBytes } from 'node:crypto';
import { seedOffboardees as seedOffboardeesInSql } from '../../bench/seed-offboardees.js';
import { addRule } from '../../src/reconcile/rules.js';
import { createTenant } from '../../src/tenants/tenants.js';
import { HerokuSimulator } from '../../test/support/heroku-simulator.js';
import {
  appliedTwice,
  builtinEdgesLeft,
  QueueProbe,
  receiptFigures,
  sleep,
  type Verdict,
  waitFor,
} from './checks.js';
import { ChaosCluster, type Runner } from './cluster.js';
import { paced, RetryingIdp } from './idp.js';

export const SCENARIOS = [
  'kill',
  'redis-outage',
  'redis-flush',
  'pg-outage',
  'burst',
  'heroku-storm',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface ScenarioOptions {
  /** Users the scenario changes (deactivations, or in `burst` the number of changes). */
  users: number;
  /** kill: how many kill -9s at least. */
  kills: number;
  /** Outage length for redis-outage and pg-outage. */
  outageSeconds: number;
  /** How long the cluster may take to reach the expected state after the last change. */
  settleSeconds: number;
  runner: Runner;
  say: (line: string) => void;
}

export interface ScenarioResult {
  scenario: ScenarioName;
  seconds: number;
  figures: Record<string, unknown>;
  verdict: Verdict;
}

/** Defaults of the full run (`npm run chaos`) and of the short variants inside `npm test`. */
export function defaults(name: ScenarioName, short: boolean): Omit<ScenarioOptions, 'runner' | 'say'> {
  const full: Record<ScenarioName, number> = {
    kill: 1000,
    'redis-outage': 1000,
    'redis-flush': 1000,
    'pg-outage': 1000,
    burst: 500,
    'heroku-storm': 100,
  };
  return short
    ? { users: name === 'burst' ? 40 : 12, kills: 3, outageSeconds: 2, settleSeconds: 60 }
    : {
        users: full[name],
        kills: 100,
        outageSeconds: name === 'pg-outage' ? 30 : 60,
        settleSeconds: 900,
      };
}

interface Seeded {
  tenantId: string;
  scimToken: string;
  users: { id: string; account: string }[];
}

/**
 * `count` users, each in the Enterprise Account, 5 teams and 3 apps of the built-in platform with 2
 * live tokens (8 edges and 2 tokens to remove at offboarding). Written in SQL, before idsync starts, so
 * the run measures only the changes the IdP then sends.
 */
async function seedOffboardees(cluster: ChaosCluster, count: number): Promise<Seeded> {
  const { db, sql } = cluster.database;
  const { tenant, scimToken } = await createTenant(db, `chaos-${randomBytes(3).toString('hex')}`, 'chaos');
  const users = await seedOffboardeesInSql(sql, tenant.id, {
    prefix: 'person',
    count,
    teams: 5,
    apps: 3,
    tokens: 2,
  });
  return { tenantId: tenant.id, scimToken, users };
}

/**
 * Waits until every offboarded user has lost every edge and holds one complete receipt and the queues
 * are idle, then measures. Nothing is retried or approved by hand.
 */
async function settle(
  cluster: ChaosCluster,
  probe: QueueProbe,
  options: ScenarioOptions,
  edgesLeft: () => Promise<number>,
  seeded: Seeded,
  offboarded: string[],
): Promise<Verdict> {
  const database = cluster.database;
  const converged = await waitFor(
    async () => {
      const receipts = await receiptFigures(database, seeded.tenantId, offboarded);
      return (
        (await edgesLeft()) === 0 &&
        receipts.missing === 0 &&
        receipts.incomplete === 0 &&
        (await probe.pending()) === 0
      );
    },
    options.settleSeconds * 1000,
    250,
  );
  // Late jobs (a spurious receipt, an edge applied again) would show within a few polls; let them run.
  await waitFor(async () => (await probe.pending()) === 0, 10_000);
  const receipts = await receiptFigures(database, seeded.tenantId, offboarded);
  const verdict = {
    edgesMissed: await edgesLeft(),
    appliedTwice: await appliedTwice(database, seeded.tenantId),
    spuriousReceipts: receipts.spurious,
    missingReceipts: receipts.missing,
    incompleteReceipts: receipts.incomplete,
    jobsLeftFailed: await probe.failed(),
    converged,
  };
  return {
    ...verdict,
    pass:
      converged &&
      verdict.edgesMissed === 0 &&
      verdict.appliedTwice === 0 &&
      verdict.spuriousReceipts === 0 &&
      verdict.missingReceipts === 0 &&
      verdict.incompleteReceipts === 0,
  };
}

/**
 * Runs one scenario on a cluster of its own, or on `shared` (the short variants in `npm test` share one
 * cluster and give each scenario its own tenant, to stay within seconds).
 */
export async function runScenario(
  name: ScenarioName,
  options: ScenarioOptions,
  shared?: ChaosCluster,
): Promise<ScenarioResult> {
  const started = Date.now();
  const run = RUNNERS[name];
  const cluster =
    shared ??
    new ChaosCluster({ workers: 2, runner: options.runner, env: run.env(options), say: options.say });
  let result: Omit<ScenarioResult, 'seconds' | 'scenario'> | undefined;
  try {
    if (!shared) await cluster.start();
    result = await run.run(cluster, options);
  } finally {
    if (!shared) await cluster.stop(result?.verdict.pass !== true);
  }
  const crashes = cluster.crashes.splice(0);
  return {
    scenario: name,
    seconds: Math.round((Date.now() - started) / 1000),
    ...result!,
    figures: { ...result!.figures, processCrashesRestarted: crashes.length, crashes },
  };
}

/** The environment every scenario's processes need, for a cluster shared by several scenarios. */
export function sharedEnv(options: ScenarioOptions): Record<string, string> {
  return Object.assign({}, ...SCENARIOS.map((name) => RUNNERS[name].env(options)));
}

interface Runnable {
  env(options: ScenarioOptions): Record<string, string>;
  run(
    cluster: ChaosCluster,
    options: ScenarioOptions,
  ): Promise<{ figures: Record<string, unknown>; verdict: Verdict }>;
}

/**
 * The deactivation scenarios share a shape: seed, start idsync, send one SCIM deactivation per user at a
 * steady pace while `disrupt` does its damage, then settle and measure.
 */
async function deactivations(
  cluster: ChaosCluster,
  options: ScenarioOptions,
  sendSeconds: number,
  disrupt: (sending: { done: boolean }) => Promise<Record<string, unknown>>,
) {
  const seeded = await seedOffboardees(cluster, options.users);
  await cluster.startIdsync(2);
  const idp = new RetryingIdp(cluster.apiPort, seeded.scimToken);
  const probe = new QueueProbe(cluster.redisClient());
  try {
    const sending = { done: false };
    const rejected: number[] = [];
    const sent = paced(seeded.users.length, 8, (sendSeconds * 1000) / seeded.users.length, async (i) => {
      const answer = await idp.deactivate(seeded.users[i]!.id);
      if (answer.status !== 200) rejected.push(answer.status);
    }).finally(() => {
      sending.done = true;
    });
    const disruption = await disrupt(sending);
    await sent;
    options.say(`all ${seeded.users.length} deactivations accepted; waiting for the cluster to settle`);
    const verdict = await settle(
      cluster,
      probe,
      options,
      () => builtinEdgesLeft(cluster.database, seeded.tenantId, seeded.users),
      seeded,
      seeded.users.map((u) => u.id),
    );
    const stalls = await probe.stalls();
    return {
      figures: {
        deactivations: seeded.users.length,
        edgesPerUser: '8 edges (Enterprise Account, 5 teams, 3 apps) + 2 tokens',
        scim: { ...idp.figures, notAccepted: rejected.length },
        jobsStalledOnce: stalls.once,
        jobsStalledTwiceOrMore: stalls.twiceOrMore,
        ...disruption,
      },
      verdict: { ...verdict, pass: verdict.pass && rejected.length === 0 },
    };
  } finally {
    idp.close();
    await probe.close();
  }
}

const RUNNERS: Record<ScenarioName, Runnable> = {
  kill: {
    // A killed worker's job is taken over when its lock expires; 5 s keeps 100 kills inside minutes.
    env: () => ({ JOB_LOCK_MS: '5000' }),
    run: (cluster, options) => {
      const killEveryMs = 1_000;
      return deactivations(cluster, options, (options.kills * killEveryMs) / 1000, async (sending) => {
        const probe = new QueueProbe(cluster.redisClient());
        let doubleKills = 0;
        let next = 0;
        const killsBefore = cluster.kills;
        const kills = () => cluster.kills - killsBefore;
        try {
          while (kills() < options.kills || !sending.done) {
            await sleep(killEveryMs);
            // A job that already lost one worker is running again: kill every worker, so the same job
            // dies twice (BullMQ's default maxStalledCount of 1 then fails it for good).
            const again = await probe.activeStalledJob().catch(() => undefined);
            if (again) {
              doubleKills += 1;
              await Promise.all([0, 1].map((i) => cluster.killWorker(i)));
            } else {
              await cluster.killWorker(next);
              next = (next + 1) % 2;
            }
            if (kills() % 10 === 0) options.say(`${kills()} kill -9s so far`);
          }
        } finally {
          await probe.close();
        }
        return { kills: kills(), killsOfAJobAlreadyKilledOnce: doubleKills };
      });
    },
  },
  'redis-outage': {
    env: () => ({}),
    run: (cluster, options) =>
      deactivations(cluster, options, options.outageSeconds * 2, async () => {
        await sleep((options.outageSeconds * 1000) / 2);
        options.say(`Redis down for ${options.outageSeconds} s`);
        await cluster.stopRedis();
        await sleep(options.outageSeconds * 1000);
        await cluster.startRedis();
        options.say('Redis back (with its append-only file)');
        return { redisOutageSeconds: options.outageSeconds };
      }),
  },
  'redis-flush': {
    env: () => ({}),
    // Sent as fast as the API takes them, so a backlog is queued in Redis when it forgets everything.
    run: (cluster, options) =>
      deactivations(cluster, options, 0, async (sending) => {
        await waitFor(async () => sending.done, options.settleSeconds * 1000, 50);
        // Every change has reached the queues (the outbox is relayed), most jobs still wait: freeze the
        // workers so none finishes in between, and flush.
        await waitFor(
          async () => {
            const [row] = await cluster.database.sql<{ n: number }[]>`
            SELECT count(*)::int AS n FROM outbox WHERE relayed_at IS NULL`;
            return row!.n === 0;
          },
          60_000,
          20,
        );
        cluster.signalWorkers('SIGSTOP');
        const probe = new QueueProbe(cluster.redisClient());
        const queued = await probe.pending().catch(() => -1);
        await probe.close();
        options.say(`FLUSHALL with ${queued} jobs queued or running`);
        await cluster.flushRedis();
        cluster.signalWorkers('SIGCONT');
        return { flushes: 1, jobsInRedisWhenFlushed: queued };
      }),
  },
  'pg-outage': {
    env: () => ({}),
    run: (cluster, options) =>
      deactivations(cluster, options, options.outageSeconds * 2, async () => {
        await sleep((options.outageSeconds * 1000) / 2);
        options.say(`PostgreSQL down for ${options.outageSeconds} s`);
        await cluster.stopPostgres();
        await sleep(options.outageSeconds * 1000);
        await cluster.startPostgres();
        options.say('PostgreSQL back');
        return { postgresOutageSeconds: options.outageSeconds };
      }),
  },
  burst: { env: () => ({}), run: burst },
  'heroku-storm': {
    env: () => ({ IDSYNC_SECRET_KEY: HEROKU_SECRET, IDSYNC_ADMIN_TOKEN: ADMIN_TOKEN }),
    run: herokuStorm,
  },
};

/**
 * One worker at default settings takes a burst of changes sent as fast as 16 clients can: 40 % of the
 * users join a group granting a team, 30 % leave the group granting another, 30 % are deactivated.
 * Every user is in "Everyone" (Enterprise Account view), so leaving a group is not an offboarding.
 */
async function burst(cluster: ChaosCluster, options: ScenarioOptions) {
  const { db, sql } = cluster.database;
  const { tenant, scimToken } = await createTenant(db, `chaos-${randomBytes(3).toString('hex')}`, 'chaos');
  const rule = (idpGroup: string, team?: string) =>
    addRule(
      db,
      tenant.id,
      team
        ? { target: 'team', idpGroup, team, role: 'member' }
        : { target: 'enterprise', idpGroup, permissions: ['view'] },
      'chaos',
    );
  await rule('Everyone');
  await rule('Group A', 'team-a');
  await rule('Group B', 'team-b');
  const count = options.users;
  const users = await sql<{ id: string; account: string }[]>`
    INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${tenant.id}, 'burst' || n || '@example.com', 'scim' FROM generate_series(1, ${count}) n
    RETURNING id::text, lower(user_name) AS account`;
  const ids = users.map((u) => u.id);
  const accounts = users.map((u) => u.account);
  const groups = await sql<{ id: string; display_name: string }[]>`
    INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'Everyone'), (${tenant.id}, 'Group A'), (${tenant.id}, 'Group B')
    RETURNING id::text, display_name`;
  const groupId = (name: string) => groups.find((g) => g.display_name === name)!.id;
  await sql`INSERT INTO group_members (tenant_id, group_id, user_id)
    SELECT ${tenant.id}, g::uuid, u::uuid FROM unnest(${ids}::text[]) u
    CROSS JOIN unnest(${[groupId('Everyone'), groupId('Group A')]}::text[]) g`;
  await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
    SELECT ${tenant.id}, a, '{view}' FROM unnest(${accounts}::text[]) a`;
  await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
    SELECT ${tenant.id}, t.id, a, 'member' FROM unnest(${accounts}::text[]) a
    JOIN teams t ON t.tenant_id = ${tenant.id} AND t.name = 'team-a'`;
  await sql`INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash)
    SELECT ${tenant.id}, u::uuid, 'api', md5(random()::text || u), 'not-a-real-hash' FROM unnest(${ids}::text[]) u`;
  // Seeding queued reconciles of the rules' groups; the platform already matches, so drop them.
  await sql`UPDATE outbox SET relayed_at = now() WHERE relayed_at IS NULL`;

  const joinB = Math.round(count * 0.4);
  const leaveA = Math.round(count * 0.3);
  const joiners = users.slice(0, joinB);
  const leavers = users.slice(joinB, joinB + leaveA);
  const leaving = users.slice(joinB + leaveA);
  await cluster.startIdsync(1);
  const idp = new RetryingIdp(cluster.apiPort, scimToken);
  const probe = new QueueProbe(cluster.redisClient());
  try {
    const changes = [
      ...joiners.map((u) => () => idp.addMember(groupId('Group B'), u.id)),
      ...leavers.map((u) => () => idp.removeMember(groupId('Group A'), u.id)),
      ...leaving.map((u) => () => idp.deactivate(u.id)),
    ].sort(() => Math.random() - 0.5);
    const rejected: number[] = [];
    const sentAt = Date.now();
    await paced(changes.length, 16, 0, async (i) => {
      const answer = await changes[i]!();
      if (answer.status >= 300) rejected.push(answer.status);
    });
    const sendSeconds = (Date.now() - sentAt) / 1000;
    options.say(`${changes.length} changes sent in ${sendSeconds.toFixed(1)} s; waiting for the worker`);
    /** Each user's platform state compared with what the IdP now wants; the count of differing edges. */
    const edgesWrong = async () => {
      const [row] = await sql<{ n: number }[]>`
        WITH want AS (
          SELECT a AS account, 'enterprise' AS edge FROM unnest(${[...joiners, ...leavers].map((u) => u.account)}::text[]) a
          UNION ALL SELECT a, 'team-a' FROM unnest(${joiners.map((u) => u.account)}::text[]) a
          UNION ALL SELECT a, 'team-b' FROM unnest(${joiners.map((u) => u.account)}::text[]) a),
        have AS (
          SELECT account, 'enterprise' AS edge FROM platform_enterprise_members WHERE tenant_id = ${tenant.id}
          UNION ALL SELECT m.account, t.name FROM platform_team_members m JOIN teams t ON t.id = m.team_id WHERE m.tenant_id = ${tenant.id}
          UNION ALL SELECT c.account, 'app' FROM platform_app_collaborators c WHERE c.tenant_id = ${tenant.id}
          UNION ALL SELECT lower(u.user_name), 'token' FROM tokens k JOIN users u ON u.id = k.user_id
            WHERE k.tenant_id = ${tenant.id} AND k.revoked_at IS NULL AND u.id = ANY(${leaving.map((u) => u.id)}::uuid[]))
        SELECT ((SELECT count(*) FROM (SELECT * FROM want EXCEPT SELECT * FROM have) missing)
          + (SELECT count(*) FROM (SELECT * FROM have EXCEPT SELECT * FROM want) excess))::int AS n`;
      return row!.n;
    };
    const verdict = await settle(
      cluster,
      probe,
      options,
      edgesWrong,
      { tenantId: tenant.id, scimToken, users },
      leaving.map((u) => u.id),
    );
    return {
      figures: {
        changes: changes.length,
        joinedGroupB: joiners.length,
        leftGroupA: leavers.length,
        deactivated: leaving.length,
        workers: 1,
        settings: 'defaults (WORKER_CONCURRENCY 8, JOB_LOCK_MS 30000)',
        sendSeconds: Math.round(sendSeconds * 10) / 10,
        scim: { ...idp.figures, notAccepted: rejected.length },
      },
      verdict: { ...verdict, pass: verdict.pass && rejected.length === 0 },
    };
  } finally {
    idp.close();
    await probe.close();
  }
}

const HEROKU_SECRET = randomBytes(32).toString('hex');
const ADMIN_TOKEN = randomBytes(24).toString('hex');
const HEROKU_TEAMS = ['team-1', 'team-2', 'team-3'];
const HEROKU_APPS = ['app-1', 'app-2'];

/**
 * Deactivations on a simulated Heroku that answers 503 to a third of all requests and whose rate budget
 * is emptied every few seconds (429s until it refills). The users start as members of the Enterprise
 * Account, 3 teams and 2 apps on the simulator, and idsync's mirror of Heroku says so (as after a scan).
 */
async function herokuStorm(cluster: ChaosCluster, options: ScenarioOptions) {
  const { db, sql } = cluster.database;
  const simulator = new HerokuSimulator({ refillPerMinute: 6_000, capacity: 4_500 });
  await simulator.start();
  for (const team of HEROKU_TEAMS) simulator.addTeam(team, [['boss@example.com', 'admin']]);
  for (const [i, app] of HEROKU_APPS.entries()) simulator.addApp(app, HEROKU_TEAMS[i]!);
  const { tenant, scimToken } = await createTenant(db, `chaos-${randomBytes(3).toString('hex')}`, 'chaos');
  await simulator.connect(db, tenant.id, HEROKU_SECRET, {
    budgetKey: `chaos-${randomBytes(4).toString('hex')}`,
    refillPerMinute: 6_000,
    reserve: 0,
  });
  await addRule(
    db,
    tenant.id,
    { target: 'enterprise', idpGroup: 'Engineering', permissions: ['view'] },
    'chaos',
  );
  for (const team of HEROKU_TEAMS) {
    await addRule(db, tenant.id, { target: 'team', idpGroup: 'Engineering', team, role: 'member' }, 'chaos');
  }
  for (const app of HEROKU_APPS) {
    await addRule(
      db,
      tenant.id,
      { target: 'app', idpGroup: 'Engineering', app, permissions: ['deploy'] },
      'chaos',
    );
  }
  const users = await sql<{ id: string; account: string }[]>`
    INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${tenant.id}, 'heroku' || n || '@example.com', 'scim' FROM generate_series(1, ${options.users}) n
    RETURNING id::text, lower(user_name) AS account`;
  const accounts = users.map((u) => u.account);
  const [group] = await sql<{ id: string }[]>`
    INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'Engineering') RETURNING id::text`;
  await sql`INSERT INTO group_members (tenant_id, group_id, user_id)
    SELECT ${tenant.id}, ${group!.id}::uuid, u::uuid FROM unnest(${users.map((u) => u.id)}::text[]) u`;
  await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions, federated)
    SELECT ${tenant.id}, a, '{view}', true FROM unnest(${accounts}::text[]) a`;
  await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
    SELECT ${tenant.id}, t.id, a, 'member' FROM unnest(${accounts}::text[]) a CROSS JOIN teams t WHERE t.tenant_id = ${tenant.id}`;
  await sql`INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions)
    SELECT ${tenant.id}, p.id, a, '{deploy}' FROM unnest(${accounts}::text[]) a CROSS JOIN apps p WHERE p.tenant_id = ${tenant.id}`;
  await sql`UPDATE outbox SET relayed_at = now() WHERE relayed_at IS NULL`;
  for (const account of accounts) {
    simulator.addEnterpriseMember(account);
    for (const team of simulator.teams.values()) simulator.addTeamMember(team.name, account, 'member');
    for (const app of simulator.apps.values()) simulator.addCollaborator(app.name, account, ['deploy']);
  }
  await cluster.startIdsync(2);
  const idp = new RetryingIdp(cluster.apiPort, scimToken);
  const probe = new QueueProbe(cluster.redisClient());
  const grants = 1 + HEROKU_TEAMS.length + HEROKU_APPS.length;
  let storm: NodeJS.Timeout | undefined;
  try {
    const requestsBefore = simulator.requests.length;
    simulator.faultRate = 0.33;
    storm = setInterval(() => simulator.drainBudget(), 5_000);
    await paced(users.length, 8, 0, async (i) => {
      await idp.deactivate(users[i]!.id);
    });
    const edgesLeft = async () => users.reduce((n, u) => n + simulator.grantsOf(u.account).length, 0);
    await waitFor(async () => (await edgesLeft()) === 0, options.settleSeconds * 1000);
    clearInterval(storm);
    simulator.faultRate = 0;
    const verdict = await settle(
      cluster,
      probe,
      options,
      edgesLeft,
      { tenantId: tenant.id, scimToken, users },
      users.map((u) => u.id),
    );
    const during = simulator.requests.slice(requestsBefore);
    const deletes = new Map<string, number>();
    for (const r of during) {
      if (r.method === 'DELETE' && r.status < 300) deletes.set(r.path, (deletes.get(r.path) ?? 0) + 1);
    }
    const deletedTwice = [...deletes.values()].filter((n) => n > 1).length;
    return {
      figures: {
        deactivations: users.length,
        edgesPerUser: `${grants} (Enterprise Account, ${HEROKU_TEAMS.length} teams, ${HEROKU_APPS.length} apps)`,
        herokuRequests: during.length,
        answered429: during.filter((r) => r.status === 429).length,
        answered503: during.filter((r) => r.status === 503).length,
        successfulDeletesOfTheSameEdgeTwice: deletedTwice,
        schemaViolations: simulator.violations.length,
        scim: idp.figures,
      },
      verdict: {
        ...verdict,
        appliedTwice: verdict.appliedTwice + deletedTwice,
        pass: verdict.pass && deletedTwice === 0,
      },
    };
  } finally {
    clearInterval(storm);
    idp.close();
    await probe.close();
    await simulator.stop();
  }
}
