import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PlatformOperation } from '../src/platform/connector.js';
import { connectorFactory } from '../src/platform/factory.js';
import { RateBudget, type RequestPriority } from '../src/platform/heroku/budget.js';
import { HerokuClient } from '../src/platform/heroku/client.js';
import type { HerokuConnector } from '../src/platform/heroku/connector.js';
import { setPlatform } from '../src/platform/settings.js';
import { SecretBox } from '../src/security/secret-box.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { checkRequest, exampleOf } from './support/heroku-schema.js';
import { capturingLogger } from './support/log-capture.js';

const API = 'https://api.heroku.test';
const TOKEN = `HRKU-${randomBytes(16).toString('hex')}`;
const EA_ID = '6f1c2d3e-0000-4000-8000-00000000ea01';

describe('the Heroku connector against the Platform API schema (nock)', async () => {
  const database = await createTestDatabase();
  const redis = new Redis(inject('redisUrl'), { lazyConnect: false });
  const config = {
    secretKey: randomBytes(32).toString('hex'),
    dataDir: '/nonexistent',
    databaseUrl: undefined,
  };
  const { log, output } = capturingLogger('info');
  const lines = () =>
    output()
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg: string });
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  await setPlatform(
    database.db,
    tenant.id,
    { connector: 'heroku', enterpriseAccount: 'acme-ea', apiUrl: API, token: TOKEN },
    SecretBox.fromConfig(config),
  );
  // Each test file gets its own budget key, so tests never share a bucket.
  // The Enterprise Account's id as `platform check` or a first scan remembers it: paths use the id.
  await database.sql`UPDATE tenants SET connector_settings = connector_settings || ${JSON.stringify({ budgetKey: uniquePrefix('acct'), refillPerMinute: 60_000, reserve: 0, enterpriseAccountId: EA_ID })}::jsonb WHERE id = ${tenant.id}`;
  const connectorFor = connectorFactory({ database, redis, config, log });
  const connector = (await connectorFor(tenant.id, 'deprovision')) as HerokuConnector;
  /** A client of its own budget (named after the test), for what the connector does not show. */
  const clientFor = (
    budgetName: string,
    priority: RequestPriority,
    options: { refillPerMinute?: number; timeoutMs?: number } = {},
  ) =>
    new HerokuClient({
      apiUrl: API,
      token: TOKEN,
      budget: new RateBudget(redis, uniquePrefix(budgetName), {
        refillPerMinute: options.refillPerMinute ?? 75,
        reserve: 0,
      }),
      priority,
      log,
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    });

  /** Every request nock sees, checked against the schema link for its method and path. */
  const seen: { method: string; path: string; headers: Record<string, unknown>; problems: string[] }[] = [];
  const heroku = () =>
    nock(API, {
      reqheaders: { accept: 'application/vnd.heroku+json; version=3', authorization: `Bearer ${TOKEN}` },
    });
  const validated = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    function (
      this: { req: { method: string; headers: Record<string, unknown> } },
      uri: string,
      requestBody: unknown,
    ) {
      const path = new URL(uri, API).pathname;
      const method = this.req.method;
      const payload =
        typeof requestBody === 'string' && requestBody ? JSON.parse(requestBody) : requestBody || undefined;
      seen.push({
        method,
        path,
        headers: this.req.headers,
        problems: checkRequest(method, path, payload).problems,
      });
      return [status, body, { 'RateLimit-Remaining': '4000', ...headers }] as [
        number,
        unknown,
        Record<string, string>,
      ];
    };

  beforeAll(() => nock.disableNetConnect());
  afterEach(() => {
    expect(seen.flatMap((s) => s.problems)).toEqual([]);
    seen.length = 0;
    nock.cleanAll();
  });
  afterAll(() => {
    nock.enableNetConnect();
    redis.disconnect();
  });

  it('sends each operation as the documented request, with a body valid under the link schema', async () => {
    const account = 'ada@example.com';
    const operations: [PlatformOperation, string, string][] = [
      [
        { kind: 'grant-enterprise', account, permissions: ['view'] },
        'POST',
        `/enterprise-accounts/${EA_ID}/members`,
      ],
      [
        { kind: 'change-enterprise', account, from: ['view'], to: ['view', 'create'] },
        'PATCH',
        `/enterprise-accounts/${EA_ID}/members/ada%40example.com`,
      ],
      [{ kind: 'add-team-member', account, team: 'core', role: 'member' }, 'PUT', '/teams/core/members'],
      [
        { kind: 'change-team-role', account, team: 'core', from: 'member', to: 'admin' },
        'PUT',
        '/teams/core/members',
      ],
      [{ kind: 'promote-fallback-admin', account, team: 'web', from: null }, 'PUT', '/teams/web/members'],
      [
        { kind: 'grant-app-access', account, app: 'api', permissions: ['view', 'deploy'] },
        'POST',
        '/teams/apps/api/collaborators',
      ],
      [
        { kind: 'change-app-access', account, app: 'api', from: ['view', 'deploy'], to: ['view'] },
        'PATCH',
        '/teams/apps/api/collaborators/ada%40example.com',
      ],
      [
        { kind: 'revoke-app-access', account, app: 'api' },
        'DELETE',
        '/teams/apps/api/collaborators/ada%40example.com',
      ],
      [
        { kind: 'remove-team-member', account, team: 'core' },
        'DELETE',
        '/teams/core/members/ada%40example.com',
      ],
      [
        { kind: 'revoke-enterprise', account },
        'DELETE',
        `/enterprise-accounts/${EA_ID}/members/ada%40example.com`,
      ],
    ];
    for (const [operation, method, path] of operations) {
      // Answers without ids: the paths stay e-mails (ids are used once a scan or an answer gave them).
      heroku().intercept(path, method).reply(validated(200, {}));
      expect(await connector.apply(operation)).toEqual({ status: 'applied' });
    }
    expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual(operations.map(([, m, p]) => `${m} ${p}`));
    // The mirror follows what Heroku accepted: after the last removal nothing is left.
    expect(await connector.readAccess(account)).toEqual({
      enterprise: null,
      teams: new Map([['web', 'admin']]),
      apps: new Map(),
    });
  });

  it('pages lists with Range max=1000 and follows Next-Range on 206 until the last page', async () => {
    const members = Array.from({ length: 2_345 }, (_, i) =>
      exampleOf('enterprise-account-member', {
        id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
        user: { email: `user${i}@example.com`, id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` },
        permissions: [{ name: 'view', description: '' }],
        identity_provider: i % 2 ? null : { id: 'x', name: 'acme' },
      }),
    );
    const ranges: string[] = [];
    for (const [start, status, next] of [
      [0, 206, 'id ]p1..; max=1000;'],
      [1000, 206, 'id ]p2..; max=1000;'],
      [2000, 200, undefined],
    ] as const) {
      heroku()
        .get('/enterprise-accounts/acme-ea/members')
        .matchHeader('range', (value) => {
          ranges.push(value);
          return value === (start === 0 ? 'id ..; max=1000;' : `id ]p${start / 1000}..; max=1000;`);
        })
        .reply(validated(status, members.slice(start, start + 1000), next ? { 'Next-Range': next } : {}));
    }
    const client = clientFor('pages', 'scan');
    const listed = await client.listAll<{ user: { email: string } }>('/enterprise-accounts/acme-ea/members');
    expect(listed).toHaveLength(2_345);
    expect(listed.at(-1)!.user.email).toBe('user2344@example.com');
    expect(client.requests).toBe(3);
  });

  it('retries 5xx and network errors with back-off, and waits out a 429 without losing the removal', async () => {
    const path = '/teams/core/members/grace%40example.com';
    heroku()
      .delete(path)
      .reply(validated(503, { id: 'unavailable', message: 'down' }));
    heroku().delete(path).replyWithError('socket hang up');
    heroku()
      .delete(path)
      .reply(validated(429, { id: 'rate_limit', message: 'slow down' }, { 'RateLimit-Remaining': '0' }));
    heroku()
      .delete(path)
      .reply(validated(200, exampleOf('team-member')));
    const started = Date.now();
    expect(
      await connector.apply({ kind: 'remove-team-member', account: 'grace@example.com', team: 'core' }),
    ).toEqual({
      status: 'applied',
    });
    // Four attempts: 503, a network error (which never reaches the schema check), 429, success.
    expect(seen.map((s) => s.method)).toEqual(['DELETE', 'DELETE', 'DELETE']);
    expect(nock.isDone()).toBe(true);
    expect(Date.now() - started).toBeGreaterThan(100);
    expect(lines().filter((l) => l.msg === 'Heroku request failed; retrying')).toHaveLength(2);
  });

  it('logs retried requests without the account they name: e-mails and ids become placeholders', async () => {
    const member = '6f1c2d3e-0000-4000-8000-0000000000aa';
    heroku()
      .delete('/teams/core/members/quiet.person%40example.com')
      .reply(validated(503, { id: 'unavailable', message: 'down' }));
    heroku()
      .delete('/teams/core/members/quiet.person%40example.com')
      .reply(validated(200, exampleOf('team-member')));
    heroku()
      .delete(`/enterprise-accounts/${EA_ID}/members/${member}`)
      .reply(validated(503, { id: 'unavailable', message: 'down' }));
    heroku()
      .delete(`/enterprise-accounts/${EA_ID}/members/${member}`)
      .reply(validated(200, exampleOf('enterprise-account-member')));
    const client = clientFor('redact', 'deprovision', { refillPerMinute: 6_000 });
    await client.request('DELETE', '/teams/core/members/quiet.person%40example.com');
    await client.request('DELETE', `/enterprise-accounts/${EA_ID}/members/${member}`);
    const retries = lines().filter((l) => l.msg === 'Heroku request failed; retrying') as unknown as {
      request: string;
    }[];
    expect(retries.map((r) => r.request)).toEqual(
      expect.arrayContaining([
        'DELETE /teams/core/members/{account}',
        'DELETE /enterprise-accounts/{id}/members/{id}',
      ]),
    );
    expect(output()).not.toMatch(/quiet\.person|quiet%2Eperson/);
    expect(output()).not.toContain(member);
  });

  it('maps answers to outcomes: a 404 is already done once the team is there and the member is not', async () => {
    heroku()
      .delete('/teams/core/members/gone%40example.com')
      .reply(validated(404, { id: 'not_found', message: 'Couldn’t find that member.' }));
    heroku()
      .get('/teams/core')
      .reply(validated(200, exampleOf('team', { name: 'core' })));
    heroku()
      .get('/teams/core/members')
      .matchHeader('range', 'email ..; max=1000;')
      .reply(validated(200, [exampleOf('team-member', { email: 'someone@example.com' })]));
    expect(
      await connector.apply({ kind: 'remove-team-member', account: 'gone@example.com', team: 'core' }),
    ).toEqual({
      status: 'already-done',
    });
    heroku()
      .delete('/teams/core/members/last%40example.com')
      .reply(validated(422, { id: 'invalid_params', message: 'A team must have at least one admin.' }));
    const outcome = await connector.apply({
      kind: 'remove-team-member',
      account: 'last@example.com',
      team: 'core',
    });
    expect(outcome).toEqual({
      status: 'blocked',
      cause: 'refused',
      reason: expect.stringContaining('at least one admin'),
    });
  });

  it('a grant Heroku refuses as existing becomes an update (idempotent grants); other refusals do not', async () => {
    heroku()
      .post('/teams/apps/api/collaborators')
      .reply(
        validated(422, {
          id: 'invalid_params',
          message: 'lin@example.com is already a collaborator on app api.',
        }),
      );
    heroku()
      .patch('/teams/apps/api/collaborators/lin%40example.com')
      .reply(validated(200, exampleOf('team-app-collaborator')));
    expect(
      await connector.apply({
        kind: 'grant-app-access',
        account: 'lin@example.com',
        app: 'api',
        permissions: ['view'],
      }),
    ).toEqual({ status: 'applied' });
    expect(seen.map((s) => s.method)).toEqual(['POST', 'PATCH']);
    seen.length = 0;
    heroku()
      .post('/teams/apps/api/collaborators')
      .reply(validated(422, { id: 'invalid_params', message: 'Permissions are invalid.' }));
    expect(
      await connector.apply({
        kind: 'grant-app-access',
        account: 'max@example.com',
        app: 'api',
        permissions: ['view'],
      }),
    ).toEqual({
      status: 'blocked',
      cause: 'refused',
      reason: expect.stringContaining('Permissions are invalid'),
    });
    expect(seen.map((s) => s.method)).toEqual(['POST']);
  });

  it('a refused token stops the tenant, raises an alert, and later jobs do not call Heroku', async () => {
    heroku()
      .delete('/teams/core/members/x%40example.com')
      .reply(validated(401, { id: 'unauthorized', message: 'Invalid credentials provided.' }));
    await expect(
      connector.apply({ kind: 'remove-team-member', account: 'x@example.com', team: 'core' }),
    ).rejects.toThrow(/401/);
    const [row] =
      await database.sql`SELECT connector_status, connector_status_reason FROM tenants WHERE id = ${tenant.id}`;
    expect(row).toEqual({
      connector_status: 'stopped',
      connector_status_reason: expect.stringContaining('Invalid credentials'),
    });
    expect(lines().some((l) => l.level === 60 && String(l.msg).startsWith('ALERT'))).toBe(true);
    expect(JSON.stringify(lines())).not.toContain(TOKEN);
    await expect(connectorFor(tenant.id)).rejects.toThrow(/stopped/);
    await database.sql`UPDATE tenants SET connector_status = 'ok', connector_status_reason = NULL WHERE id = ${tenant.id}`;
  });

  it('times out a hung request and retries it', async () => {
    const client = clientFor('timeout', 'reconcile', { timeoutMs: 200 });
    heroku()
      .get('/account')
      .delay(1_000)
      .reply(validated(200, exampleOf('account')));
    heroku()
      .get('/account')
      .reply(validated(200, exampleOf('account')));
    const answer = await client.request<{ email: string }>('GET', '/account');
    expect(answer.body.email).toBe(exampleOf<{ email: string }>('account').email);
    expect(client.requests).toBe(2);
  });
});

describe('the shared rate budget (Redis)', () => {
  const redis = new Redis(inject('redisUrl'));
  afterAll(() => redis.disconnect());

  it('is shared by every worker: what one takes, another cannot', async () => {
    const key = uniquePrefix('shared');
    const a = new RateBudget(redis, key, { refillPerMinute: 1, reserve: 0 });
    const b = new RateBudget(redis, key, { refillPerMinute: 1, reserve: 0 });
    await a.observe(2);
    await a.acquire('reconcile');
    await b.acquire('reconcile');
    expect((await b.state()).remaining).toBe(0);
    const late = b.acquire('reconcile', AbortSignal.timeout(300));
    await expect(late).rejects.toThrow();
  });

  it('lets a deprovision through while scans and reconciles wait behind it and behind the reserve', async () => {
    const key = uniquePrefix('priority');
    const budget = new RateBudget(redis, key, { refillPerMinute: 1, reserve: 10 });
    await budget.observe(5);
    // Below the reserve: a scan waits, a deprovision goes.
    await expect(budget.acquire('scan', AbortSignal.timeout(300))).rejects.toThrow();
    await budget.acquire('deprovision');
    await budget.observe(1_000);
    // Plenty left, but a deprovision is under way: the scan still waits for it to finish.
    await budget.acquire('deprovision');
    await expect(budget.acquire('scan', AbortSignal.timeout(300))).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    await budget.acquire('scan');
  });
});

describe('the schema check itself', () => {
  it('refuses what Heroku would: a role outside the enum, a missing field, an undocumented path', () => {
    expect(
      checkRequest('PUT', '/teams/core/members', { email: 'a@example.com', role: 'member' }).problems,
    ).toEqual([]);
    expect(
      checkRequest('PUT', '/teams/core/members', { email: 'a@example.com', role: 'owner' }).problems,
    ).not.toEqual([]);
    expect(checkRequest('PUT', '/teams/core/members', { role: 'member' }).problems).not.toEqual([]);
    expect(checkRequest('DELETE', '/teams/core/everyone', undefined).problems).toEqual([
      'no schema link for DELETE /teams/core/everyone',
    ]);
  });
});
