import { describe, expect, it } from 'vitest';
import { createAdminToken } from '../src/security/admin-tokens.js';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { startHerokuTest } from './support/heroku-setup.js';
import { callWithToken } from './support/http-clients.js';
import { USER } from './support/scim-fixtures.js';

/*
 * What the audit-trail poll finds between scans reaches the admin API and the CLI, not only the
 * console: access granted by hand on the simulated Heroku is listed (newest first, paged) for an
 * auditor of the tenant and for nobody else, until the next scan's report holds it.
 */
describe('findings since the last scan, in the admin API and the CLI', async () => {
  const heroku = await startHerokuTest({
    platform: (simulator) => {
      for (const team of ['core', 'side', 'ops', 'web'])
        simulator.addTeam(team, [['boss@example.com', 'admin']]);
    },
    rules: [{ target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' }],
    policy: { auditPollSeconds: 1 },
  });
  const { simulator, database, tenant, scim, scan } = heroku;
  const auditor = await createAdminToken(database.db, {
    name: 'acme-auditor',
    tenantId: tenant.id,
    role: 'auditor',
    actor: 'test',
  });
  const rival = await createTenant(database.db, 'rival', 'test');
  const rivalOwner = await createAdminToken(database.db, {
    name: 'rival-owner',
    tenantId: rival.tenant.id,
    role: 'owner',
    actor: 'test',
  });
  const sinceLastScan = (tenantName: string, token: string, query = '') =>
    callWithToken(
      `http://127.0.0.1:${heroku.daemon.port}/api/tenants/${tenantName}/drift/since-last-scan${query}`,
      token,
      'application/json',
      'GET',
    );
  // eve is known to the IdP but in no group: any access granted to her by hand is excess access.
  expect(
    (await scim('POST', '/Users', { schemas: [USER], userName: 'eve@example.com', active: true })).status,
  ).toBe(201);
  const grantByHand = async (team: string, count: number) => {
    simulator.dashboard.addTeamMember(team, 'eve@example.com', 'member', 'boss@example.com');
    await expect
      .poll(async () => (await sinceLastScan('acme', heroku.adminToken)).body.findings.length, {
        timeout: 30_000,
        interval: 200,
      })
      .toBe(count);
  };

  it("an auditor of the tenant reads them; another tenant's token and no token do not", async () => {
    await grantByHand('side', 1);
    const answer = await sinceLastScan('acme', auditor.token);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      since: null,
      findings: [
        expect.objectContaining({
          account: 'eve@example.com',
          class: 'excess-access',
          edge: 'team side',
          actor: 'boss@example.com',
          outcome: 'reported',
          foundAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        }),
      ],
      next: null,
    });

    // A token of another tenant gets the answer a tenant that does not exist gets, even as its owner.
    const foreign = await sinceLastScan('acme', rivalOwner.token);
    expect(foreign.status).toBe(404);
    expect(foreign.body.error).toMatchObject({ code: 'not_found', message: 'no tenant named "acme"' });
    // Its own tenant has found nothing: acme's findings are not in it.
    expect((await sinceLastScan('rival', rivalOwner.token)).body).toEqual({
      since: null,
      findings: [],
      next: null,
    });
    expect((await sinceLastScan('acme', 'not-a-token')).status).toBe(401);
  });

  it('pages newest first, bounded by limit, continuing from next; bad paging is a precise 400', async () => {
    await grantByHand('ops', 2);
    await grantByHand('web', 3);
    const first = await sinceLastScan('acme', auditor.token, '?limit=2');
    expect(first.body.findings.map((f: any) => f.edge)).toEqual(['team web', 'team ops']);
    expect(first.body.next).toEqual(expect.any(String));
    const second = await sinceLastScan('acme', auditor.token, `?limit=2&before=${first.body.next}`);
    expect(second.body.findings.map((f: any) => f.edge)).toEqual(['team side']);
    expect(second.body.next).toBeNull();

    const tooMany = await sinceLastScan('acme', auditor.token, '?limit=501');
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error).toMatchObject({
      code: 'invalid',
      message: 'limit must be a whole number from 1 to 500',
    });
    const badCursor = await sinceLastScan('acme', auditor.token, '?before=yesterday');
    expect(badCursor.status).toBe(400);
    expect(badCursor.body.error.message).toBe('before must be the "next" value of a previous page');
  });

  it('idsync drift since-last-scan prints them as text and JSON, and exits 64 on a bad limit, 65 on an unknown tenant', async () => {
    const env = { DATABASE_URL: database.url };
    const text = await runCli(['drift', 'since-last-scan', '--tenant', 'acme', '--limit', '2'], env);
    expect(text.code).toBe(0);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('2 findings from the platform audit trail since the first poll (no scan yet)');
    expect(lines[1]).toMatch(
      /^\S+Z\t\w+\texcess-access\teve@example\.com\tteam web\tgranted-by=boss@example\.com\treported: needs a person$/,
    );
    expect(lines[2]).toContain('\tteam ops\t');
    expect(lines[3]).toMatch(/^more: --before \d+$/);
    const rest = await runCli(
      [
        'drift',
        'since-last-scan',
        '--tenant',
        'acme',
        '--format',
        'json',
        '--before',
        lines[3]!.split(' ').at(-1)!,
      ],
      env,
    );
    expect(rest.code).toBe(0);
    expect(JSON.parse(rest.stdout)).toEqual({
      since: null,
      findings: [expect.objectContaining({ account: 'eve@example.com', edge: 'team side' })],
      next: null,
    });

    const badLimit = await runCli(['drift', 'since-last-scan', '--tenant', 'acme', '--limit', '0'], env);
    expect(badLimit.code).toBe(64);
    expect(badLimit.stderr).toContain('limit must be a whole number from 1 to 500');
    const unknown = await runCli(['drift', 'since-last-scan', '--tenant', 'nobody'], env);
    expect(unknown.code).toBe(65);
    expect(unknown.stderr).toContain('no tenant named "nobody"');
  });

  it('once a scan has run, what it read is in its report and no longer listed; a later grant is', async () => {
    const report = await scan();
    const after = await sinceLastScan('acme', auditor.token);
    expect(after.body.since).toBe(
      new Date((await heroku.admin('GET', '/tenants/acme/drift')).body.summary.startedAt).toISOString(),
    );
    expect(after.body.findings).toEqual([]);
    expect(report.summary.byClass['excess-access']).toBeGreaterThanOrEqual(1);

    simulator.dashboard.addTeamMember('core', 'eve@example.com', 'viewer', 'boss@example.com');
    await expect
      .poll(async () => (await sinceLastScan('acme', auditor.token)).body.findings.map((f: any) => f.edge), {
        timeout: 30_000,
        interval: 200,
      })
      .toEqual(['team core']);
    expect(simulator.violations).toEqual([]);
  });
});
