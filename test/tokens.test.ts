import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { addRule, readRuleInput } from '../src/reconcile/rules.js';
import { createClient } from '../src/security/oauth-clients.js';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

const ADMIN = randomBytes(24).toString('hex');

describe('personal API tokens: issue, RFC 7662 introspection, RFC 7009 revocation', async () => {
  const database = await createTestDatabase();
  const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
  const { log, output } = capturingLogger('debug');
  const config = testConfig(database.url, { adminToken: ADMIN });
  // Two API processes on one database: a revocation through one must hold at once in the other.
  const first = await startTestDaemon({ mode: 'serve', config, log });
  const second = await startTestDaemon({ mode: 'serve', config, log });
  afterAll(async () => {
    await first.stop();
    await second.stop();
  });
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenant.id}, 'ada@example.com', 'scim') RETURNING id::text`;
  // Ada may deploy the api app, so her tokens may carry apps:read and apps:deploy.
  const [group] = await database.sql`
    INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'Engineering') RETURNING id`;
  await database.sql`INSERT INTO group_members (tenant_id, group_id, user_id) VALUES (${tenant.id}, ${group!.id}, ${user!.id})`;
  await addRule(
    database.db,
    tenant.id,
    readRuleInput({ target: 'app', idpGroup: 'Engineering', app: 'api', permissions: ['view', 'deploy'] }),
    'test',
  );
  const client = await createClient(database.db, tenant.id, 'platform', ['introspect', 'revoke'], 'test');
  const CLIENT = `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}`;

  const issue = async (body: unknown) => {
    const response = await fetch(
      `http://127.0.0.1:${first.port}/api/tenants/acme/users/ada@example.com/tokens`,
      {
        method: 'POST',
        headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      },
    );
    return { status: response.status, body: (await response.json()) as any };
  };
  const oauth = async (port: number, path: string, token: string, authorization = CLIENT) => {
    const response = await fetch(`http://127.0.0.1:${port}/oauth/${path}`, {
      method: 'POST',
      headers: { Authorization: authorization, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }).toString(),
    });
    return {
      status: response.status,
      body: response.headers.get('content-type')?.includes('json')
        ? ((await response.json()) as any)
        : undefined,
    };
  };

  it('issues a token once, stores only its hash, and introspects it as active', async () => {
    const issued = await issue({ scopes: ['apps:read', 'apps:deploy'], expiresInSeconds: 3600, label: 'ci' });
    expect(issued.status).toBe(201);
    expect(issued.body.token).toMatch(/^api_[0-9a-f]{16}_/);
    const secret = issued.body.token.split('_')[2];
    expect(JSON.stringify(await database.sql`SELECT * FROM tokens`)).not.toContain(secret);
    const result = await oauth(second.port!, 'introspect', issued.body.token);
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({
      active: true,
      scope: 'apps:read apps:deploy',
      sub: user!.id,
      username: 'ada@example.com',
      tenant: 'acme',
    });
    expect(result.body.exp - result.body.iat).toBeGreaterThanOrEqual(3599);
    expect(output()).not.toContain(secret);
  });

  it('answers active:false for a wrong secret, garbage, and a revoked token — at once in every process', async () => {
    const { body } = await issue({ scopes: [] });
    const flipped = `${body.token.slice(0, -1)}${body.token.endsWith('A') ? 'B' : 'A'}`;
    expect((await oauth(first.port!, 'introspect', flipped)).body).toEqual({ active: false });
    expect((await oauth(first.port!, 'introspect', 'not-a-token')).body).toEqual({ active: false });
    expect((await oauth(first.port!, 'revoke', body.token)).status).toBe(200);
    expect((await oauth(second.port!, 'introspect', body.token)).body).toEqual({ active: false });
    expect((await oauth(first.port!, 'revoke', body.token)).status).toBe(200);
  });

  it('answers active:false for an expired token and for a user deactivated through SCIM', async () => {
    const { body: expiring } = await issue({ expiresInSeconds: 3600 });
    await database.sql`UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = ${expiring.id}`;
    expect((await oauth(first.port!, 'introspect', expiring.token)).body).toEqual({ active: false });

    const { body: live } = await issue({});
    expect((await oauth(first.port!, 'introspect', live.token)).body.active).toBe(true);
    // Asked for no lifetime, it still expires: in 90 days, as the CLI's and the account page's do.
    const inNinetyDays = Date.now() + 90 * 24 * 3600_000;
    expect(Math.abs(Date.parse(live.expiresAt) - inNinetyDays)).toBeLessThan(60_000);
    const patch = await fetch(`http://127.0.0.1:${first.port}/scim/v2/Users/${user!.id}`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
      body: JSON.stringify({
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
        Operations: [{ op: 'replace', path: 'active', value: false }],
      }),
    });
    expect(patch.status).toBe(200);
    expect((await oauth(second.port!, 'introspect', live.token)).body).toEqual({ active: false });
    // And a deactivated user gets no new token.
    expect((await issue({})).status).toBe(400);
  });

  it('refuses callers without client credentials, the admin token included', async () => {
    for (const authorization of [`Bearer ${ADMIN}`, 'Basic d3Jvbmc6d3Jvbmc=']) {
      const response = await oauth(first.port!, 'introspect', 'x', authorization);
      expect(response.status).toBe(401);
      expect(response.body.error).toBe('invalid_client');
    }
    const missing = await fetch(`http://127.0.0.1:${first.port}/oauth/introspect`, {
      method: 'POST',
      headers: { Authorization: CLIENT, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: '',
    });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('issues from the CLI, printing the token once', async () => {
    const [cliUser] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenant.id}, 'cli.user@example.com', 'scim') RETURNING id`;
    await database.sql`INSERT INTO group_members (tenant_id, group_id, user_id) VALUES (${tenant.id}, ${group!.id}, ${cliUser!.id})`;
    const result = await runCli(
      [
        'token',
        'issue',
        '--tenant',
        'acme',
        '--user',
        'cli.user@example.com',
        '--scopes',
        'apps:read',
        '--expires-in',
        '12h',
      ],
      { DATABASE_URL: database.url },
    );
    expect(result.code).toBe(0);
    const token = /token:\s+(\S+)/.exec(result.stdout)?.[1];
    expect((await oauth(first.port!, 'introspect', token!)).body).toMatchObject({
      active: true,
      username: 'cli.user@example.com',
    });
    const bad = await runCli(
      ['token', 'issue', '--tenant', 'acme', '--user', 'cli.user@example.com', '--expires-in', 'forever'],
      {
        DATABASE_URL: database.url,
      },
    );
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('is not a duration');
  });
});
