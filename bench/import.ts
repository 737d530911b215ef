/**
 * CSV import benchmark (not a test): `npm run build && npx tsx bench/import.ts`.
 * A file of IMPORT_ROWS rows (default 100,000; `;`-delimited with a BOM and quoted fields, as a
 * spreadsheet exports it): two thirds team roles over 200 teams, one third app permissions over 100
 * apps, for IMPORT_ROWS / 2 accounts of which half are already users. `idsync import` runs as its own
 * process (the compiled CLI) three times: a dry run (validated and planned: the ≤ 10 s, ≤ 300 MB
 * target), the import itself, and the same file again (a no-op). Each prints wall time, rows/s and
 * the process's peak RSS.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { peakRssMb, ROOT, round, startBackends } from './support.js';

const ROWS = Number(process.env.IMPORT_ROWS ?? 100_000);
const TEAMS = 200;
const APPS = 100;
const ACCOUNTS = Math.max(1, Math.floor(ROWS / 2));
const ROLES = ['admin', 'member', 'viewer'];
const PERMISSIONS = ['view', '"view;deploy"', '"deploy;operate"', 'manage'];

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 2 });
const { sql } = database;
const { tenant } = await createTenant(database.db, 'bench', 'bench');
const t = tenant.id;
await sql`INSERT INTO teams (tenant_id, name, listed_at) SELECT ${t}, 'team-' || k, now() FROM generate_series(0, ${TEAMS - 1}) k`;
await sql`INSERT INTO apps (tenant_id, name) SELECT ${t}, 'app-' || k FROM generate_series(0, ${APPS - 1}) k`;
await sql`INSERT INTO users (tenant_id, user_name, origin)
  SELECT ${t}, 'user' || n || '@example.com', 'scim' FROM generate_series(0, ${Math.floor(ACCOUNTS / 2) - 1}) n`;

// Row i: account i mod ACCOUNTS; each account gets distinct teams or apps (no conflicting duplicates).
const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-bench-import-'));
const file = path.join(scratch, 'access.csv');
const lines = ['\uFEFFEmail;Team;Role;App;Permissions'];
for (let i = 0; i < ROWS; i++) {
  const account = `"user${i % ACCOUNTS}@example.com"`;
  const pass = Math.floor(i / ACCOUNTS);
  if (i % 3 < 2) lines.push(`${account};team-${(i + 7 * pass) % TEAMS};${ROLES[i % 3]};;`);
  else lines.push(`${account};;;app-${(i + 13 * pass) % APPS};${PERMISSIONS[i % 4]}`);
}
writeFileSync(file, `${lines.join('\r\n')}\r\n`);

async function runImport(label: string, extra: string[]) {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [path.join(ROOT, 'dist/cli/main.js'), 'import', file, '--tenant', 'bench', '--json', ...extra],
    {
      env: { ...process.env, DATABASE_URL: backends.databaseUrl, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'ignore'],
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
  const wallSeconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`idsync import (${label}) exited with ${code}: ${output.slice(0, 2000)}`);
  const report = JSON.parse(output) as {
    valid: number;
    errors: unknown[];
    queuedUsers: number;
    plan: { operation: string; count: number }[];
  };
  const result = {
    run: label,
    rows: ROWS,
    valid: report.valid,
    invalid: report.errors.length,
    wallSeconds: round(wallSeconds, 2),
    rowsPerSecond: Math.round(ROWS / wallSeconds),
    peakRssMb: rss,
    queuedUsers: report.queuedUsers,
    plan: Object.fromEntries(report.plan.filter((p) => p.count > 0).map((p) => [p.operation, p.count])),
  };
  console.log(JSON.stringify(result));
  return result;
}

const results = {
  machine: {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model,
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
    loadAverage: os.loadavg().map((l) => round(l, 2)),
  },
  runs: [
    await runImport('dry run (validate and plan)', ['--dry-run']),
    await runImport('import', []),
    await runImport('same file again (no-op)', []),
  ],
};
console.log(JSON.stringify(results, null, 2));
writeFileSync(path.join(ROOT, 'bench/results-import.json'), `${JSON.stringify(results, null, 2)}\n`);
rmSync(scratch, { recursive: true, force: true });
await database.close();
await backends.stop();
