import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { addRule, readRuleInput } from '../src/reconcile/rules.js';
import { createAdminToken } from '../src/security/admin-tokens.js';
import { startSession } from '../src/sso/sessions.js';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

/*
 * Least privilege, as an attacker and an auditor would probe it: introspection clients see one tenant,
 * admin tokens do what their role allows in their tenant only, personal tokens never outgrow their
 * owner's access, and session cookies are not bearer tokens.
 */

const ADMIN = randomBytes(24).toString('hex');
const PUBLIC_URL = 'http://127.0.0.1';

describe('least-privilege credentials', async () => {
  const database = await createTestDatabase();
  const { log, output } = capturingLogger('debug');
  const daemon = await startTestDaemon({
    mode: 'serve',
    config: { ...testConfig(database.url, { adminToken: ADMIN }), publicUrl: PUBLIC_URL },
    log,
  });
  afterAll(() => daemon.stop());
  const base = `http://127.0.0.1:${daemon.port}`;
  const { tenant: acme } = await createTenant(database.db, 'acme', 'test');
  const { tenant: tenb } = await createTenant(database.db, 'tenb', 'test');

  /** A user in the Engineering group, which may view and deploy the api app. */
  const userIn = async (tenantId: string, userName: string) => {
    const [user] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenantId}, ${userName}, 'scim') RETURNING id::text`;
    const [group] = await database.sql`
      INSERT INTO groups (tenant_id, display_name) VALUES (${tenantId}, 'Engineering')
      ON CONFLICT DO NOTHING RETURNING id`;
    const groupId =
      group?.id ??
      (
        await database.sql`SELECT id FROM groups WHERE tenant_id = ${tenantId} AND display_name = 'Engineering'`
      )[0]!.id;
    await database.sql`INSERT INTO group_members (tenant_id, group_id, user_id) VALUES (${tenantId}, ${groupId}, ${user!.id})`;
    return user!.id as string;
  };
  for (const tenant of [acme, tenb]) {
    await addRule(
      database.db,
      tenant.id,
      readRuleInput({ target: 'app', idpGroup: 'Engineering', app: 'api', permissions: ['view', 'deploy'] }),
      'test',
    );
  }
  const ada = await userIn(acme.id, 'ada@example.com');
  await userIn(tenb.id, 'bob@example.com');

  const admin = async (token: string, method: string, path: string, body?: unknown) => {
    const response = await fetch(`${base}/api${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined, headers: response.headers };
  };
  const issue = async (tenant: string, user: string, scopes: string[]) =>
    admin(ADMIN, 'POST', `/tenants/${tenant}/users/${user}/tokens`, { scopes });
  const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
  const basic = (id: string, secret: string) =>
    `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
  const oauth = async (path: string, fields: Record<string, string>, authorization?: string) => {
    const response = await fetch(`${base}/oauth/${path}`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        ...(authorization ? { Authorization: authorization } : {}),
      },
      body: form(fields),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined, headers: response.headers };
  };

  describe('introspection clients', async () => {
    const created = await runCli(
      ['client', 'create', '--tenant', 'acme', '--name', 'billing', '--scope', 'introspect'],
      { DATABASE_URL: database.url },
    );
    const clientId = /client_id:\s+(\S+)/.exec(created.stdout)?.[1] ?? '';
    const clientSecret = /client_secret:\s+(\S+)/.exec(created.stdout)?.[1] ?? '';
    const acmeToken = (await issue('acme', 'ada@example.com', ['apps:read'])).body.token as string;
    const tenbToken = (await issue('tenb', 'bob@example.com', ['apps:read'])).body.token as string;

    it('are created by the CLI, shown once and stored hashed', async () => {
      expect(created.code, created.stderr).toBe(0);
      expect(clientSecret).toMatch(new RegExp(`^client_${clientId}_`));
      const secretHalf = clientSecret.split('_')[2]!;
      expect(JSON.stringify(await database.sql`SELECT * FROM oauth_clients`)).not.toContain(secretHalf);
      const listed = await runCli(['client', 'list', '--tenant', 'acme'], { DATABASE_URL: database.url });
      expect(listed.stdout).toContain(`billing\t${clientId}\tintrospect`);
      expect(listed.stdout).not.toContain(secretHalf);
    });

    it('authenticate with HTTP Basic or client_secret_post and see only their own tenant’s tokens', async () => {
      const viaBasic = await oauth('introspect', { token: acmeToken }, basic(clientId, clientSecret));
      expect(viaBasic.status).toBe(200);
      expect(viaBasic.body).toMatchObject({ active: true, tenant: 'acme', scope: 'apps:read' });
      expect(viaBasic.headers.get('cache-control')).toBe('no-store');
      const viaPost = await oauth('introspect', {
        token: acmeToken,
        client_id: clientId,
        client_secret: clientSecret,
      });
      expect(viaPost.body.active).toBe(true);
      // Tenant B's perfectly valid token is not this client's business.
      const foreign = await oauth('introspect', { token: tenbToken }, basic(clientId, clientSecret));
      expect(foreign.body).toEqual({ active: false });
    });

    it('refuse the admin token and wrong secrets with invalid_client (401, Basic challenge)', async () => {
      const withAdmin = await oauth('introspect', { token: acmeToken }, `Bearer ${ADMIN}`);
      expect(withAdmin.status).toBe(401);
      expect(withAdmin.body.error).toBe('invalid_client');
      expect(withAdmin.headers.get('www-authenticate')).toMatch(/^Basic /);
      const wrong = await oauth('introspect', { token: acmeToken }, basic(clientId, `${clientSecret}x`));
      expect(wrong.status).toBe(401);
      const wrongPost = await oauth('introspect', {
        token: acmeToken,
        client_id: clientId,
        client_secret: 'nope',
      });
      expect(wrongPost).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
      const both = await oauth(
        'introspect',
        { token: acmeToken, client_id: clientId, client_secret: clientSecret },
        basic(clientId, clientSecret),
      );
      expect(both).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    });

    it('may revoke only with the revoke scope, and only their own tenant’s tokens', async () => {
      const refused = await oauth('revoke', { token: acmeToken }, basic(clientId, clientSecret));
      expect(refused).toMatchObject({ status: 400, body: { error: 'unauthorized_client' } });
      const created = await admin(ADMIN, 'POST', '/tenants/tenb/clients', {
        name: 'ops',
        scopes: ['introspect', 'revoke'],
      });
      expect(created.status).toBe(201);
      const tenbClient = basic(created.body.clientId, created.body.clientSecret);
      expect((await oauth('revoke', { token: acmeToken }, tenbClient)).status).toBe(200);
      // Tenant B's client did not revoke tenant A's token.
      expect(
        (await oauth('introspect', { token: acmeToken }, basic(clientId, clientSecret))).body.active,
      ).toBe(true);
      expect((await oauth('revoke', { token: tenbToken }, tenbClient)).status).toBe(200);
      expect((await oauth('introspect', { token: tenbToken }, tenbClient)).body).toEqual({ active: false });
    });

    it('rotate (the old secret stops at once) and are removed through the admin API', async () => {
      const rotated = await admin(ADMIN, 'POST', '/tenants/acme/clients/billing/rotate');
      expect(rotated.status).toBe(200);
      expect((await oauth('introspect', { token: acmeToken }, basic(clientId, clientSecret))).status).toBe(
        401,
      );
      const fresh = basic(rotated.body.clientId, rotated.body.clientSecret);
      expect((await oauth('introspect', { token: acmeToken }, fresh)).body.active).toBe(true);
      expect((await admin(ADMIN, 'DELETE', '/tenants/acme/clients/billing')).status).toBe(204);
      expect((await oauth('introspect', { token: acmeToken }, fresh)).status).toBe(401);
      expect(output()).not.toContain(rotated.body.clientSecret.split('_')[2]);
    });
  });

  describe('admin tokens with a tenant and a role', async () => {
    const token = async (name: string, role: 'owner' | 'operator' | 'auditor', tenantId: string | null) =>
      (await createAdminToken(database.db, { name, role, tenantId, actor: 'test' })).token;
    const auditor = await token('audit-acme', 'auditor', acme.id);
    const operator = await token('ops-acme', 'operator', acme.id);
    const owner = await token('owner-acme', 'owner', acme.id);

    it('an auditor reads drift, receipts, offboarding and seats, and changes nothing', async () => {
      expect((await admin(auditor, 'GET', '/tenants/acme/offboarding')).status).toBe(200);
      expect((await admin(auditor, 'GET', '/tenants/acme/seats/inactive')).status).toBe(200);
      expect((await admin(auditor, 'GET', '/tenants/acme/drift/verify')).status).toBe(200);
      expect((await admin(auditor, 'GET', `/tenants/acme/users/${ada}/receipt`)).status).not.toBe(403);
      const rule = await admin(auditor, 'POST', '/tenants/acme/rules', {
        target: 'team',
        idpGroup: 'X',
        team: 'core',
      });
      expect(rule.status).toBe(403);
      expect(rule.body.error.code).toBe('forbidden');
      expect((await admin(auditor, 'POST', '/tenants/acme/drift/scan')).status).toBe(403);
    });

    it('an operator changes rules and starts scans, but issues no credentials', async () => {
      const rule = await admin(operator, 'POST', '/tenants/acme/rules', {
        target: 'team',
        idpGroup: 'Ops',
        team: 'core',
        role: 'member',
      });
      expect(rule.status).toBe(201);
      expect((await admin(operator, 'POST', '/tenants/acme/drift/scan')).status).toBe(202);
      expect(
        (await admin(operator, 'POST', `/tenants/acme/users/${ada}/tokens`, { scopes: [] })).status,
      ).toBe(403);
      expect((await admin(operator, 'POST', '/tenants/acme/clients', { name: 'x' })).status).toBe(403);
      expect(
        (await admin(operator, 'POST', '/admin-tokens', { name: 'x', role: 'auditor', tenant: 'acme' }))
          .status,
      ).toBe(403);
    });

    it('an owner manages credentials of its own tenant only', async () => {
      const created = await admin(owner, 'POST', '/admin-tokens', {
        name: 'siem',
        role: 'auditor',
        tenant: 'acme',
      });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ name: 'siem', role: 'auditor', tenant: 'acme' });
      expect((await admin(created.body.token, 'GET', '/tenants/acme/offboarding')).status).toBe(200);
      expect((await admin(owner, 'POST', '/admin-tokens', { name: 'global', role: 'owner' })).status).toBe(
        403,
      );
      const listed = await admin(owner, 'GET', '/admin-tokens');
      expect(listed.body.tokens.map((t: { name: string }) => t.name).sort()).toEqual([
        'audit-acme',
        'ops-acme',
        'owner-acme',
        'siem',
      ]);
      expect((await admin(owner, 'DELETE', '/admin-tokens/siem')).status).toBe(204);
      expect((await admin(created.body.token, 'GET', '/tenants/acme/offboarding')).status).toBe(401);
    });

    it('a tenant-scoped token gets the same 404 for another tenant as for one that does not exist', async () => {
      const other = await admin(owner, 'GET', '/tenants/tenb/offboarding');
      const missing = await admin(owner, 'GET', '/tenants/nosuch/offboarding');
      expect(other.status).toBe(404);
      expect(missing.status).toBe(404);
      expect(other.body.error.message.replace('tenb', 'X')).toBe(
        missing.body.error.message.replace('nosuch', 'X'),
      );
      expect(
        (await admin(owner, 'POST', '/admin-tokens', { name: 'sneak', role: 'auditor', tenant: 'tenb' }))
          .status,
      ).toBe(404);
      // The environment token remains the owner of every tenant.
      expect((await admin(ADMIN, 'GET', '/tenants/tenb/offboarding')).status).toBe(200);
    });

    it('audits every admin request with the token’s name', async () => {
      await admin(operator, 'GET', '/tenants/acme/rules');
      await expect
        .poll(
          async () =>
            (
              await database.sql`SELECT actor, action, after FROM audit_log WHERE actor = 'admin:ops-acme' ORDER BY id`
            ).map((r) => `${r.action} ${r.after.path} ${r.after.status}`),
          // The audit row is written after the answer, beside the other files' work on the database.
          { timeout: 10_000 },
        )
        .toEqual(
          expect.arrayContaining([
            'admin_api.post /api/tenants/acme/rules 201',
            'admin_api.get /api/tenants/acme/rules 200',
            'admin_api.post /api/tenants/acme/users/' + ada + '/tokens 403',
          ]),
        );
      const [rule] =
        await database.sql`SELECT actor FROM audit_log WHERE action = 'rule.added' ORDER BY id DESC LIMIT 1`;
      expect(rule?.actor).toBe('admin:ops-acme');
    });

    it('the CLI creates, lists and revokes admin tokens; the console accepts an auditor token', async () => {
      const created = await runCli(
        ['admin-token', 'create', '--name', 'reviewer', '--role', 'auditor', '--tenant', 'acme'],
        {
          DATABASE_URL: database.url,
        },
      );
      expect(created.code, created.stderr).toBe(0);
      const reviewer = /token:\s+(\S+)/.exec(created.stdout)![1]!;
      const login = await fetch(`${base}/console/acme/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: PUBLIC_URL },
        body: form({ token: reviewer }),
      });
      expect(login.status).toBe(303);
      const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
      expect(cookie).not.toContain(reviewer.split('_')[2]!);
      const page = await fetch(`${base}/console/acme`, { headers: { cookie } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('reviewer (auditor)');
      // Read-only: an auditor cannot start a scan from the console.
      const scan = await fetch(`${base}/console/acme/scan`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie, Origin: PUBLIC_URL },
      });
      expect(scan.status).toBe(403);
      // Another tenant's console does not take it.
      const elsewhere = await fetch(`${base}/console/tenb/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: PUBLIC_URL },
        body: form({ token: reviewer }),
      });
      expect(elsewhere.status).toBe(401);
      const revoked = await runCli(['admin-token', 'revoke', 'reviewer'], { DATABASE_URL: database.url });
      expect(revoked.code, revoked.stderr).toBe(0);
      // Revoking the token ends its console session too.
      expect((await fetch(`${base}/console/acme`, { headers: { cookie } })).status).toBe(401);
    });
  });

  describe('personal tokens bounded by the user’s access', async () => {
    const client = await admin(ADMIN, 'POST', '/tenants/acme/clients', { name: 'checker' });
    const checker = basic(client.body.clientId, client.body.clientSecret);

    it('refuses scopes beyond the user’s current access or the tenant’s allowed scopes', async () => {
      const beyond = await issue('acme', 'ada@example.com', ['apps:read', 'apps:manage']);
      expect(beyond.status).toBe(403);
      expect(beyond.body.error.message).toContain('apps:manage');
      expect(beyond.body.error.message).toContain('apps:read, apps:deploy');
      await database.sql`UPDATE tenants SET token_scopes = '{apps:read}' WHERE id = ${acme.id}`;
      expect((await issue('acme', 'ada@example.com', ['apps:deploy'])).status).toBe(403);
      await database.sql`UPDATE tenants SET token_scopes = DEFAULT WHERE id = ${acme.id}`;
      expect((await issue('acme', 'ada@example.com', ['made:up'])).status).toBe(400);
    });

    it('introspection reports only the scopes the user’s access still grants', async () => {
      const issued = await issue('acme', 'ada@example.com', ['apps:read', 'apps:deploy']);
      expect(issued.status).toBe(201);
      expect((await oauth('introspect', { token: issued.body.token }, checker)).body.scope).toBe(
        'apps:read apps:deploy',
      );
      await database.sql`
        UPDATE assignment_rules SET app_permissions = '{view}' WHERE tenant_id = ${acme.id} AND idp_group = 'Engineering'`;
      expect((await oauth('introspect', { token: issued.body.token }, checker)).body).toMatchObject({
        active: true,
        scope: 'apps:read',
      });
    });

    it('on the account page, a scope beyond the user’s access is a 403 page, not a failed sign-in', async () => {
      const session = await startSession(database.db, acme.id, ada);
      const create = (scopes: string) =>
        fetch(`${base}/sso/acme/me/tokens`, {
          method: 'POST',
          headers: {
            Cookie: `idsync_session=${session}`,
            Origin: PUBLIC_URL,
            'Content-Type': 'application/x-www-form-urlencoded',
          },
          body: form({ scopes, label: 'laptop' }),
        });
      const refused = await create('apps:read teams:manage');
      expect(refused.status).toBe(403);
      expect(await refused.text()).toContain('teams:manage');
      const made = await create('apps:read');
      expect(made.status).toBe(200);
      expect(await made.text()).toMatch(/api_[0-9a-f]{16}_/);
    });

    it('never accepts a session cookie as a bearer token', async () => {
      const session = await startSession(database.db, acme.id, ada);
      expect(session).toMatch(/^sess_/);
      expect((await oauth('introspect', { token: session }, checker)).body).toEqual({ active: false });
    });
  });
});
