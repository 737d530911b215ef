import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startEmbeddedRedis } from '../src/runtime/embedded-redis.js';
import { createTenant } from '../src/tenants/tenants.js';
import { spawnCli } from './support/cli.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, type TestDatabase, uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';

const { log } = capturingLogger('silent');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A user in `teams` teams and `apps` apps on the built-in platform, with `tokens` live tokens. */
async function seedUser(
  database: TestDatabase,
  tenantId: string,
  userName: string,
  teams: number,
  apps: number,
  tokens: number,
) {
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenantId}, ${userName}, 'scim') RETURNING id::text`;
  const account = userName.toLowerCase();
  await database.sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions) VALUES (${tenantId}, ${account}, '{view}')`;
  await database.sql`
    WITH t AS (INSERT INTO teams (tenant_id, name) SELECT ${tenantId}, ${userName} || '-team-' || n FROM generate_series(1, ${teams}) n RETURNING id)
    INSERT INTO platform_team_members (tenant_id, team_id, account, role) SELECT ${tenantId}, t.id, ${account}, 'member' FROM t`;
  await database.sql`
    WITH a AS (INSERT INTO apps (tenant_id, name) SELECT ${tenantId}, ${userName} || '-app-' || n FROM generate_series(1, ${apps}) n RETURNING id)
    INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions) SELECT ${tenantId}, a.id, ${account}, '{deploy}' FROM a`;
  await database.sql`
    INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash)
    SELECT ${tenantId}, ${user!.id}, 'api', md5(random()::text), 'h' FROM generate_series(1, ${tokens})`;
  return user!.id as string;
}

/** Deactivates through the same path SCIM takes: the change and its outbox row in one transaction. */
async function deactivate(database: TestDatabase, tenantId: string, userId: string, copies = 1) {
  await database.sql.begin(async (tx) => {
    await tx`UPDATE users SET active = false, version = version + 1 WHERE id = ${userId}`;
    for (let i = 0; i < copies; i++) {
      await tx`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
        VALUES (${tenantId}, 'deprovision', 'user', ${userId}, ${JSON.stringify({ event: 'user.deactivated', at: new Date().toISOString() })}::jsonb)`;
    }
  });
}

async function remainingEdges(database: TestDatabase, account: string) {
  const [row] = await database.sql`
    SELECT (SELECT count(*) FROM platform_enterprise_members WHERE account = ${account})
         + (SELECT count(*) FROM platform_team_members WHERE account = ${account})
         + (SELECT count(*) FROM platform_app_collaborators WHERE account = ${account}) AS n`;
  return Number(row!.n);
}

/** Every applied platform operation for a user, with how many times it was applied. */
async function appliedTwice(database: TestDatabase, userId: string) {
  return database.sql`
    SELECT after::text AS operation, count(*)::int AS times FROM audit_log
    WHERE subject_id = ${userId} AND action LIKE 'platform.%' AND before->>'outcome' = 'applied'
    GROUP BY after::text HAVING count(*) > 1`;
}

describe('resilience of the cascade', () => {
  it('two worker processes on one Redis and PostgreSQL never apply the same operation twice', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const prefix = uniquePrefix('two-workers');
    for (let i = 0; i < 2; i++) {
      const worker = await startTestDaemon({
        mode: 'worker',
        config: testConfig(database.url, { workerConcurrency: 4 }),
        log,
        queuePrefix: prefix,
      });
      cleanups.push(() => worker.stop());
    }
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await seedUser(database, tenant.id, `u${i}@example.com`, 5, 3, 2));
    // Each deactivation announced three times, as replays and duplicate deliveries would.
    for (const id of ids) await deactivate(database, tenant.id, id, 3);
    for (let i = 0; i < 20; i++) {
      await expect.poll(() => remainingEdges(database, `u${i}@example.com`), { timeout: 20_000 }).toBe(0);
    }
    await expect
      .poll(
        async () =>
          (await database.sql`SELECT count(*)::int AS n FROM tokens WHERE revoked_at IS NULL`)[0]!.n,
        { timeout: 10_000 },
      )
      .toBe(0);
    for (const id of ids) expect(await appliedTwice(database, id)).toEqual([]);
    const receipts = await database.sql`
      SELECT (SELECT count(*)::int FROM receipt_edges e WHERE e.receipt_id = r.id AND e.status = 'removed') AS edges, tokens_revoked
      FROM receipts r`;
    expect(receipts).toHaveLength(20);
    for (const receipt of receipts) expect(receipt).toEqual({ edges: 9, tokens_revoked: 2 });
  });

  it('a worker killed in the middle of a cascade is finished by the next one, nothing applied twice', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const userId = await seedUser(database, tenant.id, 'big@example.com', 100, 50, 10);
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: inject('redisUrl'),
      IDSYNC_QUEUE_PREFIX: uniquePrefix('killed'),
      JOB_LOCK_MS: '2000',
      OUTBOX_POLL_MS: '100',
      LOG_LEVEL: 'warn',
    };
    const startWorker = async (): Promise<ChildProcess> => {
      const child = spawnCli(['worker'], env);
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (chunk) => String(chunk).includes('worker running') && resolve());
        child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
      });
      return child;
    };
    const first = await startWorker();
    await deactivate(database, tenant.id, userId);
    await expect
      .poll(
        async () =>
          Number(
            (await database.sql`SELECT count(*) AS n FROM receipt_edges WHERE status = 'removed'`)[0]?.n ?? 0,
          ),
        {
          timeout: 20_000,
          interval: 5,
        },
      )
      .toBeGreaterThan(3);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    const left = await remainingEdges(database, 'big@example.com');
    expect(left).toBeGreaterThan(0);

    const second = await startWorker();
    cleanups.push(async () => {
      second.kill('SIGTERM');
      await new Promise((r) => second.once('exit', r));
    });
    await expect.poll(() => remainingEdges(database, 'big@example.com'), { timeout: 30_000 }).toBe(0);
    await expect
      .poll(async () => (await database.sql`SELECT completed_at FROM receipts`)[0]?.completed_at ?? null, {
        timeout: 10_000,
      })
      .not.toBeNull();
    expect(await appliedTwice(database, userId)).toEqual([]);
    const [receipt] = await database.sql`SELECT tokens_revoked FROM receipts`;
    const rows = await database.sql`SELECT description, status FROM receipt_edges`;
    expect(rows.every((r) => r.status === 'removed')).toBe(true);
    const edges = rows.map((r) => r.description as string);
    expect(edges).toHaveLength(151);
    expect(new Set(edges).size).toBe(151);
    expect(receipt!.tokens_revoked).toBe(10);
  }, 60_000);

  it('Redis down while SCIM deactivates: the change is kept and the cascade runs once Redis is back', async () => {
    const database = await createTestDatabase();
    const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
    const userId = await seedUser(database, tenant.id, 'outage@example.com', 3, 2, 1);
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-redis-'));
    const redisOptions = {
      directory: scratch,
      port: await freePort(),
      adoptRunning: false,
      persistent: false,
    };
    let redis = await startEmbeddedRedis(redisOptions);
    const daemon = await startTestDaemon({
      mode: 'start',
      config: testConfig(database.url, { redisUrl: redis.url }),
      log,
    });
    cleanups.push(async () => {
      await daemon.stop();
      await redis.stop();
      rmSync(scratch, { recursive: true, force: true });
    });

    await redis.stop();
    const response = await fetch(`http://127.0.0.1:${daemon.port}/scim/v2/Users/${userId}`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
      body: JSON.stringify({
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
        Operations: [{ op: 'replace', value: { active: false } }],
      }),
    });
    expect(response.status).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
    expect(await remainingEdges(database, 'outage@example.com')).toBe(6);

    redis = await startEmbeddedRedis(redisOptions);
    await expect.poll(() => remainingEdges(database, 'outage@example.com'), { timeout: 30_000 }).toBe(0);
    expect(await appliedTwice(database, userId)).toEqual([]);
  }, 60_000);
});
