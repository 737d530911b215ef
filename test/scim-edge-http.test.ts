import http from 'node:http';
import net from 'node:net';
import { Router } from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import { createHttpListener } from '../src/http/app.js';
import { listen } from '../src/http/server.js';
import { scimRequests } from '../src/metrics/registry.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { USER } from './support/scim-fixtures.js';

/*
 * The SCIM edge is served on Node's own request and response, without Express's app layer
 * (createHttpListener). These pin what Express used to give it and must still hold.
 */

/** node:http, not fetch: fetch cannot send HEAD with a body check, and adds headers of its own. */
function raw(url: string, options: http.RequestOptions) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      http
        .request(url, options, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString(),
            }),
          );
        })
        .on('error', reject)
        .end();
    },
  );
}

describe('the SCIM edge without Express', async () => {
  const database = await createTestDatabase();
  const { log } = capturingLogger('warn');
  const daemon = await startTestDaemon({ mode: 'serve', config: testConfig(database.url), log });
  afterAll(() => daemon.stop());
  const { scimToken } = await createTenant(database.db, 'edge-http', 'test');
  const origin = `http://127.0.0.1:${daemon.port}`;
  const auth = { Authorization: `Bearer ${scimToken}` };

  it('routes the mount and the resource names case-insensitively, with or without a trailing slash', async () => {
    const created = await fetch(`${origin}/scim/v2/Users`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/scim+json' },
      body: JSON.stringify({ schemas: [USER], userName: 'edge.case@example.com' }),
    });
    expect(created.status).toBe(201);
    for (const path of [
      '/SCIM/V2/users',
      '/scim/v2/Users/',
      '/Scim/v2/USERS?filter=userName%20eq%20%22edge.case@example.com%22',
    ]) {
      const response = await fetch(`${origin}${path}`, { headers: auth });
      expect(response.status, path).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/scim+json; charset=utf-8');
      expect(((await response.json()) as { totalResults: number }).totalResults).toBe(1);
    }
  });

  it('answers HEAD with the GET headers, a Content-Length and no body', async () => {
    const get = await raw(`${origin}/scim/v2/Users?count=1`, { headers: auth });
    const head = await raw(`${origin}/scim/v2/Users?count=1`, { method: 'HEAD', headers: auth });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(get.body)));
    expect(head.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('gives every answer a Content-Length, errors included, and keeps keep-alive working across them', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers = [
        await raw(`${origin}/scim/v2/Users/not-a-uuid`, { headers: auth, agent }),
        await raw(`${origin}/scim/v2/Nope`, { headers: auth, agent }),
        await raw(`${origin}/scim/v2/Users`, { headers: { Authorization: 'Bearer nope' }, agent }),
        await raw(`${origin}/scim/v2/ServiceProviderConfig`, { headers: auth, agent }),
      ];
      expect(answers.map((a) => a.status)).toEqual([404, 404, 401, 200]);
      for (const answer of answers) {
        expect(answer.headers['content-length']).toBe(String(Buffer.byteLength(answer.body)));
        expect(answer.headers['content-type']).toBe('application/scim+json; charset=utf-8');
        JSON.parse(answer.body);
      }
      expect(JSON.parse(answers[1]!.body).detail).toBe('no SCIM endpoint GET /Nope');
    } finally {
      agent.destroy();
    }
  });

  it('takes an absolute-form target (RFC 9112 §3.2.2) as its path: metric labels and 404 text as for a path', async () => {
    const send = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(daemon.port!, '127.0.0.1', () =>
          socket.write(
            `GET ${origin}/scim/v2${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${scimToken}\r\nConnection: close\r\n\r\n`,
          ),
        );
        let data = '';
        socket.on('data', (chunk) => {
          data += chunk;
        });
        socket.on('error', reject);
        socket.on('close', () => resolve(data));
      });
    const usersCounted = async () =>
      (await scimRequests.get()).values
        .filter((v) => v.labels.resource === 'Groups' && v.labels.status === '200')
        .reduce((sum, v) => sum + v.value, 0);
    const before = await usersCounted();
    expect(await send('/Groups?count=1')).toMatch(/^HTTP\/1.1 200/);
    expect(await usersCounted()).toBe(before + 1);
    expect(await send('/Nope')).toContain('"detail":"no SCIM endpoint GET /Nope"');
  });

  it('leaves every other path to the Express app and its JSON errors', async () => {
    expect((await fetch(`${origin}/healthz`)).status).toBe(200);
    const outside = await fetch(`${origin}/scimv2/Users`, { headers: auth });
    expect(outside.status).toBe(404);
    expect(((await outside.json()) as { error: { message: string } }).error.message).toContain(
      'no route for GET /scimv2/Users',
    );
  });
});

describe('createHttpListener', () => {
  it('answers 500, and logs, when an edge served without Express lets an error escape', async () => {
    const { log, output } = capturingLogger('error');
    const broken = Router();
    broken.get('/boom', () => {
      throw new Error('escaped the edge');
    });
    const server = await listen(
      createHttpListener({
        log,
        readiness: [],
        mounts: [{ path: '/edge', router: broken, withoutExpress: true }],
      }),
      0,
      '127.0.0.1',
    );
    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/edge/boom`);
      expect(response.status).toBe(500);
      expect(output()).toContain('request failed outside its edge');
      expect(output()).toContain('escaped the edge');
      // The app behind it still answers.
      expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
    } finally {
      await server.close(1_000);
    }
  });
});
