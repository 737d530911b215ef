import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { parseAccountName } from '../src/accounts/account-name.js';
import { reportFindings } from '../src/drift/reports.js';
import { runDriftScan } from '../src/drift/scan.js';
import type { PlatformConnector } from '../src/platform/connector.js';
import { connectorFactory } from '../src/platform/factory.js';
import { RateBudget } from '../src/platform/heroku/budget.js';
import { HerokuClient } from '../src/platform/heroku/client.js';
import { reconcileUser } from '../src/reconcile/reconciler.js';
import { addRule } from '../src/reconcile/rules.js';
import { provisionLogin } from '../src/sso/jit.js';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase, uniquePrefix } from './support/database.js';
import { HerokuSimulator } from './support/heroku-simulator.js';
import { capturingLogger } from './support/log-capture.js';

/*
 * The failures REAL-API-NOTES.md (../shared/reference/heroku-platform-api) predicts for real customers,
 * one block per numbered failure of issue 18, each on a simulator that behaves as Heroku's own clients
 * and documentation say Heroku does.
 */

const secretKey = randomBytes(32).toString('hex');
const config = { secretKey, dataDir: '/nonexistent', databaseUrl: undefined };

describe('the Heroku connector on the real API’s behaviour', async () => {
  const database = await createTestDatabase();
  const redis = new Redis(inject('redisUrl'));
  const { log, output } = capturingLogger('info');
  const connectorFor = connectorFactory({ database, redis, config, log });
  const simulators: HerokuSimulator[] = [];
  afterAll(async () => {
    redis.disconnect();
    await Promise.all(simulators.map((s) => s.stop()));
  });

  /** A fresh simulated Enterprise Account `acme` and a tenant connected to it. */
  async function setup() {
    const simulator = new HerokuSimulator({ refillPerMinute: 60_000 });
    simulators.push(simulator);
    await simulator.start();
    const { tenant } = await createTenant(database.db, uniquePrefix('t'), 'test');
    await simulator.connect(database.db, tenant.id, secretKey, {
      budgetKey: uniquePrefix('heroku'),
      refillPerMinute: 60_000,
      reserve: 0,
    });
    const connector = () => connectorFor(tenant.id, 'reconcile');
    const scan = async () => {
      const result = await runDriftScan(
        { database, connector: await connectorFor(tenant.id, 'scan') },
        tenant.id,
        'test',
      );
      return reportFindings(database.db, result.reportId, {});
    };
    return { simulator, tenantId: tenant.id, connector, scan };
  }

  describe('1. lists are sorted by the field each endpoint accepts; one bad team does not void a scan', () => {
    it('reads team members and collaborators, which Heroku sorts by email only (416 for id)', async () => {
      const { simulator, connector, scan } = await setup();
      simulator.addEnterpriseMember('ada@example.com');
      simulator.addEnterpriseMember('bob@example.com');
      simulator.addTeam('core', [
        ['ada@example.com', 'admin'],
        ['bob@example.com', 'member'],
      ]);
      simulator.addApp('api', 'core', [['bob@example.com', ['deploy']]]);
      await scan();
      expect(simulator.requests.filter((r) => r.status === 416)).toEqual([]);
      expect(await (await connector()).readAccess('bob@example.com')).toEqual({
        enterprise: ['view'],
        teams: new Map([['core', 'member']]),
        apps: new Map([['api', ['view', 'deploy']]]),
      });
      expect(
        simulator.requests.find((r) => r.path.endsWith('/members') && r.path.startsWith('/teams/'))?.range,
      ).toBe('email ..; max=1000;');
      expect(simulator.violations).toEqual([]);
    });

    it('falls back to a field Accept-Ranges names when a list refuses the one asked for', async () => {
      const { simulator } = await setup();
      simulator.addTeam('core', [['ada@example.com', 'admin']]);
      const client = new HerokuClient({
        apiUrl: simulator.url,
        token: simulator.token,
        budget: new RateBudget(redis, uniquePrefix('fallback'), { refillPerMinute: 60_000, reserve: 0 }),
        priority: 'scan',
        log,
      });
      const members = await client.listAll<{ email: string }>(`/teams/core/members`);
      expect(members.map((m) => m.email).sort()).toEqual(['admin@example.com', 'ada@example.com'].sort());
      expect(simulator.requests.map((r) => `${r.status} ${r.range}`)).toEqual([
        '416 id ..; max=1000;',
        '200 email ..; max=1000;',
      ]);
    });

    it('a team the token may not read becomes an `unreadable` finding and the other teams are still read', async () => {
      const { simulator, connector, scan } = await setup();
      simulator.addEnterpriseMember('ada@example.com');
      simulator.addTeam('secret', [['ada@example.com', 'member']]);
      simulator.setTokenRole('secret', null);
      simulator.addTeam('core', [['ada@example.com', 'member']]);
      const findings = await scan();
      expect(findings.filter((f) => f.class === 'unreadable')).toEqual([
        expect.objectContaining({
          team: 'secret',
          severity: 'high',
          actual: expect.stringContaining('403'),
          action: expect.stringContaining('was not read'),
        }),
      ]);
      expect((await (await connector()).readAccess('ada@example.com')).teams).toEqual(
        new Map([['core', 'member']]),
      );
    });
  });

  describe('2. removals reach renamed teams, apps and Enterprise Accounts; a 404 is confirmed', () => {
    it('after a scan stored the ids, renames on Heroku do not stop a removal', async () => {
      const { simulator, connector, scan } = await setup();
      simulator.addEnterpriseMember('ada@example.com');
      simulator.addTeam('core', [
        ['boss@example.com', 'admin'],
        ['ada@example.com', 'member'],
      ]);
      simulator.addApp('api', 'core', [['ada@example.com', ['deploy']]]);
      await scan();
      simulator.renameTeam('core', 'core-platform');
      simulator.renameApp('api', 'api-v2');
      simulator.renameEnterprise('acme-corp');
      const heroku = await connector();
      expect(
        await heroku.applyAll([
          { kind: 'revoke-app-access', account: 'ada@example.com', app: 'api' },
          { kind: 'remove-team-member', account: 'ada@example.com', team: 'core' },
          { kind: 'revoke-enterprise', account: 'ada@example.com' },
        ]),
      ).toEqual([{ status: 'applied' }, { status: 'applied' }, { status: 'applied' }]);
      expect(simulator.grantsOf('ada@example.com')).toEqual([]);
    });

    it('with no id known yet, a 404 from a renamed team is blocked, and the edge is kept', async () => {
      const { simulator, connector } = await setup();
      simulator.addTeam('core', [['boss@example.com', 'admin']]);
      const heroku = await connector();
      expect(
        await heroku.apply({
          kind: 'add-team-member',
          account: 'ada@example.com',
          team: 'core',
          role: 'member',
        }),
      ).toEqual({ status: 'applied' });
      simulator.renameTeam('core', 'core-platform');
      expect(
        await heroku.apply({ kind: 'remove-team-member', account: 'ada@example.com', team: 'core' }),
      ).toEqual({
        status: 'blocked',
        cause: 'container-not-found',
        reason: expect.stringContaining('renamed or deleted'),
      });
      expect(simulator.grantsOf('ada@example.com')).toEqual(['team core-platform']);
      expect((await heroku.readAccess('ada@example.com')).teams).toEqual(new Map([['core', 'member']]));
    });

    it('a 404 for a member removed by hand is already done once the team is confirmed', async () => {
      const { simulator, connector } = await setup();
      simulator.addTeam('core', [['boss@example.com', 'admin']]);
      const heroku = await connector();
      await heroku.apply({
        kind: 'add-team-member',
        account: 'ada@example.com',
        team: 'core',
        role: 'member',
      });
      simulator.team('core')!.members.delete(simulator.user('ada@example.com')!.id);
      expect(
        await heroku.apply({ kind: 'remove-team-member', account: 'ada@example.com', team: 'core' }),
      ).toEqual({ status: 'already-done' });
      expect((await heroku.readAccess('ada@example.com')).teams.size).toBe(0);
    });
  });

  describe('3. the receipt states token lifetimes from what Heroku says about SSO', () => {
    it('an existing password user granted by idsync keeps long-lived keys; an SSO user’s tokens die in 8 hours', async () => {
      const { simulator, connector } = await setup();
      simulator.user('pat@example.com', false);
      simulator.user('sam@example.com', true);
      const heroku = await connector();
      for (const account of ['pat@example.com', 'sam@example.com']) {
        expect(await heroku.apply({ kind: 'grant-enterprise', account, permissions: ['view'] })).toEqual({
          status: 'applied',
        });
      }
      const at = new Date('2026-11-30T10:00:00Z');
      const pat = await heroku.residualRisk('pat@example.com', at);
      expect(pat[0]).toEqual(
        expect.objectContaining({ edge: 'Heroku API keys', why: expect.stringContaining('not under SSO') }),
      );
      expect(JSON.stringify(pat)).not.toContain('8 hours');
      expect(JSON.stringify(pat)).not.toContain('2026-11-30T18:00');
      const sam = await heroku.residualRisk('sam@example.com', at);
      expect(sam[0]).toEqual(
        expect.objectContaining({
          edge: 'Heroku CLI and API tokens',
          why: expect.stringContaining('2026-11-30T18:00:00.000Z'),
        }),
      );
      // Unknown until Heroku said: a mirror row nobody read from Heroku is not assumed to be SSO.
      await database.sql`UPDATE platform_enterprise_members SET federated = NULL WHERE account = 'sam@example.com'`;
      expect((await heroku.residualRisk('sam@example.com', at))[0]).toEqual(
        expect.objectContaining({ edge: 'Heroku API keys', why: expect.stringContaining('has not read') }),
      );
    });
  });

  describe('4. admins, the owner account and the implicit view are not drift', () => {
    it('no findings and no per-app deletes for access a team role implies; a `deploy` rule reads back as view,deploy', async () => {
      const { simulator, tenantId, connector, scan } = await setup();
      const boss = await seedUser(database, tenantId, 'boss@example.com', ['Admins']);
      const dev = await seedUser(database, tenantId, 'dev@example.com', ['Devs']);
      await addRule(
        database.db,
        tenantId,
        { target: 'team', idpGroup: 'Admins', team: 'core', role: 'admin' },
        't',
      );
      await addRule(
        database.db,
        tenantId,
        { target: 'team', idpGroup: 'Devs', team: 'core', role: 'member' },
        't',
      );
      await addRule(
        database.db,
        tenantId,
        { target: 'app', idpGroup: 'Devs', app: 'api', permissions: ['deploy'] },
        't',
      );
      simulator.addEnterpriseMember('boss@example.com');
      simulator.addEnterpriseMember('dev@example.com');
      simulator.addTeam('core', [
        ['boss@example.com', 'admin'],
        ['dev@example.com', 'member'],
      ]);
      simulator.addApp('api', 'core', [['dev@example.com', ['deploy']]]);
      expect(await scan()).toEqual([]);

      const deps = { database, connectorFor: () => connector() as Promise<PlatformConnector> };
      const before = simulator.requests.length;
      const devRun = await reconcileUser(deps, tenantId, dev, { event: 'test' });
      expect(devRun.applied.map((a) => a.operation.kind)).toEqual([]);

      await database.sql`UPDATE users SET active = false WHERE id = ${boss}`;
      const bossRun = await reconcileUser(deps, tenantId, boss, { event: 'test' });
      expect(
        bossRun.applied
          .filter((a) => a.operation.kind !== 'revoke-tokens')
          .map((a) => `${a.operation.kind} ${a.outcome.status}`),
      ).toEqual(['remove-team-member applied', 'revoke-enterprise applied']);
      const writes = simulator.requests.slice(before).filter((r) => r.method !== 'GET');
      expect(writes.map((r) => r.method)).toEqual(['DELETE', 'DELETE']);
      expect(writes.some((r) => r.path.includes('/collaborators'))).toBe(false);
    });
  });

  describe('5. failures are classified by Heroku’s error id', () => {
    it('two_factor, a team the token is not admin of and an unknown user are their own outcomes; no PATCH fallback', async () => {
      const { simulator, connector, tenantId } = await setup();
      simulator.addTeam('core', [['boss@example.com', 'admin']]);
      simulator.addTeam('ops', [['boss@example.com', 'admin']]);
      simulator.setTokenRole('ops', 'member');
      simulator.addApp('api', 'core');
      simulator.twoFactorApps.add('api');
      simulator.withoutAccount.add('new@example.com');
      const heroku = await connector();
      expect(
        await heroku.apply({
          kind: 'grant-app-access',
          account: 'ada@example.com',
          app: 'api',
          permissions: ['view'],
        }),
      ).toEqual({
        status: 'blocked',
        cause: 'two-factor',
        reason: expect.stringContaining('second authentication factor'),
      });
      expect(
        await heroku.apply({
          kind: 'add-team-member',
          account: 'ada@example.com',
          team: 'ops',
          role: 'member',
        }),
      ).toEqual({
        status: 'blocked',
        cause: 'forbidden',
        reason: expect.stringContaining('make it an admin of team ops'),
      });
      expect(
        await heroku.apply({ kind: 'grant-enterprise', account: 'new@example.com', permissions: ['view'] }),
      ).toEqual({
        status: 'blocked',
        cause: 'no-platform-account',
        reason: expect.stringContaining('no Heroku account yet'),
      });
      expect(simulator.requests.filter((r) => r.method === 'PATCH')).toEqual([]);
      const [row] = await database.sql`SELECT connector_status FROM tenants WHERE id = ${tenantId}`;
      expect(row!.connector_status).toBe('ok');
    });

    it.each([
      ['suspended', 403],
      ['delinquent', 402],
      ['forbidden', 403],
    ] as const)('a %s account stops the tenant with an alert', async (state, status) => {
      const { simulator, connector, tenantId } = await setup();
      simulator.addTeam('core', [['boss@example.com', 'admin']]);
      const heroku = await connector();
      simulator.accountState = state;
      await expect(
        heroku.apply({ kind: 'remove-team-member', account: 'ada@example.com', team: 'core' }),
      ).rejects.toThrow(new RegExp(`${status}`));
      const [row] =
        await database.sql`SELECT connector_status, connector_status_reason FROM tenants WHERE id = ${tenantId}`;
      expect(row).toEqual({
        connector_status: 'stopped',
        connector_status_reason: expect.stringContaining(`${status}`),
      });
      expect(output()).toContain('ALERT');
      expect(output()).not.toContain(simulator.token);
    });
  });

  describe('6. smaller: read-after-delete lag, RateLimit-Multiplier, platform check, pending users', () => {
    it('a scan right after a removal does not read the just-deleted edge back', async () => {
      const { simulator, connector, scan, tenantId } = await setup();
      await seedUser(database, tenantId, 'ada@example.com', []);
      simulator.addEnterpriseMember('ada@example.com');
      simulator.addTeam('core', [
        ['boss@example.com', 'admin'],
        ['ada@example.com', 'member'],
      ]);
      await scan();
      simulator.deleteLagMs = 30_000;
      expect(
        await (await connector()).apply({
          kind: 'remove-team-member',
          account: 'ada@example.com',
          team: 'core',
        }),
      ).toEqual({ status: 'applied' });
      // Heroku still lists her for a while; idsync knows it removed her.
      expect(simulator.requests.at(-1)!.method).toBe('DELETE');
      const findings = await scan();
      expect(findings.filter((f) => f.account === 'ada@example.com' && f.team === 'core')).toEqual([]);
      expect((await (await connector()).readAccess('ada@example.com')).teams.size).toBe(0);
    });

    it('RateLimit-Multiplier scales how fast the shared budget refills', async () => {
      const { simulator } = await setup();
      simulator.rateLimitMultiplier = 3;
      const budget = new RateBudget(redis, uniquePrefix('multiplier'), { refillPerMinute: 75, reserve: 0 });
      const client = new HerokuClient({
        apiUrl: simulator.url,
        token: simulator.token,
        budget,
        priority: 'scan',
        log,
      });
      await client.request('GET', '/account');
      expect((await budget.state()).refillPerMinute).toBe(225);
    });

    it('platform check proves write authority on every team, warns about SSO tokens, and lists what to verify', async () => {
      const simulator = new HerokuSimulator();
      simulators.push(simulator);
      await simulator.start();
      simulator.addTeam('core');
      simulator.addTeam('web');
      simulator.setTokenRole('web', 'member');
      simulator.account.sso = true;
      const cliDatabase = await createTestDatabase();
      await createTenant(cliDatabase.db, 'acme', 'test');
      const env = {
        DATABASE_URL: cliDatabase.url,
        REDIS_URL: inject('redisUrl'),
        IDSYNC_QUEUE_PREFIX: uniquePrefix('check'),
        HEROKU_CHECK_TOKEN: simulator.token,
      };
      const set = await runCli(
        [
          'platform',
          'set',
          'heroku',
          '--tenant',
          'acme',
          '--enterprise-account',
          'acme',
          '--api-url',
          simulator.url,
          '--token-env',
          'HEROKU_CHECK_TOKEN',
        ],
        env,
      );
      expect(set.code).toBe(0);
      const check = await runCli(['platform', 'check', '--tenant', 'acme'], env);
      expect(check.code).toBe(0);
      expect(check.stdout).toContain('WARNING: not an admin of team web (role: member)');
      expect(check.stdout).not.toContain('not an admin of team core');
      expect(check.stdout).toMatch(
        /WARNING: admin@example\.com signs in through SSO: its tokens expire 8 hours/,
      );
      expect(check.stdout).toContain('check these once against the real Enterprise Account');
      expect(check.stdout).toMatch(/ 9\. GET \/enterprise-accounts\/\{ea\}\/events/);
      const [row] =
        await cliDatabase.sql`SELECT connector_settings->>'enterpriseAccountId' AS id FROM tenants WHERE name = 'acme'`;
      expect(row!.id).toBe(simulator.enterprise.id);
    }, 60_000);

    it('a user with no Heroku account yet is retried after their first SSO login', async () => {
      const { simulator, connector, tenantId } = await setup();
      simulator.withoutAccount.add('new@example.com');
      const userId = await seedUser(database, tenantId, 'new@example.com', []);
      expect(
        await (await connector()).apply({
          kind: 'grant-enterprise',
          account: 'new@example.com',
          permissions: ['view'],
        }),
      ).toEqual(expect.objectContaining({ cause: 'no-platform-account' }));
      await database.sql`DELETE FROM outbox WHERE tenant_id = ${tenantId}`;
      // Signing in through the IdP creates the Heroku account (SSO JIT) and the idsync session alike.
      simulator.ssoLogin('new@example.com');
      const login = await provisionLogin(
        database.db,
        tenantId,
        'create-and-update',
        {
          nameId: parseAccountName('new@example.com'),
          email: undefined,
          givenName: undefined,
          familyName: undefined,
          displayName: undefined,
          groups: undefined,
          overage: false,
        },
        'test',
      );
      expect(login.accessMayHaveChanged).toBe(false);
      const queued = await database.sql`SELECT subject_id FROM outbox WHERE tenant_id = ${tenantId}`;
      expect(queued.map((r) => r.subject_id)).toEqual([userId]);
      expect(
        await (await connector()).apply({
          kind: 'grant-enterprise',
          account: 'new@example.com',
          permissions: ['view'],
        }),
      ).toEqual({ status: 'applied' });
    });
  });
});

describe('the simulator serves what Heroku serves', async () => {
  const simulator = new HerokuSimulator();
  await simulator.start();
  afterAll(() => simulator.stop());
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const response = await fetch(`${simulator.url}${path}`, {
      headers: {
        Accept: 'application/vnd.heroku+json; version=3',
        Authorization: `Bearer ${simulator.token}`,
        ...headers,
      },
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as any };
  };

  it('releases: newest first with the comma order syntax; the semicolon form is 400, an unaccepted field 416', async () => {
    simulator.addTeam('core');
    simulator.addApp('api', 'core');
    for (let i = 1; i <= 3; i++) simulator.addRelease('api', `dev${i}@example.com`, `Deploy ${i}`);
    const page = await get('/apps/api/releases', { Range: 'version ..; max=2, order=desc' });
    expect(page.status).toBe(206);
    expect(
      page.body.map((r: { version: number; user: { email: string } }) => `${r.version} ${r.user.email}`),
    ).toEqual(['3 dev3@example.com', '2 dev2@example.com']);
    expect(page.headers.get('next-range')).toBe('version ]2..; max=2, order=desc;');
    expect(page.headers.get('accept-ranges')).toBe('id, version');
    const rest = await get('/apps/api/releases', { Range: page.headers.get('next-range')! });
    expect(rest.body.map((r: { version: number }) => r.version)).toEqual([1]);
    const semicolon = await get('/apps/api/releases', { Range: 'version ..; max=2; order=desc' });
    expect(semicolon).toMatchObject({ status: 400, body: { id: 'bad_request' } });
    const unaccepted = await get('/apps/api/releases', { Range: 'name ..; max=2' });
    expect(unaccepted).toMatchObject({ status: 416, body: { id: 'requested_range_not_satisfiable' } });
  });

  it('audit trail: one day of events, filtered by actor, action and type, in either order', async () => {
    // The releases test sent malformed ranges on purpose; this one must send none.
    simulator.violations.length = 0;
    simulator.addTeam('audited');
    const yesterday = new Date(Date.now() - 86_400_000);
    simulator.addEvent({
      type: 'team_membership',
      action: 'create',
      actor: { id: 'x', email: 'eve@example.com' },
      createdAt: yesterday,
    });
    const put = await fetch(`${simulator.url}/teams/audited/members`, {
      method: 'PUT',
      headers: {
        Accept: 'application/vnd.heroku+json; version=3',
        Authorization: `Bearer ${simulator.token}`,
        'Content-Type': 'application/json',
      },
      body: JSON.stringify({ email: 'bob@example.com', role: 'member' }),
    });
    expect(put.status).toBe(201);
    const today = await get('/enterprise-accounts/acme/events?type=team_membership', {
      Accept: 'application/vnd.heroku+json; version=3.audit-trail',
    });
    expect(
      today.body.map((e: { action: string; actor: { email: string } }) => `${e.action} ${e.actor.email}`),
    ).toEqual(['create admin@example.com']);
    const before = await get(
      `/enterprise-accounts/${simulator.enterprise.id}/events?day=${yesterday.toISOString().slice(0, 10)}&actor=eve@example.com&order=desc`,
    );
    expect(before.body).toHaveLength(1);
    expect(before.body[0]).toMatchObject({
      type: 'team_membership',
      action: 'create',
      actor: { email: 'eve@example.com' },
    });
    expect(simulator.violations).toEqual([]);
  });

  it('collaborator lists hold the team admins and the herokumanager owner; view is always granted', async () => {
    simulator.addTeam('web', [['boss@example.com', 'admin']]);
    simulator.addApp('site', 'web', [['dev@example.com', ['deploy']]]);
    const list = await get('/teams/apps/site/collaborators', { Range: 'email ..; max=1000' });
    const rows = list.body.map(
      (c: { user: { email: string }; role: string; permissions: { name: string }[] }) =>
        `${c.user.email} ${c.role} ${c.permissions.map((p) => p.name).join(',')}`,
    );
    expect(rows).toEqual([
      'admin@example.com admin view,deploy,operate,manage',
      'boss@example.com admin view,deploy,operate,manage',
      'dev@example.com collaborator view,deploy',
      'web@herokumanager.com owner view,deploy,operate,manage',
    ]);
    expect((await get('/teams/apps/site/collaborators', { Range: 'id ..; max=1000' })).status).toBe(416);
  });

  it('the schema check flags a Range sorted by a field the link does not declare', async () => {
    const { checkRequest } = await import('./support/heroku-schema.js');
    expect(checkRequest('GET', '/teams/core/members', undefined, 'email ..; max=1000;').problems).toEqual([]);
    expect(checkRequest('GET', '/teams/core/members', undefined, 'id ..; max=1000;').problems).toEqual([
      'team-member List: Range sorts by id, the link accepts email',
    ]);
    expect(checkRequest('GET', '/apps', undefined, 'id ..; max=10; order=desc').problems).toEqual([
      'app List: malformed Range "id ..; max=10; order=desc"',
    ]);
  });
});

async function seedUser(database: TestDatabase, tenantId: string, userName: string, groups: string[]) {
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenantId}, ${userName}, 'scim', true)
    RETURNING id::text`;
  for (const group of groups) {
    await database.sql`
      WITH g AS (
        INSERT INTO groups (tenant_id, display_name) VALUES (${tenantId}, ${group})
        ON CONFLICT (tenant_id, lower(display_name)) DO UPDATE SET display_name = EXCLUDED.display_name RETURNING id)
      INSERT INTO group_members (tenant_id, group_id, user_id) SELECT ${tenantId}, g.id, ${user!.id} FROM g`;
  }
  return user!.id as string;
}
