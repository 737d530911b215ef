import { afterAll, describe, expect, it } from 'vitest';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

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
