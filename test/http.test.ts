import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedRedis } from '../src/runtime/embedded-redis.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';

describe('health, readiness and request ids', async () => {
  const database = await createTestDatabase();
  const { log, output } = capturingLogger();
  const daemon = await startTestDaemon({ mode: 'serve', config: testConfig(database.url), log });
  afterAll(() => daemon.stop());
  const base = `http://127.0.0.1:${daemon.port}`;

  it('answers /healthz while the process is alive', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers /readyz 200 when PostgreSQL, the migrations and Redis are all there', async () => {
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: { postgres: 'ok', redis: 'ok' } });
  });

  it('gives every response a request id, keeping a sane incoming one', async () => {
    const mine = await fetch(`${base}/healthz`, { headers: { 'X-Request-Id': 'proxy-abc.123' } });
    expect(mine.headers.get('x-request-id')).toBe('proxy-abc.123');
    const hostile = await fetch(`${base}/healthz`, { headers: { 'X-Request-Id': 'x'.repeat(500) } });
    expect(hostile.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers unknown routes with JSON naming the route and logs the request id', async () => {
    const res = await fetch(`${base}/nope`, { headers: { 'X-Request-Id': 'req-404-check' } });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: 'not_found', message: 'no route for GET /nope' } });
    expect(output()).toContain('"id":"req-404-check"');
  });

  it('never writes a bearer token, a cookie or a query string to the log', async () => {
    await fetch(`${base}/scim/v2/Users?filter=userName%20eq%20%22secret-query%22`, {
      headers: {
        Authorization: 'Bearer scim_0123456789abcdef_THIS-IS-A-SECRET-THAT-MUST-NOT-BE-LOGGED-00',
        Cookie: 'idsync_session=COOKIE-SECRET',
      },
    });
    const logged = output();
    expect(logged).toContain('/scim/v2/Users');
    expect(logged).not.toContain('THIS-IS-A-SECRET');
    expect(logged).not.toContain('COOKIE-SECRET');
    expect(logged).not.toContain('secret-query');
  });
});

describe('readiness when Redis goes away', () => {
  it('answers 503 naming Redis while it is stopped, and 200 again once it is back', async () => {
    const database = await createTestDatabase();
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-redis-'));
    const port = await freePort();
    const redisOptions = { directory: scratch, port, role: 'owner' as const, persistent: false };
    let redis = await startEmbeddedRedis(redisOptions);
    const { log } = capturingLogger('silent');
    const daemon = await startTestDaemon({
      mode: 'serve',
      config: testConfig(database.url, { redisUrl: redis.url }),
      log,
    });
    try {
      const base = `http://127.0.0.1:${daemon.port}`;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      await redis.stop();
      const down = await fetch(`${base}/readyz`);
      expect(down.status).toBe(503);
      const body = (await down.json()) as { checks: Record<string, string> };
      expect(body.checks.postgres).toBe('ok');
      expect(body.checks.redis).not.toBe('ok');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      redis = await startEmbeddedRedis(redisOptions);
      await expect
        .poll(async () => JSON.stringify(await (await fetch(`${base}/readyz`)).json()), { timeout: 10_000 })
        .toContain('"ready"');
    } finally {
      await daemon.stop();
      await redis.stop();
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
