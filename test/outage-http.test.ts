import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { startEmbeddedPostgres } from '../src/runtime/embedded-postgres.js';
import type { LocalServer } from '../src/runtime/processes.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';
import { USER } from './support/scim-fixtures.js';
import { startStoppableRedis } from './support/stoppable-redis.js';

const SCIM_ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';

describe('SCIM while PostgreSQL is down', () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-pg-outage-'));
  chmodSync(scratch, 0o755);
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('answers 503 with Retry-After in SCIM error JSON within the database timeout, and serves again once it is back', async () => {
    const pgOptions = {
      directory: path.join(scratch, 'pg'),
      port: await freePort(),
      database: 'idsync',
      role: 'owner' as const,
      settings: { fsync: 'off', synchronous_commit: 'off' },
    };
    let postgres: LocalServer = await startEmbeddedPostgres(pgOptions);
    await runMigrations(postgres.url);
    const setup = connectDatabase(postgres.url, { max: 1 });
    const { scimToken } = await createTenant(setup.db, 'acme', 'test');
    await setup.close();
    const { log, output } = capturingLogger('warn');
    const daemon = await startTestDaemon({
      mode: 'serve',
      config: testConfig(postgres.url, { databaseTimeoutMs: 2_000 }),
      log,
    });
    const base = `http://127.0.0.1:${daemon.port}`;
    const scim = (method: string, resource: string, body?: unknown) =>
      fetch(`${base}/scim/v2${resource}`, {
        method,
        headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    try {
      expect((await scim('GET', '/Users')).status).toBe(200);
      await postgres.stop();

      for (const [method, resource, body] of [
        ['GET', '/Users?filter=userName%20eq%20%22ada%40example.com%22', undefined],
        ['POST', '/Users', { schemas: [USER], userName: 'ada@example.com', active: true }],
      ] as const) {
        const started = Date.now();
        const response = await scim(method, resource, body);
        const elapsed = Date.now() - started;
        expect(response.status).toBe(503);
        expect(response.headers.get('retry-after')).toBe('5');
        expect(response.headers.get('content-type')).toContain('application/scim+json');
        expect(await response.json()).toEqual({
          schemas: [SCIM_ERROR],
          status: '503',
          detail: 'the database is unavailable; retry after 5 seconds',
        });
        // The configured timeout plus slack for a loaded 2-core machine; the old behaviour took up to 17 s.
        expect(elapsed).toBeLessThan(2_000 + 1_500);
      }
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { status: string }).status).toBe('not ready');
      expect(output()).not.toContain('ada@example.com');

      postgres = await startEmbeddedPostgres(pgOptions);
      await expect
        .poll(
          async () => (await scim('POST', '/Users', { schemas: [USER], userName: 'ada@example.com' })).status,
          {
            timeout: 20_000,
            interval: 250,
          },
        )
        .toBe(201);
      // Reads come back too: the lookup runs on the second, pipelined pool, which reconnects by itself.
      await expect
        .poll(
          async () => {
            const response = await scim('GET', '/Users?filter=userName%20eq%20%22ada%40example.com%22');
            return response.status === 200
              ? ((await response.json()) as { totalResults: number }).totalResults
              : response.status;
          },
          { timeout: 20_000, interval: 250 },
        )
        .toBe(1);
    } finally {
      await daemon.stop();
      await postgres.stop();
    }
    // Two starts of a PostgreSQL of its own (initdb, then a restart) and migrations: well past the
    // default 30 s on a loaded machine.
  }, 120_000);
});

describe('readiness when only Redis is down', () => {
  it('says degraded (200, naming Redis) while SCIM keeps accepting writes into the outbox', async () => {
    const database = await createTestDatabase();
    const { scimToken } = await createTenant(database.db, 'acme', 'test');
    const redis = await startStoppableRedis();
    const { log } = capturingLogger('silent');
    const daemon = await startTestDaemon({
      mode: 'serve',
      config: testConfig(database.url, { redisUrl: redis.url }),
      log,
    });
    try {
      const base = `http://127.0.0.1:${daemon.port}`;
      expect(await (await fetch(`${base}/readyz`)).json()).toEqual({
        status: 'ready',
        checks: { postgres: 'ok', redis: 'ok' },
      });
      await redis.stop();
      const degraded = await fetch(`${base}/readyz`);
      expect(degraded.status).toBe(200);
      const body = (await degraded.json()) as { status: string; checks: Record<string, string> };
      expect(body.status).toBe('degraded');
      expect(body.checks.postgres).toBe('ok');
      expect(body.checks.redis).not.toBe('ok');

      const created = await fetch(`${base}/scim/v2/Users`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
        body: JSON.stringify({ schemas: [USER], userName: 'grace@example.com' }),
      });
      expect(created.status).toBe(201);
      const [pending] = await database.sql`SELECT count(*)::int AS n FROM outbox WHERE relayed_at IS NULL`;
      expect(pending!.n).toBeGreaterThan(0);

      await redis.start();
      await expect
        .poll(async () => ((await (await fetch(`${base}/readyz`)).json()) as { status: string }).status, {
          timeout: 10_000,
        })
        .toBe('ready');
    } finally {
      await daemon.stop();
      await redis.dispose();
    }
  });
});
