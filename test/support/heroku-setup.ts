import { randomBytes } from 'node:crypto';
import { afterAll } from 'vitest';
import type { Config } from '../../src/config.js';
import { runDriftScan } from '../../src/drift/scan.js';
import { addRule, type RuleInput } from '../../src/reconcile/rules.js';
import { createTenant, type TenantPolicyChanges, updateTenantPolicy } from '../../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './daemon.js';
import { createTestDatabase, uniquePrefix } from './database.js';
import { HerokuSimulator, type SimulatorOptions } from './heroku-simulator.js';
import { daemonClients } from './http-clients.js';
import { capturingLogger } from './log-capture.js';

/** The simulator's default pace for these tests: fast enough that no test waits on the rate budget. */
const REFILL_PER_MINUTE = 1_200;

/**
 * A tenant `acme` on a simulated Heroku, reconciled by a daemon with workers: the simulator (with the
 * teams and apps `platform` adds before idsync first reads it), its own database, the tenant connected
 * to the simulator with a budget of its own, `rules` and `policy` in place before the daemon starts,
 * and the IdP's and the operator's clients. Both are stopped after the file. Call it at the top of a
 * `describe`.
 */
export async function startHerokuTest(
  options: {
    simulator?: SimulatorOptions;
    platform?: (simulator: HerokuSimulator) => void;
    rules?: readonly RuleInput[];
    policy?: TenantPolicyChanges;
    config?: Partial<Config>;
  } = {},
) {
  const simulator = new HerokuSimulator({ refillPerMinute: REFILL_PER_MINUTE, ...options.simulator });
  await simulator.start();
  options.platform?.(simulator);

  const database = await createTestDatabase();
  const secretKey = randomBytes(32).toString('hex');
  const adminToken = randomBytes(24).toString('hex');
  const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
  await simulator.connect(database.db, tenant.id, secretKey, {
    budgetKey: uniquePrefix('heroku'),
    refillPerMinute: REFILL_PER_MINUTE,
    reserve: 0,
  });
  for (const rule of options.rules ?? []) await addRule(database.db, tenant.id, rule, 'test');
  if (options.policy) await updateTenantPolicy(database.db, 'acme', options.policy, 'test');

  const { log } = capturingLogger('silent');
  const config = testConfig(database.url, { adminToken, secretKey, workerConcurrency: 2, ...options.config });
  // Kept across a restart: the restarted daemon must find the queues (and their jobs) of the first.
  const queuePrefix = uniquePrefix('heroku-daemon');
  const startDaemon = () => startTestDaemon({ mode: 'start', config, log, queuePrefix });
  let daemon = await startDaemon();
  afterAll(async () => {
    await daemon.stop();
    await simulator.stop();
  });

  return {
    simulator,
    database,
    tenant,
    scimToken,
    adminToken,
    secretKey,
    config,
    /** The running daemon (another one after `startDaemon`). */
    get daemon() {
      return daemon;
    },
    /** Starts the daemon again, with the same configuration and queues, after a test stopped it. */
    startDaemon: async () => {
      daemon = await startDaemon();
      return daemon;
    },
    ...daemonClients(() => `http://127.0.0.1:${daemon.port}`, { scimToken, adminToken }),
    /** A drift scan now, through the daemon's connector (it binds the platform's ids of teams and apps). */
    scan: async () =>
      runDriftScan(
        { database, connector: await daemon.resources.connectorFor(tenant.id, 'scan') },
        tenant.id,
        'test',
      ),
  };
}
