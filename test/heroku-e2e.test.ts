import { describe, expect, it } from 'vitest';
import { reportFindings } from '../src/drift/reports.js';
import { runDriftScan } from '../src/drift/scan.js';
import { startHerokuTest } from './support/heroku-setup.js';
import { GROUP, patch, USER } from './support/scim-fixtures.js';

const TEAMS = Array.from({ length: 20 }, (_, i) => `team-${i + 1}`);
const APPS = Array.from({ length: 30 }, (_, i) => `app-${i + 1}`);

/*
 * The whole path on a simulated Heroku: SCIM from the IdP → reconcile jobs → Heroku Platform API.
 * Deactivating a user in the IdP must remove every Heroku membership and collaborator, including one
 * added by hand on Heroku that only a scan knows about, and leave a complete receipt — also while the
 * API answers 429s and 5xx.
 */
describe('Heroku end to end on the simulator', async () => {
  const heroku = await startHerokuTest({
    platform: (simulator) => {
      for (const team of TEAMS) simulator.addTeam(team, [['boss@example.com', 'admin']]);
      simulator.addTeam('side-project', [['boss@example.com', 'admin']]);
      for (const [i, app] of APPS.entries()) simulator.addApp(app, TEAMS[i % TEAMS.length]!);
    },
    rules: [
      { target: 'enterprise', idpGroup: 'Engineering', permissions: ['view'] },
      ...TEAMS.map((team) => ({
        target: 'team' as const,
        idpGroup: 'Engineering',
        team,
        role: 'member' as const,
      })),
      ...APPS.map((app) => ({
        target: 'app' as const,
        idpGroup: 'Engineering',
        app,
        permissions: ['view' as const, 'deploy' as const],
      })),
    ],
    config: { workerConcurrency: 4 },
  });
  const { simulator, database, tenant, scim, admin } = heroku;
  const receipt = async (userId: string) =>
    (await admin('GET', `/tenants/acme/users/${userId}/receipt`)).body;
  const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Engineering' });

  async function onboard(email: string): Promise<string> {
    const user = await scim('POST', '/Users', { schemas: [USER], userName: email, active: true });
    expect(user.status).toBe(201);
    await scim(
      'PATCH',
      `/Groups/${group.body.id}`,
      patch([{ op: 'add', path: 'members', value: [{ value: user.body.id }] }]),
    );
    await expect
      .poll(() => simulator.grantsOf(email).length, { timeout: 30_000, interval: 200 })
      .toBe(1 + 20 + 30);
    return user.body.id;
  }

  it('SCIM deactivation removes every Heroku membership and collaborator, and the receipt is complete', async () => {
    const userId = await onboard('ada@example.com');
    // Added by hand on Heroku's dashboard: idsync learns it from a scan of Heroku.
    simulator.addTeamMember('side-project', 'ada@example.com', 'member');
    // Heroku says she is not under SSO: the receipt must not promise her tokens die in 8 hours.
    simulator.users.get('ada@example.com')!.sso = false;
    const scan = await runDriftScan(
      { database, connector: await heroku.daemon.resources.connectorFor(tenant.id, 'scan') },
      tenant.id,
      'test',
    );
    const findings = await reportFindings(database.db, scan.reportId, { user: 'ada@' });
    expect(findings.map((f) => `${f.class} ${f.team}`)).toEqual(['excess-access side-project']);

    const deactivatedAt = Date.now();
    expect(
      (await scim('PATCH', `/Users/${userId}`, patch([{ op: 'replace', value: { active: false } }]))).status,
    ).toBe(200);
    await expect
      .poll(() => simulator.grantsOf('ada@example.com'), { timeout: 20_000, interval: 100 })
      .toEqual([]);
    await expect.poll(async () => (await receipt(userId)).status, { timeout: 10_000 }).toBe('complete');
    const evidence = await receipt(userId);
    expect(evidence.edgesRemoved).toHaveLength(1 + 21 + 30);
    expect(evidence.edgesRemoved.map((e: { description: string }) => e.description)).toContain(
      'remove ada@example.com from team side-project',
    );
    expect(evidence.timeToEffectMs).toBeLessThan(Date.now() - deactivatedAt + 1_000);
    // Heroku cannot revoke her API keys, and she was not under SSO: the receipt says what to do.
    expect(evidence.leftToHuman).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          edge: 'Heroku API keys',
          why: expect.stringContaining('Heroku says ada@example.com is not under SSO'),
          action: expect.stringContaining('disable the account'),
        }),
        expect.objectContaining({ edge: 'apps outside the Enterprise Account' }),
        expect.objectContaining({
          edge: 'memberships added on Heroku by hand',
          why: expect.stringMatching(/last full read of Heroku \(20/),
        }),
      ]),
    );
    expect(simulator.violations).toEqual([]);
  }, 60_000);

  it('a 429 storm and 5xx faults delay the removal but never lose it', async () => {
    const userId = await onboard('bob@example.com');
    // An empty bucket that refills only once the cascade has met a 429: refilling from the start, a
    // cascade that began late on a loaded machine could find enough budget for all its 51 requests.
    simulator.setBudget({ remaining: 0, refillPerMinute: 0 });
    simulator.faultRate = 0.2;
    const sentBefore = simulator.requests.length;
    expect(
      (await scim('PATCH', `/Users/${userId}`, patch([{ op: 'replace', value: { active: false } }]))).status,
    ).toBe(200);
    await expect
      .poll(() => simulator.requests.slice(sentBefore).some((r) => r.status === 429), {
        timeout: 30_000,
        interval: 50,
      })
      .toBe(true);
    // Then 10 a second: the cascade's requests still cannot all fit at once.
    simulator.setBudget({ refillPerMinute: 600 });
    await expect
      .poll(() => simulator.grantsOf('bob@example.com'), { timeout: 60_000, interval: 200 })
      .toEqual([]);
    simulator.faultRate = 0;
    simulator.setBudget({ refillPerMinute: 1_200 });
    const statuses = new Set(simulator.requests.map((r) => r.status));
    expect([...statuses]).toContain(429);
    expect([...statuses]).toContain(503);
    await expect.poll(async () => (await receipt(userId)).status, { timeout: 20_000 }).toBe('complete');
    const evidence = await receipt(userId);
    expect(evidence.edgesRemoved).toHaveLength(1 + 20 + 30);
    // Heroku says bob signs in through SSO (a scan read it): CLI tokens expire within 8 hours.
    expect(evidence.leftToHuman).toEqual(
      expect.arrayContaining([expect.objectContaining({ edge: 'Heroku CLI and API tokens' })]),
    );
    expect(simulator.violations).toEqual([]);
  }, 90_000);
});
