import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Webhook } from 'standardwebhooks';
import { fetch as undiciFetch } from 'undici';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { coarseNetworkError, sealLegacyUrls } from '../src/alerts/delivery.js';
import { addWebhook } from '../src/alerts/endpoints.js';
import { notify } from '../src/alerts/notify.js';
import { shownUrl, urlDigest } from '../src/alerts/shown-url.js';
import { MIGRATIONS_FOLDER } from '../src/db/migrate.js';
import { escapeHtml } from '../src/http/html.js';
import { connectorFactory } from '../src/platform/factory.js';
import { SecretBox } from '../src/security/secret-box.js';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { HerokuSimulator } from './support/heroku-simulator.js';
import { capturingLogger } from './support/log-capture.js';
import { GROUP, patch, USER } from './support/scim-fixtures.js';

const ADMIN = randomBytes(24).toString('hex');

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A real HTTP receiver: records every POST; a path's scripted answers are used up in order, then 200. */
async function startReceiver() {
  const received: Received[] = [];
  const script = new Map<string, number[]>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.statusCode = script.get(path)?.shift() ?? 200;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    received,
    script,
    at: (path: string) => received.filter((r) => r.path === path),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const verified = (secret: string, r: Received) =>
  new Webhook(secret).verify(r.body, {
    'webhook-id': String(r.headers['webhook-id']),
    'webhook-timestamp': String(r.headers['webhook-timestamp']),
    'webhook-signature': String(r.headers['webhook-signature']),
  }) as { type: string; data: Record<string, any> };

describe('webhooks: alerts that reach a person', async () => {
  const database = await createTestDatabase();
  const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
  await createTenant(database.db, 'other', 'test');
  const { log, output } = capturingLogger('debug');
  const receiver = await startReceiver();
  const daemon = await startTestDaemon({
    mode: 'start',
    // The receiver listens on 127.0.0.1: allowed only because the operator says so.
    config: testConfig(database.url, {
      adminToken: ADMIN,
      secretKey: 's'.repeat(40),
      webhookAllowPrivateNetworks: true,
    }),
    log,
    webhookBackoffMs: 100,
  });
  afterAll(async () => {
    await daemon.stop();
    await receiver.close();
  });
  const base = `http://127.0.0.1:${daemon.port}`;
  const call = async (path: string, method: string, token: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return {
      status: response.status,
      body: response.status === 204 ? undefined : ((await response.json()) as any),
    };
  };
  const ALL = [
    'deprovision.failed',
    'deprovision.blocked',
    'drift.critical',
    'brake.held',
    'platform.credential_refused',
    'platform.budget_exhausted',
  ];
  const add = async (tenantName: string, path: string, events = ALL, format = 'standard') => {
    const response = await call(`/api/tenants/${tenantName}/webhooks`, 'POST', ADMIN, {
      url: `${receiver.base}${path}`,
      events,
      format,
    });
    expect(response.status).toBe(201);
    return response.body as { id: string; secret: string };
  };
  const deliveries = async (tenantName: string) =>
    (await call(`/api/tenants/${tenantName}/webhooks/deliveries`, 'GET', ADMIN)).body.deliveries as any[];

  const acme = await add('acme', '/acme');
  const flaky = await add('acme', '/flaky', ['brake.held']);
  receiver.script.set('/flaky', [500]);
  const gone = await add('acme', '/gone', ['brake.held']);
  receiver.script.set('/gone', [410]);
  await add('acme', '/slack', ['brake.held'], 'slack');
  const otherHook = await add('other', '/other');

  it('refuses what is not an http(s) URL, unknown events and a second endpoint for one URL', async () => {
    const file = await call('/api/tenants/acme/webhooks', 'POST', ADMIN, {
      url: 'file:///etc/passwd',
      events: ['brake.held'],
    });
    expect(file.status).toBe(400);
    expect(file.body.detail ?? file.body.message ?? JSON.stringify(file.body)).toMatch(/http/);
    // Not a URL at all (no scheme): a 400 too, not a 500 whose log would show the secret URL.
    const schemeless = await call('/api/tenants/acme/webhooks', 'POST', ADMIN, {
      url: 'hooks.slack.example/services/T0001/B0001/SECRETabcdef123456',
      events: ['brake.held'],
    });
    expect(schemeless.status).toBe(400);
    const unknown = await call('/api/tenants/acme/webhooks', 'POST', ADMIN, {
      url: `${receiver.base}/x`,
      events: ['user.created'],
    });
    expect(unknown.status).toBe(400);
    const twice = await call('/api/tenants/acme/webhooks', 'POST', ADMIN, {
      url: `${receiver.base}/acme`,
      events: ['brake.held'],
    });
    expect(twice.status).toBe(409);
    expect(acme.secret).toMatch(/^whsec_/);
  });

  it('lists endpoints without their secrets, sealed at rest', async () => {
    const listed = await call('/api/tenants/acme/webhooks', 'GET', ADMIN);
    expect(listed.body.webhooks).toHaveLength(4);
    expect(JSON.stringify(listed.body)).not.toContain(acme.secret);
    const [row] = await database.sql`SELECT secret_sealed FROM webhook_endpoints WHERE id = ${acme.id}`;
    expect(row!.secret_sealed).toMatch(/^v1\./);
    expect(row!.secret_sealed).not.toContain(acme.secret.slice(6));
  });

  it('a mass change held by the brake is POSTed, signed per Standard Webhooks, once per URL', async () => {
    await call('/api/tenants/acme/rules', 'POST', ADMIN, {
      target: 'enterprise',
      idpGroup: 'Everyone',
      permissions: ['view'],
    });
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const user = await call('/scim/v2/Users', 'POST', scimToken, {
        schemas: [USER],
        userName: `p${i}@example.com`,
      });
      ids.push(user.body.id);
    }
    const group = await call('/scim/v2/Groups', 'POST', scimToken, {
      schemas: [GROUP],
      displayName: 'Everyone',
      members: ids.map((value) => ({ value })),
    });
    await expect
      .poll(
        async () =>
          Number(
            (
              await database.sql`SELECT count(*) AS n FROM platform_enterprise_members WHERE tenant_id = ${tenant.id}`
            )[0]!.n,
          ),
        { timeout: 15_000 },
      )
      .toBe(8);
    await call(
      `/scim/v2/Groups/${group.body.id}`,
      'PATCH',
      scimToken,
      patch([{ op: 'replace', path: 'members', value: [] }]),
    );
    await expect.poll(() => receiver.at('/acme').length, { timeout: 15_000 }).toBeGreaterThan(0);
    const [first] = receiver.at('/acme');
    const message = verified(acme.secret, first!);
    expect(message.type).toBe('brake.held');
    expect(message.data).toMatchObject({ tenant: 'acme', usersHeld: 8 });
    expect(first!.headers['webhook-id']).toMatch(/^msg_/);
    // A tampered body or a wrong secret does not verify.
    expect(() =>
      verified(acme.secret, { ...first!, body: first!.body.replace('"acme"', '"evil"') }),
    ).toThrow();
    expect(() => verified(otherHook.secret, first!)).toThrow();
  });

  it('retries a failing receiver with back-off and records each attempt', async () => {
    await expect
      .poll(async () => (await deliveries('acme')).find((d) => d.endpointId === flaky.id)?.status, {
        timeout: 15_000,
      })
      .toBe('delivered');
    const flakyDelivery = (await deliveries('acme')).find((d) => d.endpointId === flaky.id)!;
    expect(flakyDelivery).toMatchObject({ attempts: 2, lastResponseStatus: 200, event: 'brake.held' });
    const attempts = await database.sql`
      SELECT attempt, response_status FROM webhook_delivery_attempts WHERE delivery_id = ${flakyDelivery.id} ORDER BY attempt`;
    expect(attempts.map((a) => [a.attempt, a.response_status])).toEqual([
      [1, 500],
      [2, 200],
    ]);
    // The same message id on the retry, so a receiver can deduplicate; both signatures verify.
    const [one, two] = receiver.at('/flaky');
    expect(two!.headers['webhook-id']).toBe(one!.headers['webhook-id']);
    expect(verified(flaky.secret, two!).type).toBe('brake.held');
  });

  it('disables an endpoint that answers 410 Gone, and sends Slack its {"text"} shape', async () => {
    await expect
      .poll(async () => (await deliveries('acme')).find((d) => d.endpointId === gone.id)?.status, {
        timeout: 15_000,
      })
      .toBe('gone');
    const listed = (await call('/api/tenants/acme/webhooks', 'GET', ADMIN)).body.webhooks as any[];
    expect(listed.find((w) => w.id === gone.id).disabledReason).toMatch(/410/);
    expect(receiver.at('/gone')).toHaveLength(1);
    await expect.poll(() => receiver.at('/slack').length, { timeout: 15_000 }).toBe(1);
    expect(JSON.parse(receiver.at('/slack')[0]!.body)).toEqual({
      text: expect.stringContaining('brake.held'),
    });
  });

  it('shows the deliveries and their outcome in the security console', async () => {
    const publicUrl = daemon.resources.config.publicUrl;
    const login = await fetch(`${base}/console/acme/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: publicUrl },
      body: new URLSearchParams({ token: ADMIN }).toString(),
    });
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const page = await (await fetch(`${base}/console/acme`, { headers: { cookie } })).text();
    const alerts = page.slice(page.indexOf('<section id="alerts">'));
    expect(alerts).toContain('brake.held');
    const shown = (path: string) => escapeRegExp(escapeHtml(shownUrl(`${receiver.base}${path}`)));
    expect(alerts).toMatch(
      new RegExp(`${shown('/flaky')}</td>\\s*<td class="ok">delivered</td><td>2</td><td>200`),
    );
    expect(alerts).toMatch(new RegExp(`${shown('/gone')}</td>\\s*<td class="bad">gone</td>`));
    expect(page).not.toContain(acme.secret);
  });

  it('the CLI adds (secret shown once), lists and shows deliveries', async () => {
    const env = {
      DATABASE_URL: database.url,
      IDSYNC_SECRET_KEY: 's'.repeat(40),
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    };
    const added = await runCli(
      [
        'webhook',
        'add',
        '--tenant',
        'acme',
        '--url',
        `${receiver.base}/cli`,
        '--events',
        'drift.critical,brake.held',
        '--format',
        'slack',
      ],
      env,
    );
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/secret:\s+whsec_/);
    const refused = await runCli(
      ['webhook', 'add', '--tenant', 'acme', '--url', 'ftp://x', '--events', 'brake.held'],
      env,
    );
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/http/);
    const listed = await runCli(['webhook', 'list', '--tenant', 'acme'], env);
    // The full URL was printed once, by `add`; the list shows scheme, host and a hash of the path.
    expect(added.stdout).toContain(`url:     ${receiver.base}/cli`);
    expect(listed.stdout).toContain(
      `${shownUrl(`${receiver.base}/cli`)}  slack  drift.critical,brake.held  live`,
    );
    expect(listed.stdout).not.toContain('/cli ');
    expect(listed.stdout).not.toContain('whsec_');
    const shown = await runCli(['webhook', 'deliveries', '--tenant', 'acme', '--json'], env);
    expect(shown.code, shown.stderr).toBe(0);
    const { deliveries: rows } = JSON.parse(shown.stdout) as { deliveries: any[] };
    expect(rows.find((d) => d.endpointId === gone.id)).toMatchObject({
      status: 'gone',
      lastResponseStatus: 410,
    });
  });

  it('an offboarding stopped by a team’s last admin is deprovision.blocked', async () => {
    await call('/api/tenants/acme/rules', 'POST', ADMIN, {
      target: 'team',
      idpGroup: 'Ops Leads',
      team: 'ops',
      role: 'admin',
    });
    const lead = await call('/scim/v2/Users', 'POST', scimToken, {
      schemas: [USER],
      userName: 'lead@example.com',
    });
    await call('/scim/v2/Groups', 'POST', scimToken, {
      schemas: [GROUP],
      displayName: 'Ops Leads',
      members: [{ value: lead.body.id }],
    });
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT count(*)::int AS n FROM platform_team_members WHERE tenant_id = ${tenant.id} AND account = 'lead@example.com'`
          )[0]!.n,
        { timeout: 15_000 },
      )
      .toBe(1);
    await call(`/scim/v2/Users/${lead.body.id}`, 'DELETE', scimToken);
    await expect
      .poll(() => receiver.at('/acme').map((r) => JSON.parse(r.body).type), { timeout: 15_000 })
      .toContain('deprovision.blocked');
    const blocked = receiver.at('/acme').find((r) => JSON.parse(r.body).type === 'deprovision.blocked')!;
    expect(verified(acme.secret, blocked).data).toMatchObject({ userId: lead.body.id });
  });

  it('a drift scan finding an offboarded user with access is drift.critical', async () => {
    expect((await call('/api/tenants/acme/drift/scan', 'POST', ADMIN)).status).toBe(202);
    await expect
      .poll(() => receiver.at('/acme').map((r) => JSON.parse(r.body).type), { timeout: 20_000 })
      .toContain('drift.critical');
    const critical = receiver.at('/acme').find((r) => JSON.parse(r.body).type === 'drift.critical')!;
    const data = verified(acme.secret, critical).data;
    // The tenant's own signed receiver gets who: user ids and accounts (e-mail addresses).
    expect(data.findings.length).toBeGreaterThan(0);
    expect(data.findings[0]).toMatchObject({
      userId: expect.any(String),
      account: expect.stringContaining('@'),
    });
    // A Slack channel (the CLI-added endpoint) gets counts and a console link, never an address.
    await expect
      .poll(() => receiver.at('/cli').map((r) => JSON.parse(r.body).text as string), { timeout: 20_000 })
      .toContainEqual(expect.stringContaining('drift.critical'));
    for (const r of receiver.at('/cli')) {
      const { text } = JSON.parse(r.body) as { text: string };
      expect(text).not.toMatch(/@example\.com/);
      expect(text).toContain(`<${daemon.resources.config.publicUrl}/console/acme|`);
    }
  });

  it('keeps tenants apart: the other tenant’s endpoint heard none of acme’s events', async () => {
    expect(receiver.at('/other')).toHaveLength(0);
    expect(await deliveries('other')).toEqual([]);
    // An owner token of the other tenant cannot see acme's webhooks.
    const token = await call('/api/admin-tokens', 'POST', ADMIN, {
      name: 'other-owner',
      role: 'owner',
      tenant: 'other',
    });
    expect((await call('/api/tenants/acme/webhooks', 'GET', token.body.token)).status).toBe(404);
    expect((await call('/api/tenants/acme/webhooks/deliveries', 'GET', token.body.token)).status).toBe(404);
  });

  it('never logs a webhook secret', () => {
    expect(output().length).toBeGreaterThan(0);
    for (const secret of [acme.secret, flaky.secret, gone.secret, otherHook.secret]) {
      expect(output()).not.toContain(secret);
      expect(output()).not.toContain(secret.slice(6));
    }
  });

  it('an auditor never sees a webhook URL’s path: not in the list, the deliveries, the console or the audit log', async () => {
    const auditor = await call('/api/admin-tokens', 'POST', ADMIN, {
      name: 'acme-url-auditor',
      role: 'auditor',
      tenant: 'acme',
    });
    const token = auditor.body.token as string;
    const listed = await call('/api/tenants/acme/webhooks', 'GET', token);
    const shownDeliveries = await call('/api/tenants/acme/webhooks/deliveries', 'GET', token);
    expect(listed.status).toBe(200);
    expect(shownDeliveries.body.deliveries.length).toBeGreaterThan(0);
    const login = await fetch(`${base}/console/acme/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        Origin: daemon.resources.config.publicUrl,
      },
      body: new URLSearchParams({ token }).toString(),
    });
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const page = await (await fetch(`${base}/console/acme`, { headers: { cookie } })).text();
    const audit =
      await database.sql`SELECT after::text AS after FROM audit_log WHERE action LIKE 'webhook.%'`;
    expect(audit.length).toBeGreaterThan(0);
    const [sealed] = await database.sql`SELECT url_sealed FROM webhook_endpoints WHERE id = ${acme.id}`;
    for (const seen of [
      JSON.stringify(listed.body),
      JSON.stringify(shownDeliveries.body),
      page,
      JSON.stringify(audit),
      sealed!.url_sealed as string,
      output(),
    ]) {
      for (const path of ['/acme', '/flaky', '/gone', '/slack']) {
        expect(seen).not.toContain(`${receiver.base}${path}`);
      }
      // The paths alone, where they cannot be mistaken for idsync's own (`/console/acme`).
      for (const path of ['/flaky', '/gone', '/slack']) expect(seen).not.toMatch(new RegExp(`${path}\\b`));
    }
    expect(listed.body.webhooks.map((w: { url: string }) => w.url)).toContain(
      shownUrl(`${receiver.base}/acme`),
    );
    expect(shownUrl(`${receiver.base}/acme`)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/…#[0-9a-f]{6}$/);
  });

  it('removing an endpoint stops its deliveries; an auditor may read but not add', async () => {
    const auditor = await call('/api/admin-tokens', 'POST', ADMIN, {
      name: 'acme-auditor',
      role: 'auditor',
      tenant: 'acme',
    });
    expect((await call('/api/tenants/acme/webhooks/deliveries', 'GET', auditor.body.token)).status).toBe(200);
    expect(
      (
        await call('/api/tenants/acme/webhooks', 'POST', auditor.body.token, {
          url: `${receiver.base}/a`,
          events: ['brake.held'],
        })
      ).status,
    ).toBe(403);
    expect((await call(`/api/tenants/acme/webhooks/${acme.id}`, 'DELETE', ADMIN)).status).toBe(204);
    expect((await call(`/api/tenants/acme/webhooks/${acme.id}`, 'DELETE', ADMIN)).status).toBe(404);
  });
});

describe('webhooks: the platform refusing idsync, from the real cause (Heroku simulator)', async () => {
  const database = await createTestDatabase();
  const redis = new Redis(inject('redisUrl'));
  const secretKey = 'p'.repeat(40);
  const box = SecretBox.fromConfig({ secretKey, dataDir: '/nonexistent' });
  const { log } = capturingLogger('silent');
  const simulator = new HerokuSimulator({ refillPerMinute: 1 });
  await simulator.start();
  simulator.addTeam('core', [['ada@example.com', 'admin']]);
  afterAll(async () => {
    await simulator.stop();
    redis.disconnect();
  });
  const connectorFor = connectorFactory({
    database,
    redis,
    config: { secretKey, dataDir: '/nonexistent', databaseUrl: undefined },
    log,
    rateLimitPatienceMs: 200,
  });
  const recorded = async (tenantId: string) =>
    (
      await database.sql`SELECT event_type, payload FROM webhook_deliveries WHERE tenant_id = ${tenantId} ORDER BY id`
    ).map((r) => ({ type: r.event_type, payload: r.payload }));
  const tenantWithHook = async (name: string) => {
    const { tenant } = await createTenant(database.db, name, 'test');
    await simulator.connect(database.db, tenant.id, secretKey, {
      budgetKey: uniquePrefix(name),
      // idsync's own estimate refills at once: the simulator's empty bucket (429s) is what holds it back.
      refillPerMinute: 600_000,
      reserve: 0,
    });
    await addWebhook(
      database.db,
      box,
      tenant.id,
      {
        url: 'https://alerts.example.com/idsync',
        events: ['platform.credential_refused', 'platform.budget_exhausted'],
        format: 'standard',
      },
      'test',
      { allowPrivateNetworks: false },
    );
    return tenant;
  };

  it('a refused credential (401) is platform.credential_refused, once per stop', async () => {
    const tenant = await tenantWithHook('refused');
    // The stored token is not the one the platform accepts: a revoked credential.
    await database.sql`UPDATE tenants SET connector_settings = connector_settings || ${JSON.stringify({ token: { sealed: box.seal('revoked-token') } })}::jsonb WHERE id = ${tenant.id}`;
    const connector = await connectorFor(tenant.id, 'deprovision');
    await expect(
      connector.apply({ kind: 'remove-team-member', account: 'ada@example.com', team: 'core' }),
    ).rejects.toThrow(/401/);
    const events = await recorded(tenant.id);
    expect(events.map((e) => e.type)).toEqual(['platform.credential_refused']);
    expect(events[0]!.payload).toMatchObject({
      type: 'platform.credential_refused',
      data: { tenant: 'refused', platform: 'heroku' },
    });
    expect(JSON.stringify(events)).not.toContain('revoked-token');
  });

  it('429s outlasting a request’s patience are platform.budget_exhausted, once per window', async () => {
    const tenant = await tenantWithHook('exhausted');
    const connector = await connectorFor(tenant.id, 'reconcile');
    // One answered request first, so idsync has seen the bucket's size (as it has in any running daemon).
    expect(
      await connector.apply({ kind: 'remove-team-member', account: 'ada@example.com', team: 'core' }),
    ).toEqual({ status: 'applied' });
    simulator.drainBudget();
    for (let i = 0; i < 2; i++) {
      await expect(
        connector.apply({ kind: 'remove-team-member', account: 'ada@example.com', team: 'core' }),
      ).rejects.toThrow(/rate limited/);
    }
    expect((await recorded(tenant.id)).map((e) => e.type)).toEqual(['platform.budget_exhausted']);
  });
});

describe('webhooks: a deprovision that keeps failing, through the worker pool', async () => {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const secretKey = 'd'.repeat(40);
  const receiver = await startReceiver();
  const hook = await addWebhook(
    database.db,
    SecretBox.fromConfig({ secretKey, dataDir: '/nonexistent' }),
    tenant.id,
    { url: `${receiver.base}/pager`, events: ['deprovision.failed'], format: 'standard' },
    'test',
    { allowPrivateNetworks: true },
  );
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, active, origin) VALUES (${tenant.id}, 'stuck@example.com', false, 'scim')
    RETURNING id::text`;
  const { log } = capturingLogger('silent');
  // The platform failing every call, as reconcile-guarantees drives it: the job handler throws.
  const worker = await startTestDaemon({
    mode: 'worker',
    config: testConfig(database.url, { sweeperIntervalMs: 0, secretKey, webhookAllowPrivateNetworks: true }),
    log,
    jobHandler: async () => {
      throw new Error('platform said 503');
    },
  });
  afterAll(async () => {
    await worker.stop();
    await receiver.close();
  });

  it('the third failed attempt reaches the pager once, signed', async () => {
    await database.sql`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      VALUES (${tenant.id}, 'deprovision', 'user', ${user!.id}, '{"event":"user.deactivated"}'::jsonb)`;
    await expect.poll(() => receiver.at('/pager').length, { timeout: 20_000 }).toBe(1);
    const message = verified(hook.secret, receiver.at('/pager')[0]!);
    expect(message).toMatchObject({
      type: 'deprovision.failed',
      data: { tenant: 'acme', userId: user!.id, attempts: 3, retrying: true, reason: 'platform said 503' },
    });
  }, 30_000);
});

describe('webhooks: no private receivers unless the operator allows them (SSRF)', async () => {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const secretKey = 'e'.repeat(40);
  const box = SecretBox.fromConfig({ secretKey, dataDir: '/nonexistent' });
  const receiver = await startReceiver();
  const port = new URL(receiver.base).port;
  const { log } = capturingLogger('silent');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { adminToken: ADMIN, secretKey, sweeperIntervalMs: 0 }),
    log,
    webhookBackoffMs: 60_000,
  });
  afterAll(async () => {
    await daemon.stop();
    await receiver.close();
  });

  it('refuses a literal private, loopback or metadata address when the webhook is added', async () => {
    for (const url of [
      `${receiver.base}/x`,
      'http://169.254.169.254/latest/meta-data',
      'http://10.0.0.5/hook',
      'http://[::1]:8080/hook',
      'http://[::ffff:127.0.0.1]/hook',
      'http://100.64.1.1/hook',
    ]) {
      const response = await fetch(`http://127.0.0.1:${daemon.port}/api/tenants/acme/webhooks`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ url, events: ['brake.held'] }),
      });
      expect(response.status, url).toBe(400);
      expect(JSON.stringify(await response.json())).toMatch(/WEBHOOK_ALLOW_PRIVATE_NETWORKS/);
    }
    const refused = await runCli(
      ['webhook', 'add', '--tenant', 'acme', '--url', 'http://127.0.0.1/x', '--events', 'brake.held'],
      { DATABASE_URL: database.url, IDSYNC_SECRET_KEY: secretKey },
    );
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/loopback/);
  });

  it('at delivery, a host resolving to loopback (or a literal one) is never connected to', async () => {
    // Rows as a name that once resolved elsewhere would leave them: the check that counts is at connect.
    for (const path of ['/by-name', '/by-literal']) {
      const host = path === '/by-name' ? 'localhost' : '127.0.0.1';
      await addWebhook(
        database.db,
        box,
        tenant.id,
        { url: `http://${host}:${port}${path}`, events: ['brake.held'], format: 'standard' },
        'test',
        { allowPrivateNetworks: true },
      );
    }
    await notify(database.db, {
      tenantId: tenant.id,
      type: 'brake.held',
      key: 'brake.held:ssrf',
      summary: 'held',
      data: {},
    });
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT a.error FROM webhook_delivery_attempts a
              JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.tenant_id = ${tenant.id}`
          ).map((r) => r.error),
        { timeout: 15_000 },
      )
      .toEqual([
        expect.stringMatching(/^refused: private address/),
        expect.stringMatching(/^refused: private address/),
      ]);
    expect(receiver.received).toHaveLength(0);
  });

  it('tells a tenant only "network error", never the connection error code', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const error = await undiciFetch(`http://127.0.0.1:${closedPort}/`).catch((e: unknown) => e);
    expect(JSON.stringify((error as { cause?: { code?: string } }).cause?.code)).toMatch(/ECONNREFUSED/);
    const shown = coarseNetworkError(error, 1_000);
    expect(shown).toBe('network error: the receiver could not be reached');
    expect(shown).not.toMatch(/ECONN|ENOTFOUND|refused/);
  });
});

describe('webhooks: a delivery that could not even be attempted does not stay pending', async () => {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const receiver = await startReceiver();
  // Added by a process with the key; this worker has none, so it cannot sign: every attempt throws.
  await addWebhook(
    database.db,
    SecretBox.fromConfig({ secretKey: 'w'.repeat(40), dataDir: '/nonexistent' }),
    tenant.id,
    { url: `${receiver.base}/keyless`, events: ['brake.held'], format: 'standard' },
    'test',
    { allowPrivateNetworks: true },
  );
  const { log } = capturingLogger('silent');
  const worker = await startTestDaemon({
    mode: 'worker',
    config: testConfig(database.url, { sweeperIntervalMs: 0, webhookAllowPrivateNetworks: true }),
    log,
    webhookBackoffMs: 5,
  });
  afterAll(async () => {
    await worker.stop();
    await receiver.close();
  });
  const delivery = async () =>
    (
      await database.sql`SELECT d.status, d.attempts, a.error FROM webhook_deliveries d
        LEFT JOIN LATERAL (SELECT error FROM webhook_delivery_attempts WHERE delivery_id = d.id
          ORDER BY attempt DESC LIMIT 1) a ON true
        WHERE d.tenant_id = ${tenant.id}`
    )[0];

  it('is failed with the reason after the last attempt, and a re-queue really runs it again', async () => {
    await notify(database.db, {
      tenantId: tenant.id,
      type: 'brake.held',
      key: 'brake.held:keyless',
      summary: 'held',
      data: {},
    });
    await expect.poll(async () => (await delivery())?.status, { timeout: 20_000 }).toBe('failed');
    expect(await delivery()).toMatchObject({
      attempts: 1,
      error: expect.stringMatching(/IDSYNC_SECRET_KEY/),
    });
    // As if marking it failed had not reached the database: pending, queued long ago, its job kept.
    await database.sql`UPDATE webhook_deliveries SET status = 'pending', finished_at = NULL,
      queued_at = now() - interval '1 hour' WHERE tenant_id = ${tenant.id}`;
    await expect.poll(async () => (await delivery())?.status, { timeout: 20_000 }).toBe('failed');
    expect(await delivery()).toMatchObject({ attempts: 2 });
    expect(receiver.received).toHaveLength(0);
  }, 45_000);
});

describe('webhooks: migration 0022 carries existing endpoints over', async () => {
  const database = await createTestDatabase({ migrated: false });
  const files = readdirSync(MIGRATIONS_FOLDER)
    .filter((f) => f.endsWith('.sql'))
    .sort();
  const apply = async (file: string) => {
    for (const statement of readFileSync(join(MIGRATIONS_FOLDER, file), 'utf8').split(
      '--> statement-breakpoint',
    )) {
      if (statement.trim()) await database.sql.unsafe(statement);
    }
  };

  it('computes url_shown and url_digest as the code does, and the worker seals the URL at start', async () => {
    const before = files.filter((f) => f < '0022');
    for (const file of before) await apply(file);
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const url = 'https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX?x=1';
    await database.sql`INSERT INTO webhook_endpoints (tenant_id, url, events, format, secret_sealed, created_by)
      VALUES (${tenant.id}, ${url}, '{brake.held}', 'slack', 'v1.x.y.z', 'test')`;
    await apply(files.find((f) => f.startsWith('0022_'))!);
    const [row] = await database.sql`SELECT url_sealed, url_shown, url_digest FROM webhook_endpoints`;
    expect(row).toEqual({ url_sealed: `plain:${url}`, url_shown: shownUrl(url), url_digest: urlDigest(url) });
    expect(row!.url_shown).toMatch(/^https:\/\/hooks\.slack\.com\/…#[0-9a-f]{6}$/);
    const box = SecretBox.fromConfig({ secretKey: 'm'.repeat(40), dataDir: '/nonexistent' });
    await sealLegacyUrls(database.db, box, capturingLogger('silent').log);
    const [sealed] = await database.sql`SELECT url_sealed FROM webhook_endpoints`;
    expect(sealed!.url_sealed).toMatch(/^v1\./);
    expect(box.open(sealed!.url_sealed)).toBe(url);
  });
});
