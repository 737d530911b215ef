import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { runDriftScan } from '../src/drift/scan.js';
import { addRule } from '../src/reconcile/rules.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { HerokuSimulator } from './support/heroku-simulator.js';
import { capturingLogger } from './support/log-capture.js';
import { GROUP, patch, USER } from './support/scim-fixtures.js';

/*
 * "Enterprise admins everywhere" on a simulated Heroku: an every-team rule makes its group's members
 * admins of every team Heroku lists, and of a team created on Heroku later, once a scan has read it.
 */
describe('every-team rules on the Heroku simulator', async () => {
  const simulator = new HerokuSimulator({ refillPerMinute: 1_200 });
  await simulator.start();
  simulator.addTeam('alpha', [['keeper@example.com', 'admin']]);
  simulator.addTeam('beta', [['keeper@example.com', 'admin']]);

  const database = await createTestDatabase();
  const secretKey = randomBytes(32).toString('hex');
  const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
  await simulator.connect(database.db, tenant.id, secretKey, {
    budgetKey: uniquePrefix('heroku'),
    refillPerMinute: 1_200,
    reserve: 0,
  });
  await addRule(
    database.db,
    tenant.id,
    { target: 'all-teams', idpGroup: 'EA Admins', role: 'admin' },
    'test',
  );

  const { log } = capturingLogger('silent');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { secretKey, workerConcurrency: 2 }),
    log,
  });
  afterAll(async () => {
    await daemon.stop();
    await simulator.stop();
  });
  const scim = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`http://127.0.0.1:${daemon.port}/scim/v2${path}`, {
      method,
      headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return {
      status: response.status,
      body: response.status === 204 ? undefined : ((await response.json()) as any),
    };
  };
  const scan = async () =>
    runDriftScan(
      { database, connector: await daemon.resources.connectorFor(tenant.id, 'scan') },
      tenant.id,
      'test',
    );
  const teamsOn = (email: string) =>
    simulator
      .grantsOf(email)
      .filter((g) => g.startsWith('team '))
      .sort();

  it('covers the teams a scan lists, and a team created on Heroku later after the next scan', async () => {
    await scan();
    const user = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'boss@example.com',
      active: true,
    });
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'EA Admins' });
    await scim(
      'PATCH',
      `/Groups/${group.body.id}`,
      patch([{ op: 'add', path: 'members', value: [{ value: user.body.id }] }]),
    );
    await expect
      .poll(() => teamsOn('boss@example.com'), { timeout: 30_000 })
      .toEqual(['team alpha', 'team beta']);

    simulator.addTeam('gamma', [['keeper@example.com', 'admin']]);
    await scan();
    await expect
      .poll(() => teamsOn('boss@example.com'), { timeout: 30_000 })
      .toEqual(['team alpha', 'team beta', 'team gamma']);
    expect(simulator.team('gamma')!.members.get(simulator.user('boss@example.com')!.id)?.role).toBe('admin');
    expect(simulator.violations).toEqual([]);
  });
});
