/**
 * Drift scan benchmark (not a test): `npm run build && npx tsx bench/drift.ts`.
 * The built-in platform with 100,000 users in 1,000 teams (5 teams each: 500,000 memberships, every user
 * in the Enterprise Account) exactly as 1,000 rules say, then about 1 % drift seeded by category. The
 * scan runs as `idsync drift scan` in its own process (the compiled CLI), so its time and peak memory
 * are its own; the stored findings are compared with the seeded ones, key by key.
 * Set DRIFT_USERS / DRIFT_TEAMS to change the sizes.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { peakRssMb, ROOT, round, startBackends } from './support.js';

const USERS = Number(process.env.DRIFT_USERS ?? 100_000);
const TEAMS = Number(process.env.DRIFT_TEAMS ?? 1_000);
const PER_USER = 5;
const MISSING = 1_500;
const WRONG_ROLE = 1_500;
const EXCESS = 1_000;
const ORPHANS = 500;
const OFFBOARDED_USERS = 100;

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 4 });
const { sql } = database;
const { tenant } = await createTenant(database.db, 'bench', 'bench');
const t = tenant.id;

const seedStarted = performance.now();
// User n is in teams (7n + 211j) mod TEAMS for j < 5: five distinct teams each, spread evenly.
await sql`INSERT INTO teams (tenant_id, name) SELECT ${t}, 'team-' || k FROM generate_series(0, ${TEAMS - 1}) k`;
await sql`INSERT INTO groups (tenant_id, display_name) SELECT ${t}, 'grp-' || k FROM generate_series(0, ${TEAMS - 1}) k`;
await sql`INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role)
  SELECT ${t}, 'grp-' || k, 'team', 'team-' || k, 'member' FROM generate_series(0, ${TEAMS - 1}) k`;
await sql`INSERT INTO users (tenant_id, user_name, origin) SELECT ${t}, 'user' || n || '@example.com', 'scim' FROM generate_series(0, ${USERS - 1}) n`;
await sql`
  INSERT INTO group_members (tenant_id, group_id, user_id)
  SELECT ${t}, g.id, u.id FROM users u
  CROSS JOIN generate_series(0, ${PER_USER - 1}) j
  JOIN groups g ON g.tenant_id = ${t} AND g.display_name = 'grp-' || ((7 * substring(u.user_name from 5 for position('@' in u.user_name) - 5)::int + 211 * j) % ${TEAMS})
  WHERE u.tenant_id = ${t}`;
await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions) SELECT ${t}, lower(user_name), '{view}' FROM users WHERE tenant_id = ${t}`;
await sql`
  INSERT INTO platform_team_members (tenant_id, team_id, account, role)
  SELECT ${t}, tm.id, lower(u.user_name), 'member' FROM group_members gm
  JOIN users u ON u.id = gm.user_id JOIN groups g ON g.id = gm.group_id
  JOIN teams tm ON tm.tenant_id = ${t} AND tm.name = 'team-' || substring(g.display_name from 5)`;
await sql`DELETE FROM outbox`;

// The drift, in disjoint sets of users so each seeded edge is exactly one finding.
const expected = new Set<string>();
const pick = async (count: number, band: number) =>
  sql<{ account: string; team: string; team_id: string }[]>`
    SELECT m.account, tm.name AS team, tm.id::text AS team_id FROM platform_team_members m JOIN teams tm ON tm.id = m.team_id
    WHERE m.tenant_id = ${t} AND (substring(m.account from 5 for position('@' in m.account) - 5)::int % 10) = ${band}
    ORDER BY md5(m.account || tm.name) LIMIT ${count}`;
for (const row of await pick(MISSING, 1)) {
  await sql`DELETE FROM platform_team_members WHERE team_id = ${row.team_id} AND account = ${row.account}`;
  expected.add(`missing-access|${row.account}|team|${row.team}`);
}
const wrong = await pick(WRONG_ROLE, 2);
await sql`UPDATE platform_team_members SET role = 'admin' WHERE (team_id::text, account) IN (SELECT * FROM unnest(${wrong.map((w) => w.team_id)}::text[], ${wrong.map((w) => w.account)}::text[]))`;
for (const row of wrong) expected.add(`wrong-role|${row.account}|team|${row.team}`);
const excess = await sql<{ account: string; team: string; team_id: string }[]>`
  SELECT DISTINCT ON (u.id) lower(u.user_name) AS account, tm.name AS team, tm.id::text AS team_id FROM users u
  JOIN teams tm ON tm.tenant_id = ${t} AND tm.name = 'team-' || ((7 * substring(u.user_name from 5 for position('@' in u.user_name) - 5)::int + 1) % ${TEAMS})
  WHERE u.tenant_id = ${t} AND (substring(u.user_name from 5 for position('@' in u.user_name) - 5)::int % 10) = 3
  ORDER BY u.id LIMIT ${EXCESS}`;
await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
  SELECT ${t}, x.team_id::uuid, x.account, 'viewer' FROM unnest(${excess.map((e) => e.team_id)}::text[], ${excess.map((e) => e.account)}::text[]) AS x(team_id, account)`;
for (const row of excess) expected.add(`excess-access|${row.account}|team|${row.team}`);
await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
  SELECT ${t}, tm.id, 'orphan' || n || '@example.com', 'member' FROM generate_series(1, ${ORPHANS}) n
  JOIN teams tm ON tm.tenant_id = ${t} AND tm.name = 'team-' || (n % ${TEAMS})`;
for (let n = 1; n <= ORPHANS; n++) expected.add(`orphan|orphan${n}@example.com|team|team-${n % TEAMS}`);
const offboarded = await sql<{ account: string }[]>`
  UPDATE users SET active = false WHERE id IN (
    SELECT id FROM users WHERE tenant_id = ${t} AND (substring(user_name from 5 for position('@' in user_name) - 5)::int % 10) = 4
    ORDER BY id LIMIT ${OFFBOARDED_USERS})
  RETURNING lower(user_name) AS account`;
for (const { account } of offboarded) {
  expected.add(`excess-access|${account}|enterprise|`);
  for (const row of await sql<{ team: string }[]>`
    SELECT tm.name AS team FROM platform_team_members m JOIN teams tm ON tm.id = m.team_id WHERE m.tenant_id = ${t} AND m.account = ${account}`) {
    expected.add(`excess-access|${account}|team|${row.team}`);
  }
}
await sql`VACUUM ANALYZE`;
const [{ memberships }] =
  (await sql`SELECT count(*)::int AS memberships FROM platform_team_members WHERE tenant_id = ${t}`) as unknown as [
    { memberships: number },
  ];
const seedSeconds = round((performance.now() - seedStarted) / 1000, 1);
console.log(
  `seeded ${USERS} users, ${TEAMS} teams, ${memberships} team memberships, ${expected.size} drifted edges in ${seedSeconds} s`,
);

// The scan, as an operator runs it: its own process.
const started = performance.now();
const child = spawn(
  process.execPath,
  [path.join(ROOT, 'dist/cli/main.js'), 'drift', 'scan', '--tenant', 'bench'],
  {
    env: {
      ...process.env,
      DATABASE_URL: backends.databaseUrl,
      REDIS_URL: backends.redisUrl,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
let output = '';
child.stdout!.on('data', (chunk) => {
  output += chunk;
});
let rss = 0;
const sampler = setInterval(() => {
  try {
    rss = Math.max(rss, peakRssMb(child.pid!));
  } catch {
    // exited between samples
  }
}, 50);
const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
clearInterval(sampler);
const wallSeconds = round((performance.now() - started) / 1000, 2);
if (code !== 0) throw new Error(`idsync drift scan exited with ${code}: ${output}`);
process.stdout.write(output);

const [report] = await sql<
  { id: string; summary: { durationMs: number; total: number; phasesMs: Record<string, number> } }[]
>`
  SELECT id::text, summary FROM drift_reports WHERE tenant_id = ${t} ORDER BY seq DESC LIMIT 1`;
const found = new Set(
  (await sql<{ key: string }[]>`SELECT key FROM drift_findings WHERE report_id = ${report!.id}`).map(
    (r) => r.key,
  ),
);
const falsePositives = [...found].filter((k) => !expected.has(k));
const missed = [...expected].filter((k) => !found.has(k));

const results = {
  machine: {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model,
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
  },
  users: USERS,
  teams: TEAMS,
  teamMemberships: memberships,
  seededDrift: expected.size,
  scanSeconds: round(report!.summary.durationMs / 1000, 2),
  phasesMs: report!.summary.phasesMs,
  processWallSeconds: wallSeconds,
  peakRssMb: rss,
  findings: found.size,
  falsePositives: falsePositives.length,
  missed: missed.length,
  examples: { falsePositives: falsePositives.slice(0, 5), missed: missed.slice(0, 5) },
};
console.log(JSON.stringify(results, null, 2));
writeFileSync(path.join(ROOT, 'bench/results-drift.json'), `${JSON.stringify(results, null, 2)}\n`);
await database.close();
await backends.stop();
