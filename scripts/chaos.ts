/**
 * The fault suite (not a test; it prints figures): `npm run chaos -- [--scenario kill,pg-outage|all]
 * [--users N] [--kills N] [--outage S] [--settle S] [--short]`. Each scenario starts its own real
 * PostgreSQL and Redis, one `idsync serve` and two `idsync worker` (one for `burst`) from the compiled
 * CLI (`npm run build` first) as separate processes, does its damage, and reports what it finds.
 * Pass = 0 edges missed, 0 applied twice, 0 spurious receipts, every receipt complete, no human action.
 * Exit code 1 when a scenario did not pass. See RELIABILITY.md.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './chaos/cluster.js';
import { defaults, runScenario, SCENARIOS, type ScenarioName } from './chaos/scenarios.js';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'all' },
    users: { type: 'string' },
    kills: { type: 'string' },
    outage: { type: 'string' },
    settle: { type: 'string' },
    short: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(`Usage: npm run chaos -- [options]   (npm run build first; see RELIABILITY.md)
  --scenario <list>  comma list of ${SCENARIOS.join(', ')}, or all (default)
  --users <n>        users the scenario changes (default 1000; burst 500, heroku-storm 100)
  --kills <n>        kill: kill -9s at least (default 100)
  --outage <s>       redis-outage, pg-outage: outage length (default 60; pg-outage 30)
  --settle <s>       how long the cluster may take to settle after the last change (default 900)
  --short            the small variants npm test runs (12 users, 3 kills, 2 s outages)
Prints each scenario's figures as JSON on stdout; exits 1 when a scenario did not pass.
`);
  process.exit(0);
}

const chosen = values.scenario === 'all' ? [...SCENARIOS] : values.scenario!.split(',');
for (const name of chosen) {
  if (!SCENARIOS.includes(name as ScenarioName)) {
    process.stderr.write(`chaos: unknown scenario ${name}; one of ${SCENARIOS.join(', ')} or all\n`);
    process.exit(64);
  }
}
if (!existsSync(path.join(ROOT, 'dist/cli/main.js'))) {
  process.stderr.write('chaos: dist/cli/main.js is missing; run npm run build first\n');
  process.exit(78);
}

const number = (value: string | undefined) => (value === undefined ? undefined : Number(value));
let failed = 0;
for (const name of chosen as ScenarioName[]) {
  const base = defaults(name, values.short!);
  const options = {
    ...base,
    users: number(values.users) ?? base.users,
    kills: number(values.kills) ?? base.kills,
    outageSeconds: number(values.outage) ?? base.outageSeconds,
    settleSeconds: number(values.settle) ?? base.settleSeconds,
    runner: 'dist' as const,
    say: (line: string) =>
      process.stderr.write(`[${name} ${new Date().toISOString().slice(11, 19)}] ${line}\n`),
  };
  options.say(`starting: ${JSON.stringify({ ...options, say: undefined, runner: undefined })}`);
  const result = await runScenario(name, options);
  if (!result.verdict.pass) failed += 1;
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
process.exit(failed === 0 ? 0 : 1);
