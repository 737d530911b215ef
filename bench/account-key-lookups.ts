/**
 * Looking an account up by name (not a test): `npx tsx bench/account-key-lookups.ts`.
 * The mirror's and the users table's lookups by account name, written two ways: the name's key as a bare
 * `account_key($2)` (as before) and as `accountKeyOf`'s sub-select `(SELECT account_key($2))` (as now).
 * Each runs as a prepared statement under a forced generic plan (what postgres.js's per-connection
 * statements get after five executions) and a forced custom plan, on statistics taken when each table
 * held one row (stale: right after an initial push or a first scan) and again after ANALYZE (fresh).
 * Printed per case: the time per execution and which index each scan used, with the rows its filter
 * removed (each one a key computed and thrown away). Set LOOKUP_ROWS to change the size (default 10,000).
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { ROOT, round, startBackends } from './support.js';

const ROWS = Number(process.env.LOOKUP_ROWS ?? 10_000);
/** Each case runs this long (and at least 5 times): enough on a loaded machine, short at 50 ms a call. */
const WINDOW_MS = 1_000;

const keyOf = { bare: 'account_key($2)', 'sub-select': '(SELECT account_key($2))' } as const;
type Shape = keyof typeof keyOf;

/** The statements of src/platform/mirror.ts and src/sso/jit.ts, with the key written either way. */
const lookups: Record<string, (key: string) => string> = {
  'mirror.readAccess': (key) => `
    SELECT 'enterprise' AS kind, NULL AS name, NULL AS role, permissions::text AS permissions
      FROM platform_enterprise_members WHERE tenant_id = $1 AND account_key(account) = ${key}
    UNION ALL
    SELECT 'team', t.name, m.role::text, NULL FROM platform_team_members m JOIN teams t ON t.id = m.team_id
      WHERE m.tenant_id = $1 AND account_key(m.account) = ${key}
    UNION ALL
    SELECT 'app', a.name, NULL, c.permissions::text FROM platform_app_collaborators c JOIN apps a ON a.id = c.app_id
      WHERE c.tenant_id = $1 AND account_key(c.account) = ${key}`,
  'mirror.enterpriseMember': (key) => `
    SELECT permissions::text, federated FROM platform_enterprise_members
    WHERE tenant_id = $1 AND account_key(account) = ${key}`,
  'jit: live user by nameId': (key) => `
    SELECT id::text, active FROM users
    WHERE tenant_id = $1 AND user_name_key = ${key} AND deprovisioned_at IS NULL`,
};

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 1 });
const { sql } = database;
const { tenant } = await createTenant(database.db, 'bench', 'bench');
const t = tenant.id;

/** Accounts `user<from..to>@example.com` everywhere: users (as the IdP spells them) and the mirror. */
async function seed(from: number, to: number) {
  await sql`INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${t}, 'User' || n || '@Example.com', 'scim' FROM generate_series(${from}::int, ${to}::int) n`;
  await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
    SELECT ${t}, 'user' || n || '@example.com', '{view}' FROM generate_series(${from}::int, ${to}::int) n`;
  await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
    SELECT ${t}, team.id, 'user' || n || '@example.com', 'member'
    FROM generate_series(${from}::int, ${to}::int) n, teams team WHERE team.tenant_id = ${t}`;
  await sql`INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions)
    SELECT ${t}, app.id, 'user' || n || '@example.com', '{view}'
    FROM generate_series(${from}::int, ${to}::int) n, apps app WHERE app.tenant_id = ${t}`;
}

interface Scan {
  relation: string;
  index: string | null;
  rowsRemovedByFilter: number;
}

function scans(node: Record<string, unknown>, found: Scan[] = []): Scan[] {
  if (typeof node['Relation Name'] === 'string')
    found.push({
      relation: node['Relation Name'],
      index: (node['Index Name'] as string | undefined) ?? null,
      rowsRemovedByFilter: Number(node['Rows Removed by Filter'] ?? 0),
    });
  for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) scans(child, found);
  return found;
}

async function measure(phase: string) {
  const results = [];
  for (const mode of ['force_generic_plan', 'force_custom_plan'] as const) {
    await sql.unsafe(`SET plan_cache_mode = ${mode}`);
    for (const [lookup, text] of Object.entries(lookups)) {
      for (const shape of Object.keys(keyOf) as Shape[]) {
        await sql.unsafe('DEALLOCATE ALL');
        await sql.unsafe(`PREPARE lookup(uuid, text) AS ${text(keyOf[shape])}`);
        const name = (i: number) => `'User${(i * 7919) % ROWS}@EXAMPLE.com'`;
        const [explained] = await sql.unsafe(
          `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE lookup('${t}', ${name(1)})`,
        );
        const plan = (explained!['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0]!.Plan;
        let calls = 0;
        const started = performance.now();
        while (calls < 5 || performance.now() - started < WINDOW_MS) {
          await sql.unsafe(`EXECUTE lookup('${t}', ${name(calls)})`);
          calls += 1;
        }
        const msPerCall = round((performance.now() - started) / calls, 3);
        results.push({
          phase,
          plan: mode.replace('force_', ''),
          lookup,
          shape,
          msPerCall,
          calls,
          scans: scans(plan),
        });
      }
    }
  }
  return results;
}

await sql`INSERT INTO teams (tenant_id, name) VALUES (${t}, 'team-a')`;
await sql`INSERT INTO apps (tenant_id, name) VALUES (${t}, 'app-b')`;
await seed(0, 0);
await sql`ANALYZE`;
await seed(1, ROWS - 1);
const stale = await measure(`stale statistics (taken at 1 row, ${ROWS} now)`);
await sql`ANALYZE`;
const fresh = await measure(`fresh statistics (${ROWS} rows)`);
const [server] = await sql<{ version: string }[]>`SELECT current_setting('server_version') AS version`;
const results = {
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadAverage1m: round(os.loadavg()[0]!, 1) },
  postgres: server!.version,
  rows: ROWS,
  results: [...stale, ...fresh],
};
console.log(JSON.stringify(results, null, 2));
writeFileSync(
  path.join(ROOT, 'bench/results-account-key-lookups.json'),
  `${JSON.stringify(results, null, 2)}\n`,
);

await database.close();
await backends.stop();
