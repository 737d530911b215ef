import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Router } from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { USER } from './support/scim-fixtures.js';

type LogLine = Record<string, any>;
const lines = (output: string): LogLine[] =>
  output
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));

describe('request ids and the request log line on the SCIM edge (info level)', async () => {
  const database = await createTestDatabase();
  const { log, output } = capturingLogger('info');
  const daemon = await startTestDaemon({ mode: 'serve', config: testConfig(database.url), log });
  afterAll(() => daemon.stop());
  const { scimToken } = await createTenant(database.db, 'request-log', 'test');
  const base = `http://127.0.0.1:${daemon.port}/scim/v2`;
  const scim = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${scimToken}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/scim+json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const lineFor = (id: string) =>
    lines(output()).find((line) => line.msg === 'request completed' && line.req?.id === id);

  it('keeps a sane incoming X-Request-Id on a SCIM write, audits under it and logs one line with it', async () => {
    const created = await scim(
      'POST',
      '/Users',
      { schemas: [USER], userName: 'ada.lovelace@example.com', emails: [{ value: 'ada@example.com' }] },
      { 'X-Request-Id': 'okta-req.42' },
    );
    expect(created.status).toBe(201);
    expect(created.headers.get('x-request-id')).toBe('okta-req.42');
    const [audit] = await database.sql<{ correlation_id: string }[]>`
      SELECT correlation_id FROM audit_log WHERE actor = 'scim:request-log' ORDER BY id DESC LIMIT 1`;
    expect(audit?.correlation_id).toBe('okta-req.42');
    await expect.poll(() => lineFor('okta-req.42')).toBeDefined();
    const line = lineFor('okta-req.42')!;
    expect(line).toMatchObject({
      level: 30,
      service: 'idsync',
      req: { id: 'okta-req.42', method: 'POST', path: '/scim/v2/Users' },
      res: { statusCode: 201 },
    });
    expect(Object.keys(line.req).sort()).toEqual(['id', 'method', 'path']);
    expect(typeof line.responseTime).toBe('number');
  });

  it('makes a UUID for a request without one, answers it and logs the same id, with no token or e-mail', async () => {
    const found = await scim(
      'GET',
      `/Users?filter=${encodeURIComponent('userName eq "ada.lovelace@example.com"')}`,
    );
    expect(found.status).toBe(200);
    expect((await found.json()).totalResults).toBe(1);
    const id = found.headers.get('x-request-id')!;
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await expect.poll(() => lineFor(id)).toBeDefined();
    expect(lineFor(id)!.req).toEqual({ id, method: 'GET', path: '/scim/v2/Users' });
    const logged = output();
    expect(logged).not.toContain(scimToken);
    expect(logged).not.toContain(scimToken.slice(-20));
    expect(logged).not.toContain('lovelace');
    expect(logged).not.toContain('ada@example.com');
  });

  it('gives each request its own id, also on a refusal that never reaches a handler', async () => {
    const refused = await fetch(`${base}/Users`, { headers: { Authorization: 'Bearer wrong-token-value' } });
    expect(refused.status).toBe(401);
    const first = refused.headers.get('x-request-id')!;
    const again = await scim('GET', '/Users?count=1');
    expect(again.headers.get('x-request-id')).not.toBe(first);
    await expect.poll(() => lineFor(first)).toBeDefined();
    expect(lineFor(first)!.res).toEqual({ statusCode: 401 });
    expect(output()).not.toContain('wrong-token-value');
  });

  it('refuses a caller without a valid token before reading its body, and points Location at a created user', async () => {
    const stranger = await fetch(`${base}/Users`, {
      method: 'POST',
      headers: { Authorization: 'Bearer not-a-token', 'Content-Type': 'application/scim+json' },
      body: '{"schemas": [',
    });
    expect(stranger.status).toBe(401);
    expect(stranger.headers.get('content-type')).toBe('application/scim+json; charset=utf-8');
    expect((await stranger.json()).detail).toBe('the bearer token is not valid');
    const created = await scim('POST', '/Users', { schemas: [USER], userName: 'location.probe@example.com' });
    const body = await created.json();
    expect(created.status).toBe(201);
    expect(created.headers.get('content-type')).toBe('application/scim+json; charset=utf-8');
    expect(created.headers.get('location')).toBe(body.meta.location);
    expect(body.meta.location).toMatch(new RegExp(`/scim/v2/Users/${body.id}$`));
  });

  it('lets a resource carry its version ETag and answers If-None-Match with 304; lists carry no hash ETag', async () => {
    const created = await scim('POST', '/Users', { schemas: [USER], userName: 'etag.probe@example.com' });
    const { id } = await created.json();
    const fetched = await scim('GET', `/Users/${id}`);
    const etag = fetched.headers.get('etag')!;
    expect(etag).toMatch(/^W\/"\d+"$/);
    // node:http, not fetch: fetch adds Cache-Control: no-cache to a conditional request, which forbids a 304.
    const unchanged = await new Promise<number>((resolve, reject) => {
      http
        .get(
          `${base}/Users/${id}`,
          { headers: { Authorization: `Bearer ${scimToken}`, 'If-None-Match': etag } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        )
        .on('error', reject);
    });
    expect(unchanged).toBe(304);
    const list = await scim('GET', '/Users?count=5');
    expect(list.status).toBe(200);
    expect(list.headers.get('etag')).toBeNull();
  });
});

describe('request logging at warn, as in production', async () => {
  const { log, output } = capturingLogger('warn');
  const failing = Router();
  failing.get('/ok', (_req, res) => {
    res.json({ ok: true });
  });
  failing.get('/warns', (req, res) => {
    req.log.warn({ reason: 'probe' }, 'a handler warning');
    res.json({ ok: true });
  });
  failing.get('/boom', () => {
    throw new Error('handler failed');
  });
  let entered: () => void = () => {};
  let finish: () => void = () => {};
  failing.get('/slow', async (_req, res) => {
    await new Promise<void>((resolve) => {
      finish = resolve;
      entered();
    });
    res.json({ ok: true });
  });
  const app = createApp({ log, readiness: [], mounts: [{ path: '/probe', router: failing }] });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  afterAll(() => new Promise((resolve) => server.close(resolve)));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/probe`;

  it('writes no line for a successful request, yet still answers with a request id', async () => {
    const response = await fetch(`${base}/ok`, { headers: { 'X-Request-Id': 'quiet-1' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toBe('quiet-1');
    await fetch(`${base}/boom`, { headers: { 'X-Request-Id': 'after-quiet-1' } });
    await expect.poll(() => output()).toContain('after-quiet-1');
    expect(output()).not.toContain('"quiet-1"');
  });

  it('binds the request to what a handler logs through req.log', async () => {
    await fetch(`${base}/warns`, { headers: { 'X-Request-Id': 'warns-1' } });
    await expect.poll(() => lines(output()).find((l) => l.msg === 'a handler warning')).toBeDefined();
    const warning = lines(output()).find((l) => l.msg === 'a handler warning')!;
    expect(warning).toMatchObject({
      level: 40,
      reason: 'probe',
      req: { id: 'warns-1', path: '/probe/warns' },
    });
  });

  it('logs a 5xx: the cause through req.log and the request line at error, both with the id', async () => {
    const response = await fetch(`${base}/boom`, { headers: { 'X-Request-Id': 'boom-1' } });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({
      error: {
        code: 'internal_error',
        message: 'internal error; quote the X-Request-Id response header',
        requestId: 'boom-1',
      },
    });
    const forRequest = () => lines(output()).filter((l) => l.req?.id === 'boom-1');
    await expect.poll(() => forRequest().length).toBe(2);
    const [cause, line] = forRequest();
    expect(cause).toMatchObject({ level: 50, msg: 'request failed', err: { message: 'handler failed' } });
    expect(line).toMatchObject({
      level: 50,
      msg: 'request errored',
      req: { id: 'boom-1', method: 'GET', path: '/probe/boom' },
      res: { statusCode: 500 },
      err: { message: 'failed with status code 500' },
    });
  });

  it('logs a request the client gave up on before the answer as aborted, at error, with its id', async () => {
    const inHandler = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const client = new AbortController();
    const request = fetch(`${base}/slow`, {
      headers: { 'X-Request-Id': 'gave-up-1' },
      signal: client.signal,
    }).catch((error: Error) => error.name);
    await inHandler;
    client.abort();
    expect(await request).toBe('AbortError');
    const forRequest = () => lines(output()).filter((l) => l.req?.id === 'gave-up-1');
    await expect.poll(() => forRequest().length).toBe(1);
    expect(forRequest()[0]).toMatchObject({
      level: 50,
      msg: 'request aborted',
      req: { id: 'gave-up-1', method: 'GET', path: '/probe/slow' },
    });
    finish();
  });
});
