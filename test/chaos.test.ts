import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChaosCluster } from '../scripts/chaos/cluster.js';
import {
  defaults,
  runScenario,
  SCENARIOS,
  type ScenarioName,
  type ScenarioOptions,
  sharedEnv,
} from '../scripts/chaos/scenarios.js';

/*
 * The short variants of the fault suite (`npm run chaos` runs the full ones): the same scenarios, with
 * small counts and outages of seconds, on one real PostgreSQL, one Redis, one `idsync serve` and two
 * `idsync worker` processes shared by all, each scenario on its own tenant.
 */
const say = process.env.IDSYNC_TEST_LOG ? (line: string) => console.log(line) : () => {};
const options = (name: ScenarioName): ScenarioOptions => ({ ...defaults(name, true), runner: 'source', say });

describe('fault suite, short variants', () => {
  const cluster = new ChaosCluster({
    workers: 2,
    runner: 'source',
    // Takeover after a kill -9 in 2 s instead of 30 s, and lost work re-sent by the sweeper after 3 s
    // instead of 5 minutes, so the short run stays short.
    env: {
      ...sharedEnv(options('kill')),
      JOB_LOCK_MS: '2000',
      SWEEPER_INTERVAL_MS: '1000',
      SWEEPER_GRACE_MS: '3000',
    },
    say,
  });
  let passed = true;
  beforeAll(() => cluster.start(), 60_000);
  afterAll(() => cluster.stop(!passed), 60_000);

  it.each(SCENARIOS)(
    '%s: nothing missed, nothing applied twice, no spurious or incomplete receipt, no human action',
    async (name) => {
      const result = await runScenario(name, options(name), cluster);
      if (!result.verdict.pass) {
        passed = false;
        // A wedged worker must not fail the scenarios after it: the next one starts on fresh workers.
        await cluster.replaceWorkers();
      }
      expect({ scenario: name, ...result.verdict }).toEqual({
        scenario: name,
        edgesMissed: 0,
        appliedTwice: 0,
        spuriousReceipts: 0,
        missingReceipts: 0,
        incompleteReceipts: 0,
        jobsLeftFailed: 0,
        converged: true,
        pass: true,
      });
    },
    180_000,
  );
});
