import { describe, expect, it } from 'vitest';
import { startReconcileTest } from './support/reconcile-setup.js';
import { GROUP, patch, USER } from './support/scim-fixtures.js';

describe('the deprovisioning cascade, end to end on the built-in platform', async () => {
  const { database, tenant, daemon, scim, admin, platformOf } = await startReconcileTest({
    config: { workerConcurrency: 4 },
  });
  const base = `http://127.0.0.1:${daemon.port}`;

  for (const rule of [
    { target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' },
    { target: 'team', idpGroup: 'Engineering', team: 'web', role: 'viewer' },
    { target: 'team', idpGroup: 'Ops Leads', team: 'ops', role: 'admin' },
    { target: 'app', idpGroup: 'Engineering', app: 'api', permissions: ['deploy', 'view'] },
    { target: 'enterprise', idpGroup: 'Engineering', permissions: ['view', 'create'] },
  ]) {
    const added = await admin('POST', '/tenants/acme/rules', rule);
    expect(added.status, JSON.stringify(added.body)).toBe(201);
  }

  it('refuses the admin API without the admin token, and malformed rules with a precise message', async () => {
    const response = await fetch(`${base}/api/tenants/acme/rules`);
    expect(response.status).toBe(401);
    const bad = await admin('POST', '/tenants/acme/rules', {
      target: 'team',
      idpGroup: 'X',
      team: 'core',
      role: 'owner',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain('role must be one of admin, member, viewer');
    expect((await admin('GET', '/tenants/acme/rules')).body.rules).toHaveLength(5);
  });

  it('grants what the rules say when the IdP pushes a user and a group', async () => {
    const user = await scim('POST', '/Users', { schemas: [USER], userName: 'Ada@Example.com', active: true });
    expect(user.status).toBe(201);
    expect(
      (
        await scim('POST', '/Groups', {
          schemas: [GROUP],
          displayName: 'Engineering',
          members: [{ value: user.body.id }],
        })
      ).status,
    ).toBe(201);
    await expect
      .poll(() => platformOf('ada@example.com'), { timeout: 10_000 })
      .toEqual({
        enterprise: '{view,create}',
        teams: { core: 'member', web: 'viewer' },
        apps: { api: '{view,deploy}' },
      });
  });

  it('deactivation removes every edge, revokes every token, and leaves a complete receipt', async () => {
    const user = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'leaver@example.com',
      active: true,
    });
    const group = await scim('GET', `/Groups?filter=${encodeURIComponent('displayName eq "Engineering"')}`);
    const groupId = group.body.Resources[0].id;
    await scim(
      'PATCH',
      `/Groups/${groupId}`,
      patch([{ op: 'add', path: 'members', value: [{ value: user.body.id }] }]),
    );
    await expect
      .poll(async () => (await platformOf('leaver@example.com')).teams, { timeout: 10_000 })
      .toEqual({
        core: 'member',
        web: 'viewer',
      });
    await database.sql`
      INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash)
      SELECT ${tenant.id}, ${user.body.id}, 'api', 'tok' || n || ${user.body.id}, 'hash' FROM generate_series(1, 3) n`;

    const deactivatedAt = Date.now();
    expect(
      (await scim('PATCH', `/Users/${user.body.id}`, patch([{ op: 'replace', value: { active: false } }])))
        .status,
    ).toBe(200);

    await expect
      .poll(() => platformOf('leaver@example.com'), { timeout: 10_000 })
      .toEqual({ enterprise: null, teams: {}, apps: {} });
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT count(*)::int AS n FROM tokens WHERE user_id = ${user.body.id} AND revoked_at IS NULL`
          )[0]!.n,
        { timeout: 10_000 },
      )
      .toBe(0);
    // The offboarding is done when its receipt is complete.
    const receiptOf = () =>
      admin('GET', `/tenants/acme/users/${encodeURIComponent('LEAVER@example.com')}/receipt`);
    await expect.poll(async () => (await receiptOf()).body.status, { timeout: 10_000 }).toBe('complete');
    const receipt = await receiptOf();
    expect(receipt.status).toBe(200);
    expect(receipt.body).toMatchObject({
      user: { id: user.body.id, account: 'leaver@example.com' },
      idpEvent: { event: 'user.deactivated' },
      tokensRevoked: 3,
      leftToHuman: [],
      status: 'complete',
    });
    expect(receipt.body.edgesRemoved.map((e: { operation: string }) => e.operation).sort()).toEqual([
      'remove-team-member',
      'remove-team-member',
      'revoke-app-access',
      'revoke-enterprise',
    ]);
    expect(Date.parse(receipt.body.idpEvent.at)).toBeGreaterThanOrEqual(deactivatedAt - 1000);
    expect(receipt.body.timeToEffectMs).toBeGreaterThanOrEqual(0);
    const audit = await database.sql`
      SELECT action, duration_ms FROM audit_log WHERE subject_id = ${user.body.id} AND action LIKE 'platform.%' ORDER BY id`;
    expect(audit.map((a) => a.action)).toContain('platform.revoke-tokens');
    const [teamRemoval] = await database.sql`
      SELECT actor, before, after, cause, duration_ms FROM audit_log
      WHERE subject_id = ${user.body.id} AND action = 'platform.remove-team-member' AND before->>'team' = 'core'`;
    expect(teamRemoval).toMatchObject({
      actor: 'reconciler:builtin',
      before: { team: 'core', role: 'member' },
      after: { operation: { kind: 'remove-team-member', team: 'core' }, outcome: 'applied' },
      cause: { event: 'user.deactivated', source: 'scim' },
    });
    expect(typeof teamRemoval!.duration_ms).toBe('number');
  });

  it('leaves a team’s last admin in place without a fallback admin, and says so on the receipt', async () => {
    const user = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'lead@example.com',
      active: true,
    });
    await scim('POST', '/Groups', {
      schemas: [GROUP],
      displayName: 'Ops Leads',
      members: [{ value: user.body.id }],
    });
    await expect
      .poll(async () => (await platformOf('lead@example.com')).teams, { timeout: 10_000 })
      .toEqual({ ops: 'admin' });
    await scim('DELETE', `/Users/${user.body.id}`);
    await expect
      .poll(async () => (await admin('GET', `/tenants/acme/users/${user.body.id}/receipt`)).status, {
        timeout: 10_000,
      })
      .toBe(200);
    const receipt = (await admin('GET', `/tenants/acme/users/${user.body.id}/receipt`)).body;
    expect(receipt).toMatchObject({ idpEvent: { event: 'user.deleted' }, status: 'incomplete' });
    expect(receipt.leftToHuman).toEqual([
      expect.objectContaining({ edge: 'team ops', why: expect.stringContaining('last admin') }),
    ]);
    expect((await platformOf('lead@example.com')).teams).toEqual({ ops: 'admin' });
  });

  it('promotes the fallback admin first when one is configured', async () => {
    const fallback = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'it@example.com',
      active: true,
    });
    await database.sql`UPDATE tenants SET fallback_admin_user_id = ${fallback.body.id} WHERE id = ${tenant.id}`;
    const user = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'lead2@example.com',
      active: true,
    });
    const group = await scim('GET', `/Groups?filter=${encodeURIComponent('displayName eq "Ops Leads"')}`);
    const groupId = group.body.Resources[0].id;
    await scim(
      'PATCH',
      `/Groups/${groupId}`,
      patch([{ op: 'add', path: 'members', value: [{ value: user.body.id }] }]),
    );
    await expect
      .poll(async () => (await platformOf('lead2@example.com')).teams, { timeout: 10_000 })
      .toEqual({ ops: 'admin' });
    // Both leads leave; the fallback admin must end up holding the team.
    await database.sql`DELETE FROM platform_team_members WHERE account = 'lead@example.com'`;
    await scim('PATCH', `/Users/${user.body.id}`, patch([{ op: 'replace', value: { active: false } }]));
    await expect
      .poll(async () => (await platformOf('lead2@example.com')).teams, { timeout: 10_000 })
      .toEqual({});
    expect((await platformOf('it@example.com')).teams).toEqual({ ops: 'admin' });
    // The receipt is confirmed just after the platform acted (the poll above can see the edges gone first).
    await expect
      .poll(async () => (await admin('GET', `/tenants/acme/users/${user.body.id}/receipt`)).body.status, {
        timeout: 10_000,
      })
      .toBe('complete');
    const receipt = (await admin('GET', `/tenants/acme/users/${user.body.id}/receipt`)).body;
    expect(receipt.edgesRemoved.map((e: { operation: string }) => e.operation)).toContain(
      'promote-fallback-admin',
    );
  });

  it('gives a re-activated user back what the rules grant', async () => {
    const ada = (await scim('GET', `/Users?filter=${encodeURIComponent('userName eq "ada@example.com"')}`))
      .body.Resources[0];
    await scim('PATCH', `/Users/${ada.id}`, patch([{ op: 'replace', path: 'active', value: false }]));
    await expect
      .poll(() => platformOf('ada@example.com'), { timeout: 10_000 })
      .toEqual({ enterprise: null, teams: {}, apps: {} });
    await scim('PATCH', `/Users/${ada.id}`, patch([{ op: 'replace', path: 'active', value: true }]));
    await expect
      .poll(() => platformOf('ada@example.com'), { timeout: 10_000 })
      .toEqual({
        enterprise: '{view,create}',
        teams: { core: 'member', web: 'viewer' },
        apps: { api: '{view,deploy}' },
      });
  });

  it('offboards a user removed from the last group that granted access, tokens included', async () => {
    const user = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'mover@example.com',
      active: true,
    });
    const group = await scim('GET', `/Groups?filter=${encodeURIComponent('displayName eq "Engineering"')}`);
    const groupId = group.body.Resources[0].id;
    await scim(
      'PATCH',
      `/Groups/${groupId}`,
      patch([{ op: 'add', path: 'members', value: [{ value: user.body.id }] }]),
    );
    await expect
      .poll(async () => (await platformOf('mover@example.com')).enterprise, { timeout: 10_000 })
      .toBe('{view,create}');
    await database.sql`INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash) VALUES (${tenant.id}, ${user.body.id}, 'session', ${`s-${user.body.id}`}, 'h')`;
    await scim(
      'PATCH',
      `/Groups/${groupId}`,
      patch([{ op: 'remove', path: `members[value eq "${user.body.id}"]` }]),
    );
    await expect
      .poll(() => platformOf('mover@example.com'), { timeout: 10_000 })
      .toEqual({ enterprise: null, teams: {}, apps: {} });
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT count(*)::int AS n FROM tokens WHERE user_id = ${user.body.id} AND revoked_at IS NULL`
          )[0]!.n,
        { timeout: 10_000 },
      )
      .toBe(0);
    // Planned once, in the reconcile lane that found it, and applied there: one receipt for the removal.
    await expect
      .poll(
        async () =>
          await database.sql`SELECT idp_event, completed_at IS NOT NULL AS complete FROM receipts WHERE user_id = ${user.body.id}`,
        { timeout: 10_000 },
      )
      .toEqual([{ idp_event: 'group.member_removed', complete: true }]);
    const lanes = await database.sql`SELECT lane FROM outbox WHERE subject_id = ${user.body.id} ORDER BY id`;
    expect(lanes.map((l) => l.lane)).not.toContain('deprovision');
  });
});
