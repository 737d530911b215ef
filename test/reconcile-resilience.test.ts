import { afterEach, describe, expect, inject, it } from 'vitest';
import { BuiltinConnector } from '../src/platform/builtin.js';
import type { PlatformConnector } from '../src/platform/connector.js';
import { reconcileUser } from '../src/reconcile/reconciler.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startWorkerProcess, stopProcess } from './support/cli.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, type TestDatabase, uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { startStoppableRedis } from './support/stoppable-redis.js';

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
    SELECT after->>'operation' AS operation, count(*)::int AS times FROM audit_log
    WHERE subject_id = ${userId} AND action LIKE 'platform.%' AND after->>'outcome' = 'applied'
    GROUP BY after->>'operation' HAVING count(*) > 1`;
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

  it('a worker process killed in the middle of a layoff is finished by the next one, nothing applied twice', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const ids: string[] = [];
    for (let i = 0; i < 60; i++)
      ids.push(await seedUser(database, tenant.id, `big${i}@example.com`, 40, 20, 3));
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: inject('redisUrl'),
      IDSYNC_QUEUE_PREFIX: uniquePrefix('killed'),
      JOB_LOCK_MS: '2000',
      OUTBOX_POLL_MS: '100',
      WORKER_CONCURRENCY: '2',
      LOG_LEVEL: 'warn',
    };
    const startWorker = () => startWorkerProcess(env);
    const completed = async () =>
      Number((await database.sql`SELECT count(*) AS n FROM receipts WHERE completed_at IS NOT NULL`)[0]!.n);
    const first = await startWorker();
    for (const id of ids) await deactivate(database, tenant.id, id);
    await expect.poll(completed, { timeout: 20_000, interval: 5 }).toBeGreaterThan(2);
    await stopProcess(first);
    expect(await completed()).toBeLessThan(60);

    const second = await startWorker();
    cleanups.push(() => stopProcess(second, 'SIGTERM'));
    await expect.poll(completed, { timeout: 40_000 }).toBe(60);
    for (let i = 0; i < 60; i++) expect(await remainingEdges(database, `big${i}@example.com`)).toBe(0);
    for (const id of ids) expect(await appliedTwice(database, id)).toEqual([]);
    const receipts = await database.sql`
      SELECT (SELECT count(*)::int FROM receipt_edges e WHERE e.receipt_id = r.id AND e.status = 'removed') AS edges, tokens_revoked
      FROM receipts r`;
    expect(receipts).toHaveLength(60);
    for (const receipt of receipts) expect(receipt).toEqual({ edges: 61, tokens_revoked: 3 });
  }, 60_000);

  it('a cascade cut off after the platform acted but before the receipt was written is completed by the retry', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const userId = await seedUser(database, tenant.id, 'cut@example.com', 30, 10, 2);
    await database.sql`UPDATE users SET active = false WHERE id = ${userId}`;
    const builtin = new BuiltinConnector(database.db, tenant.id);
    // The process "dies" right after the platform removed the first half of the edges.
    const dying: PlatformConnector = {
      name: 'builtin',
      scan: () => builtin.scan(),
      residualRisk: () => builtin.residualRisk(),
      readAccess: (a) => builtin.readAccess(a),
      teamAdmins: (t) => builtin.teamAdmins(t),
      enterpriseSize: () => builtin.enterpriseSize(),
      apply: (o) => builtin.apply(o),
      applyAll: async (operations) => {
        await builtin.applyAll(operations.slice(0, Math.floor(operations.length / 2)));
        throw new Error('worker died');
      },
    };
    const cause = { event: 'user.deactivated', at: new Date().toISOString() };
    await expect(
      reconcileUser({ database, connectorFor: async () => dying }, tenant.id, userId, cause),
    ).rejects.toThrow('worker died');
    expect(await remainingEdges(database, 'cut@example.com')).toBeGreaterThan(0);
    expect(
      (await database.sql`SELECT count(*)::int AS n FROM receipt_edges WHERE status = 'removing'`)[0]!.n,
    ).toBe(41);

    await reconcileUser({ database, connectorFor: async () => builtin }, tenant.id, userId, cause);
    expect(await remainingEdges(database, 'cut@example.com')).toBe(0);
    const edges = await database.sql`SELECT status FROM receipt_edges`;
    expect(edges).toHaveLength(41);
    expect(edges.every((e) => e.status === 'removed')).toBe(true);
    expect(await appliedTwice(database, userId)).toEqual([]);
    const [receipt] = await database.sql`SELECT completed_at, tokens_revoked FROM receipts`;
    expect(receipt!.completed_at).not.toBeNull();
    expect(receipt!.tokens_revoked).toBe(2);
  });

  it('Redis down while SCIM deactivates: the change is kept and the cascade runs once Redis is back', async () => {
    const database = await createTestDatabase();
    const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
    const userId = await seedUser(database, tenant.id, 'outage@example.com', 3, 2, 1);
    const redis = await startStoppableRedis();
    const daemon = await startTestDaemon({
      mode: 'start',
      config: testConfig(database.url, { redisUrl: redis.url }),
      log,
    });
    cleanups.push(async () => {
      await daemon.stop();
      await redis.dispose();
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

    await redis.start();
    await expect.poll(() => remainingEdges(database, 'outage@example.com'), { timeout: 30_000 }).toBe(0);
    expect(await appliedTwice(database, userId)).toEqual([]);
  }, 60_000);
});
