/**
 * Deprovisioning cascade benchmark (not a test): `npm run build && npx tsx bench/cascade.ts`.
 * One API process and two worker processes (the compiled daemon) on real PostgreSQL and Redis. Each
 * user is in the Enterprise Account, 100 teams and 50 apps on the built-in platform and holds 10 tokens;
 * the clock runs from the SCIM response to the receipt's last edge removed.
 * Set CASCADE_USERS / LAYOFF_USERS to change the sizes.
 */
import os from 'node:os';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { seedOffboardees } from './seed-offboardees.js';
import { expectStatus, httpClient, load, round, startBackends, startServer } from './support.js';

const CASCADE_USERS = Number(process.env.CASCADE_USERS ?? 100);
const LAYOFF_USERS = Number(process.env.LAYOFF_USERS ?? 1000);
const TEAMS = 100;
const APPS = 50;
const TOKENS = 10;
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 4 });
const { sql } = database;
const { tenant, scimToken } = await createTenant(database.db, 'bench', 'bench');
const env = { DATABASE_URL: backends.databaseUrl, REDIS_URL: backends.redisUrl, OUTBOX_POLL_MS: '200' };
const api = await startServer('serve', env);
const workers = [await startServer('worker', env), await startServer('worker', env)];
const client = httpClient(api.port, scimToken, 16);

/** `count` users named `${prefix}N@example.com`, each in every team and app, with tokens. */
async function seed(prefix: string, count: number): Promise<string[]> {
  const users = await seedOffboardees(sql, tenant.id, {
    prefix,
    count,
    teams: TEAMS,
    apps: APPS,
    tokens: TOKENS,
  });
  await sql`VACUUM ANALYZE`;
  return users.map((u) => u.id);
}

const deactivate = async (id: string) => {
  const r = await client.send('PATCH', `/scim/v2/Users/${id}`, {
    schemas: [PATCH],
    Operations: [{ op: 'replace', value: { active: false } }],
  });
  expectStatus(r.status, 200, 'deactivate');
};

const results: Record<string, unknown> = {
  machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
  profile: `${TEAMS} teams, ${APPS} apps, ${TOKENS} tokens per user; 1 API process, 2 worker processes`,
};
try {
  // One user at a time: time from the SCIM response to the receipt's last removed edge.
  const ids = await seed('solo', CASCADE_USERS);
  const latencies: number[] = [];
  for (const id of ids) {
    await deactivate(id);
    const answered = Date.now();
    let done: { completed: number; last: number } | undefined;
    while (!done) {
      const [row] = await sql<{ completed: number | null; last: number | null }[]>`
        SELECT extract(epoch FROM r.completed_at) * 1000 AS completed,
          (SELECT extract(epoch FROM max(e.removed_at)) * 1000 FROM receipt_edges e WHERE e.receipt_id = r.id) AS last
        FROM receipts r WHERE r.user_id = ${id}`;
      if (row?.completed) done = { completed: Number(row.completed), last: Number(row.last) };
      else await new Promise((r) => setTimeout(r, 5));
    }
    latencies.push(done.last - answered);
  }
  latencies.sort((a, b) => a - b);
  results.cascadePerUser = {
    users: CASCADE_USERS,
    operationsPerUser: 1 + TEAMS + APPS + 1,
    p50Ms: round(latencies[Math.floor(latencies.length * 0.5)]!, 1),
    p99Ms: round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))]!, 1),
    maxMs: round(latencies.at(-1)!, 1),
  };

  // A layoff: LAYOFF_USERS deactivations sent by 16 clients at once, until every receipt is complete.
  const layoff = await seed('layoff', LAYOFF_USERS);
  const started = Date.now();
  const sending = await load(layoff.length, 16, (i) => deactivate(layoff[i]!));
  for (;;) {
    const [row] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM receipts r JOIN users u ON u.id = r.user_id
      WHERE u.user_name LIKE 'layoff%' AND r.completed_at IS NOT NULL`;
    if (row!.n >= layoff.length) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const [left] = await sql<{ n: number }[]>`
    SELECT (SELECT count(*) FROM platform_team_members WHERE account LIKE 'layoff%')
         + (SELECT count(*) FROM platform_app_collaborators WHERE account LIKE 'layoff%')
         + (SELECT count(*) FROM platform_enterprise_members WHERE account LIKE 'layoff%')
         + (SELECT count(*) FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.user_name LIKE 'layoff%' AND t.revoked_at IS NULL) AS n`;
  results.layoff = {
    users: layoff.length,
    scimRequestsPerSecond: sending.perSecond,
    fullyAppliedSeconds: round((Date.now() - started) / 1000, 1),
    edgesLeft: Number(left!.n),
  };
  console.log(JSON.stringify(results, null, 2));
} finally {
  for (const w of workers) await w.stop();
  await api.stop();
  await database.close();
  await backends.stop();
}
