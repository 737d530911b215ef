import { randomBytes } from 'node:crypto';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { createApp } from '../src/http/app.js';
import { listen } from '../src/http/server.js';
import { createRedisConnection } from '../src/jobs/connection.js';
import { closeQueues, openQueues, queueName } from '../src/jobs/queues.js';
import { startWorkerPool } from '../src/jobs/workers.js';
import { metricsRouter } from '../src/metrics/endpoint.js';
import { attachSharedState, OUTBOX_BACKLOG_SQL } from '../src/metrics/shared-state.js';
import { RateBudget } from '../src/platform/heroku/budget.js';
import { HerokuClient } from '../src/platform/heroku/client.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { exampleOf } from './support/heroku-schema.js';
import { capturingLogger } from './support/log-capture.js';
import { GROUP, patch, USER } from './support/scim-fixtures.js';
import { startSsoTest } from './support/sso-setup.js';

const METRICS_TOKEN = randomBytes(24).toString('hex');
const ADMIN_TOKEN = randomBytes(24).toString('hex');

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition format, enough of it for these tests: one sample per line. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of a metric's samples whose labels include `labels`. */
function sampled(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

describe('Prometheus metrics on the API and worker health ports', async () => {
  const config = { adminToken: ADMIN_TOKEN, metricsToken: METRICS_TOKEN };
  // The API alone first (serve mode: no relay), so outbox rows stay pending until the worker starts.
  const {
    database,
    tenant,
    scimToken,
    port,
    publicUrl,
    daemon: api,
    browser,
    createIdp,
    trust,
  } = await startSsoTest({ mode: 'serve', logLevel: 'silent', config });
  const { log } = capturingLogger('silent');
  let worker: Awaited<ReturnType<typeof startTestDaemon>> | undefined;
  afterAll(() => worker?.stop());

  const scrapeUrl = (p: number) => `http://127.0.0.1:${p}/metrics`;
  const scrape = async (p: number) => {
    const response = await fetch(scrapeUrl(p), { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    return response.text();
  };
  const samplesAt = async (p: number) => parseExposition(await scrape(p));
  const scim = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${publicUrl}/scim/v2${path}`, {
      method,
      headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (response.status === 204 ? {} : await response.json()) as any };
  };
  const userNames = ['metrics-ada@example.com', 'metrics-leaver@example.com', 'sso-off@example.com'];

  it('refuses a scrape without the metrics token, with a wrong one, and with an admin token', async () => {
    for (const headers of [
      {} as Record<string, string>,
      { Authorization: `Bearer ${randomBytes(24).toString('hex')}` },
      { Authorization: `Bearer ${ADMIN_TOKEN}` },
    ]) {
      const response = await fetch(scrapeUrl(port), { headers });
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toContain('idsync metrics');
      expect(((await response.json()) as any).error.message).toContain('METRICS_TOKEN');
    }
  });

  it('refuses every scrape when no token is configured, and opens only when METRICS_OPEN says so', async () => {
    const serve = async (access: { metricsToken: string | undefined; metricsOpen: boolean }) => {
      const app = createApp({ log, readiness: [], mounts: [{ path: '/', router: metricsRouter(access) }] });
      const server = await listen(app, 0, '127.0.0.1');
      try {
        return await fetch(scrapeUrl(server.port));
      } finally {
        await server.close(1_000);
      }
    };
    const closed = await serve({ metricsToken: undefined, metricsOpen: false });
    expect(closed.status).toBe(403);
    expect(((await closed.json()) as any).error.message).toContain('set METRICS_TOKEN');
    const open = await serve({ metricsToken: undefined, metricsOpen: true });
    expect(open.status).toBe(200);
    expect(await open.text()).toContain('idsync_scim_requests_total');
  });

  it('counts and times SCIM requests by resource, method and status, and shows the pending outbox', async () => {
    const before = await samplesAt(port);
    const created = await scim('POST', '/Users', { schemas: [USER], userName: userNames[0], active: true });
    expect(created.status).toBe(201);
    expect((await scim('GET', `/Users/${created.body.id}`)).status).toBe(200);
    expect((await scim('GET', '/Users/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    const after = await samplesAt(port);
    const delta = (labels: Record<string, string>) =>
      sampled(after, 'idsync_scim_requests_total', labels) -
      sampled(before, 'idsync_scim_requests_total', labels);
    expect(delta({ resource: 'Users', method: 'POST', status: '201' })).toBe(1);
    expect(delta({ resource: 'Users', method: 'GET', status: '200' })).toBe(1);
    expect(delta({ resource: 'Users', method: 'GET', status: '404' })).toBe(1);
    expect(
      sampled(after, 'idsync_scim_request_duration_seconds_count', { resource: 'Users', method: 'POST' }) -
        sampled(before, 'idsync_scim_request_duration_seconds_count', { resource: 'Users', method: 'POST' }),
    ).toBe(1);
    // No worker yet: the user's outbox row waits, and its age is the relay lag.
    const [pending] = await database.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM outbox WHERE relayed_at IS NULL`;
    expect(pending!.n).toBeGreaterThan(0);
    expect(sampled(after, 'idsync_outbox_pending_rows')).toBe(pending!.n);
    expect(sampled(after, 'idsync_outbox_relay_lag_seconds')).toBeGreaterThan(0);
  });

  it('counts SSO logins by outcome and a refused login by its reason', async () => {
    const idp = await createIdp();
    await trust(idp);
    await database.sql`INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, ${userNames[2]!}, 'scim', false)`;
    const { requestId, post } = browser;
    const before = await samplesAt(port);
    expect(
      (await post(await idp.respond({ nameId: userNames[2]!, inResponseTo: await requestId() }))).status,
    ).toBe(403);
    const accepted = await idp.respond({
      nameId: 'metrics-sso@example.com',
      inResponseTo: await requestId(),
    });
    expect((await post(accepted)).status).toBe(303);
    expect((await post(accepted)).status).toBe(403);
    const after = await samplesAt(port);
    const delta = (labels: Record<string, string>) =>
      sampled(after, 'idsync_sso_logins_total', labels) - sampled(before, 'idsync_sso_logins_total', labels);
    expect(delta({ outcome: 'refused', reason: 'user-deactivated' })).toBe(1);
    expect(delta({ outcome: 'accepted', reason: 'none' })).toBe(1);
    expect(delta({ outcome: 'refused' })).toBe(2);
    userNames.push('metrics-sso@example.com');
  });

  it('on the worker health port: relay drains the outbox, jobs are timed per lane, reconcile operations and offboarding time to effect are recorded', async () => {
    worker = await startTestDaemon({
      mode: 'worker',
      config: testConfig(database.url, { port, publicUrl, ...config, workerHealthPort: 0 }),
      log,
    });
    const health = worker.workerHealthPort!;
    const unauthenticated = await fetch(scrapeUrl(health));
    expect(unauthenticated.status).toBe(401);

    await expect
      .poll(async () => sampled(await samplesAt(health), 'idsync_outbox_pending_rows'), { timeout: 10_000 })
      .toBe(0);
    const idle = await samplesAt(health);
    for (const lane of ['deprovision', 'reconcile', 'scan'])
      expect(idle.some((s) => s.name === 'idsync_queue_jobs' && s.labels.lane === lane)).toBe(true);
    expect(sampled(idle, 'idsync_outbox_relay_lag_seconds')).toBe(0);

    const rule = await fetch(`${publicUrl}/api/tenants/acme/rules`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' }),
    });
    expect(rule.status).toBe(201);
    const before = await samplesAt(health);
    const leaver = await scim('POST', '/Users', { schemas: [USER], userName: userNames[1], active: true });
    expect(
      (
        await scim('POST', '/Groups', {
          schemas: [GROUP],
          displayName: 'Engineering',
          members: [{ value: leaver.body.id }],
        })
      ).status,
    ).toBe(201);
    const ops = (samples: Sample[], labels: Record<string, string>) =>
      sampled(samples, 'idsync_reconcile_operations_total', labels) -
      sampled(before, 'idsync_reconcile_operations_total', labels);
    await expect
      .poll(async () => ops(await samplesAt(health), { kind: 'add-team-member', outcome: 'applied' }), {
        timeout: 10_000,
      })
      .toBe(1);

    expect(
      (await scim('PATCH', `/Users/${leaver.body.id}`, patch([{ op: 'replace', value: { active: false } }])))
        .status,
    ).toBe(200);
    const ttfCount = (samples: Sample[]) =>
      sampled(samples, 'idsync_offboarding_time_to_effect_seconds_count') -
      sampled(before, 'idsync_offboarding_time_to_effect_seconds_count');
    await expect.poll(async () => ttfCount(await samplesAt(health)), { timeout: 10_000 }).toBe(1);
    const after = await samplesAt(health);
    expect(ops(after, { kind: 'remove-team-member', outcome: 'applied' })).toBe(1);
    // The histogram's sum is the receipt's own time to effect.
    const receipt = await fetch(`${publicUrl}/api/tenants/acme/users/${leaver.body.id}/receipt`, {
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const { timeToEffectMs } = (await receipt.json()) as { timeToEffectMs: number };
    const observed =
      sampled(after, 'idsync_offboarding_time_to_effect_seconds_sum') -
      sampled(before, 'idsync_offboarding_time_to_effect_seconds_sum');
    expect(observed).toBeCloseTo(timeToEffectMs / 1000, 2);
    expect(
      sampled(after, 'idsync_job_duration_seconds_count', { lane: 'deprovision', result: 'completed' }) -
        sampled(before, 'idsync_job_duration_seconds_count', { lane: 'deprovision', result: 'completed' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('counts failed job attempts and shows a stopped platform credential', async () => {
    const { tenant: stopped } = await createTenant(database.db, 'stopped-co', 'test');
    await database.sql`
      UPDATE tenants SET connector = 'heroku', connector_status = 'stopped', connector_status_reason = 'refused (401)'
      WHERE id = ${stopped.id}`;
    const before = await samplesAt(worker!.workerHealthPort!);
    expect(sampled(before, 'idsync_platform_credentials_stopped')).toBe(1);
    expect(sampled(await samplesAt(port), 'idsync_platform_credentials_stopped')).toBe(1);
    await database.sql`
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      VALUES (${stopped.id}, 'reconcile', 'user', '00000000-0000-4000-8000-000000000001', '{}')`;
    await expect
      .poll(
        async () =>
          sampled(await samplesAt(worker!.workerHealthPort!), 'idsync_jobs_failed_total', {
            lane: 'reconcile',
            final: 'false',
          }) - sampled(before, 'idsync_jobs_failed_total', { lane: 'reconcile', final: 'false' }),
        { timeout: 10_000 },
      )
      .toBeGreaterThanOrEqual(1);
  });

  it('shows the latest drift report by class and severity, and mass changes held for approval', async () => {
    // An Enterprise Account member the IdP never pushed: the scan files a finding for it.
    await database.sql`
      INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
      VALUES (${tenant.id}, 'stranger@example.com', '{view}')`;
    userNames.push('stranger@example.com');
    await database.sql`
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      VALUES (${tenant.id}, 'scan', 'tenant', ${tenant.id}, '{"event":"test"}')`;
    await expect
      .poll(
        async () => (await database.sql`SELECT 1 FROM drift_reports WHERE tenant_id = ${tenant.id}`).length,
        { timeout: 15_000 },
      )
      .toBe(1);
    const expected = await database.sql<{ class: string; severity: string; n: number }[]>`
      SELECT f.class, f.severity, count(*)::int AS n FROM drift_findings f
      JOIN drift_reports r ON r.id = f.report_id WHERE r.tenant_id = ${tenant.id} GROUP BY 1, 2`;
    expect(expected.length).toBeGreaterThan(0);
    const samples = await samplesAt(port);
    for (const row of expected)
      expect(
        sampled(samples, 'idsync_drift_findings_open', { class: row.class, severity: row.severity }),
      ).toBe(row.n);

    expect(sampled(samples, 'idsync_brake_holds_pending')).toBe(0);
    await database.sql`
      INSERT INTO held_changes (id, tenant_id, event, affected_users, enterprise_size)
      VALUES ('scim-req-1', ${tenant.id}, 'group.deleted', 12, 40)`;
    expect(sampled(await samplesAt(port), 'idsync_brake_holds_pending')).toBe(1);
  });

  it("counts the platform's 429s and reports the budget it last announced", async () => {
    const redis = new Redis(inject('redisUrl'));
    const apiUrl = 'https://api.heroku.test';
    const client = new HerokuClient({
      apiUrl,
      token: `HRKU-${randomBytes(16).toString('hex')}`,
      budget: new RateBudget(redis, uniquePrefix('metrics-budget'), { refillPerMinute: 600_000, reserve: 0 }),
      priority: 'reconcile',
      log,
    });
    const before = await samplesAt(port);
    // The bucket's size is learnt from a first answer; then Heroku refuses one request and lets the next.
    nock(apiUrl)
      .get('/account')
      .reply(200, exampleOf('account'), { 'RateLimit-Remaining': '4500' })
      .get('/account')
      .reply(
        429,
        { id: 'rate_limit', message: 'Your account reached the API rate limit' },
        {
          'RateLimit-Remaining': '0',
        },
      )
      .get('/account')
      .reply(200, exampleOf('account'), { 'RateLimit-Remaining': '4321' });
    try {
      expect((await client.request('GET', '/account')).status).toBe(200);
      expect((await client.request('GET', '/account')).status).toBe(200);
    } finally {
      nock.cleanAll();
      redis.disconnect();
    }
    const after = await samplesAt(port);
    expect(
      sampled(after, 'idsync_platform_rate_limited_total', { platform: 'heroku' }) -
        sampled(before, 'idsync_platform_rate_limited_total', { platform: 'heroku' }),
    ).toBe(1);
    expect(sampled(after, 'idsync_platform_rate_budget_remaining', { platform: 'heroku' })).toBe(4321);
  });

  it('still answers a scrape when the database does not, and says the shared gauges are stale', async () => {
    expect(sampled(await samplesAt(port), 'idsync_shared_state_read_ok')).toBe(1);
    const unreachable = connectDatabase('postgres://idsync@127.0.0.1:1/idsync', {
      max: 1,
      connectTimeoutMs: 500,
    });
    const detach = attachSharedState({ sql: unreachable.sql, queues: api.resources.queues });
    try {
      const samples = await samplesAt(port);
      expect(sampled(samples, 'idsync_shared_state_read_ok')).toBe(0);
      expect(samples.some((s) => s.name === 'idsync_scim_requests_total')).toBe(true);
    } finally {
      detach();
      await unreachable.close(1_000);
    }
    expect(sampled(await samplesAt(port), 'idsync_shared_state_read_ok')).toBe(1);
  });

  it('reads the outbox backlog from the index of unrelayed rows, not by scanning the relayed history', async () => {
    const scratch = await createTestDatabase();
    const { tenant: other } = await createTenant(scratch.db, 'history', 'test');
    await scratch.sql`
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, relayed_at)
      SELECT ${other.id}, 'reconcile', 'user', 'u' || n, CASE WHEN n % 10000 = 0 THEN NULL ELSE now() END
      FROM generate_series(1, 50000) n`;
    await scratch.sql`ANALYZE outbox`;
    const [plan] = await scratch.sql.unsafe(`EXPLAIN (FORMAT JSON) ${OUTBOX_BACKLOG_SQL}`);
    const text = JSON.stringify(plan);
    expect(text).toContain('outbox_pending_idx');
    expect(text).not.toContain('"Seq Scan"');
  });

  it('exports default process metrics, and no label value names a user', async () => {
    const texts = [await scrape(port), await scrape(worker!.workerHealthPort!)];
    for (const text of texts) {
      const samples = parseExposition(text);
      expect(samples.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true);
      expect(samples.some((s) => s.name === 'nodejs_heap_size_used_bytes')).toBe(true);
      const labelValues = samples.flatMap((s) => Object.values(s.labels));
      expect(labelValues.filter((v) => v.includes('@'))).toEqual([]);
      for (const name of userNames) expect(text.toLowerCase()).not.toContain(name.split('@')[0]);
      expect(text).not.toContain(tenant.id);
      expect(text).not.toContain('acme');
    }
  });
});

describe('stalled jobs', () => {
  it('counts a job whose worker stopped renewing its lock, per lane', async () => {
    const { log } = capturingLogger('silent');
    const redisUrl = inject('redisUrl');
    const prefix = uniquePrefix('metrics-stalled');
    const app = createApp({
      log,
      readiness: [],
      mounts: [{ path: '/', router: metricsRouter({ metricsToken: undefined, metricsOpen: true }) }],
    });
    const server = await listen(app, 0, '127.0.0.1');
    const stalled = async () =>
      sampled(
        parseExposition(await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()),
        'idsync_jobs_stalled_total',
        { lane: 'reconcile' },
      );
    const connection = createRedisConnection(redisUrl, 'producer');
    const queues = openQueues(connection, prefix);
    // A worker that takes a job and then goes silent, as a frozen process would: it never renews the lock.
    const frozen = new Worker(queueName('reconcile'), null, {
      connection: createRedisConnection(redisUrl, 'worker'),
      prefix,
      lockDuration: 500,
    });
    const done: string[] = [];
    try {
      const before = await stalled();
      await queues.reconcile.add('user', { tenantId: 't', subjectType: 'user', subjectId: 'frozen' });
      expect((await frozen.getNextJob('frozen-token'))?.data.subjectId).toBe('frozen');
      const rescuer = await startWorkerPool({
        redisUrl,
        prefix,
        log,
        concurrency: 1,
        lockMs: 500,
        handler: async (payload) => {
          done.push(payload.subjectId);
        },
      });
      try {
        await expect.poll(() => done, { timeout: 15_000 }).toEqual(['frozen']);
        expect((await stalled()) - before).toBe(1);
      } finally {
        await rescuer.close();
      }
    } finally {
      await frozen.close(true);
      await closeQueues(queues);
      connection.disconnect();
      await server.close(1_000);
    }
  });
});
