import { describe, expect, it } from 'vitest';
import { desiredAccess, RuleBook } from '../src/reconcile/desired.js';
import { readRuleInput } from '../src/reconcile/rules.js';
import { runCli } from './support/cli.js';
import { startReconcileTest } from './support/reconcile-setup.js';
import { patch, USER } from './support/scim-fixtures.js';

/** What Entra sends when an admin maps `roles` (SingleAppRoleAssignment / AppRoleAssignmentsComplex). */
const entraRole = (value: string) => ({ primary: true, type: 'WindowsAzureActiveDirectoryRole', value });

describe('Entra app roles in assignment rules (pure)', () => {
  it('Entra: a rule on an app role grants like a group rule; app roles match case-insensitively', () => {
    const book = new RuleBook([
      { id: 'r1', idpAppRole: 'ADMIN', target: 'team', team: 'core', role: 'admin' },
      { id: 'r2', idpGroup: 'Engineering', target: 'team', team: 'core', role: 'member' },
      { id: 'r3', idpGroup: 'admin', target: 'app', app: 'api', permissions: ['view'] },
    ]);
    const user = { active: true, deprovisioned: false, groups: ['Engineering'], appRoles: ['admin'] };
    const access = desiredAccess(user, book);
    expect(access.teams).toEqual(new Map([['core', 'admin']]));
    // A group named like the role does not match the role, nor the other way round.
    expect(access.apps.size).toBe(0);
    expect(desiredAccess({ ...user, appRoles: [] }, book).teams).toEqual(new Map([['core', 'member']]));
    expect(desiredAccess({ ...user, active: false }, book).teams.size).toBe(0);
  });

  it('a rule names exactly one of a group or an app role', () => {
    expect(readRuleInput({ idpAppRole: ' ADMIN ', target: 'team', team: 'core', role: 'admin' })).toEqual({
      idpAppRole: 'ADMIN',
      target: 'team',
      team: 'core',
      role: 'admin',
    });
    expect(() =>
      readRuleInput({ idpGroup: 'G', idpAppRole: 'R', target: 'team', team: 'core', role: 'admin' }),
    ).toThrow(/exactly one of idpGroup .* or idpAppRole/);
    expect(() => readRuleInput({ target: 'team', team: 'core', role: 'admin' })).toThrow(/exactly one/);
  });
});

// Two CLI processes (tsx) per test: slow on a loaded machine.
describe('Entra app roles, end to end on the built-in platform', { timeout: 90_000 }, async () => {
  const { database, scim, admin, platformOf } = await startReconcileTest({
    tenant: 'contoso',
    config: { workerConcurrency: 2 },
  });

  it('adds an app-role rule from the CLI and lists it as such', async () => {
    const added = await runCli(
      ['rules', 'add', '--tenant', 'contoso', '--app-role', 'ADMIN', '--team', 'core', '--role', 'member'],
      { DATABASE_URL: database.url },
    );
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^[0-9a-f-]{36}\tapp role "ADMIN" → team core as member\n$/);
    const both = await runCli(
      ['rules', 'add', '--tenant', 'contoso', '--app-role', 'X', '--group', 'Y', '--team', 'core'],
      { DATABASE_URL: database.url },
    );
    expect(both.code).toBe(64);
    expect(both.stderr).toContain('exactly one of --group or --app-role');
    const listed = await admin('GET', '/tenants/contoso/rules');
    expect(listed.body.rules).toEqual([
      expect.objectContaining({ idpAppRole: 'ADMIN', target: 'team', team: 'core', role: 'member' }),
    ]);
  });

  it('grants a user Entra provisions with the app role, and removes the access when the role goes', async () => {
    const created = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'megan@contoso.com',
      active: true,
      roles: [entraRole('ADMIN')],
    });
    expect(created.status).toBe(201);
    await expect
      .poll(() => platformOf('megan@contoso.com'), { timeout: 15_000 })
      .toEqual({ enterprise: '{view}', teams: { core: 'member' }, apps: {} });

    const removed = await scim(
      'PATCH',
      `/Users/${created.body.id}`,
      patch([{ op: 'Remove', path: 'roles[value eq "ADMIN"]' }]),
    );
    expect(removed.status).toBe(200);
    expect(removed.body.roles ?? []).toEqual([]);
    await expect
      .poll(() => platformOf('megan@contoso.com'), { timeout: 15_000 })
      .toEqual({ enterprise: null, teams: {}, apps: {} });
  });

  it('a rule added after the role was assigned reaches the users who hold it; deactivation cascades', async () => {
    const created = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'adele@contoso.com',
      active: true,
    });
    const added = await scim(
      'PATCH',
      `/Users/${created.body.id}`,
      patch([{ op: 'Add', path: 'roles', value: [entraRole('Deployer')] }]),
    );
    expect(added.status).toBe(200);
    const rule = await admin('POST', '/tenants/contoso/rules', {
      idpAppRole: 'deployer',
      target: 'app',
      app: 'api',
      permissions: ['deploy', 'view'],
    });
    expect(rule.status, JSON.stringify(rule.body)).toBe(201);
    await expect
      .poll(() => platformOf('adele@contoso.com'), { timeout: 15_000 })
      .toEqual({ enterprise: '{view}', teams: {}, apps: { api: '{view,deploy}' } });

    await scim(
      'PATCH',
      `/Users/${created.body.id}`,
      patch([{ op: 'Replace', path: 'active', value: 'False' }]),
    );
    await expect
      .poll(() => platformOf('adele@contoso.com'), { timeout: 15_000 })
      .toEqual({ enterprise: null, teams: {}, apps: {} });
    await expect
      .poll(async () => (await admin('GET', `/tenants/contoso/users/${created.body.id}/receipt`)).body, {
        timeout: 15_000,
      })
      .toMatchObject({ idpEvent: { event: 'user.deactivated' }, status: 'complete' });
  });
});
