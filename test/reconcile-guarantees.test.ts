import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { ConfigError } from '../src/config.js';
import { connectionReady, createRedisConnection } from '../src/jobs/connection.js';
import { OutboxRelay } from '../src/jobs/outbox-relay.js';
import { closeQueues, openQueues, queueName } from '../src/jobs/queues.js';
import { BuiltinConnector } from '../src/platform/builtin.js';
import { reconcileUser } from '../src/reconcile/reconciler.js';
import { addRule } from '../src/reconcile/rules.js';
import { startEmbeddedRedis } from '../src/runtime/embedded-redis.js';
import { databasePoolSize } from '../src/runtime/pool-size.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startWorkerProcess, stopProcess } from './support/cli.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, type TestDatabase, uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';
import { GROUP, PATCH, USER } from './support/scim-fixtures.js';

/*
 * Issue 12: each test tries to break one guarantee of the deprovisioning path — a burst wedging a
 * worker, a job whose worker dies twice, Redis forgetting queued jobs, spurious receipts, and the
 * mass-change brake bypassed by a rename.
 */

const { log } = capturingLogger('silent');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scimClient(port: number, token: string) {
  return async (method: string, url: string, body?: unknown) => {
    const response = await fetch(`http://127.0.0.1:${port}/scim/v2${url}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/scim+json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  };
}

const deactivation = { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] };

async function edgesOf(database: TestDatabase, account: string): Promise<number> {
  const [row] = await database.sql`
    SELECT (SELECT count(*) FROM platform_enterprise_members WHERE account = ${account})
         + (SELECT count(*) FROM platform_team_members WHERE account = ${account})
         + (SELECT count(*) FROM platform_app_collaborators WHERE account = ${account}) AS n`;
  return Number(row!.n);
}

/** Receipts per user: [complete receipts, all receipts]. */
async function receiptsOf(database: TestDatabase, userId: string): Promise<[number, number]> {
  const [row] = await database.sql`
    SELECT count(*) FILTER (WHERE completed_at IS NOT NULL)::int AS complete, count(*)::int AS total
    FROM receipts WHERE user_id = ${userId}`;
  return [row!.complete, row!.total];
}

/** Outbox rows of users and groups no finished job has covered yet. */
async function unfinishedWork(database: TestDatabase): Promise<number> {
  const [row] = await database.sql`
    SELECT count(*)::int AS n FROM outbox WHERE completed_at IS NULL AND subject_type IN ('user', 'group')`;
  return row!.n;
}

/** A deactivated user in the Enterprise Account, `teams` teams and `apps` apps, with live tokens. */
async function seedOffboarded(database: TestDatabase, tenantId: string, userName: string, tokens = 2) {
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenantId}, ${userName}, 'scim', false)
    RETURNING id::text`;
  const account = userName.toLowerCase();
  await database.sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions) VALUES (${tenantId}, ${account}, '{view}')`;
  await database.sql`
    WITH t AS (INSERT INTO teams (tenant_id, name) SELECT ${tenantId}, ${account} || '-team-' || n FROM generate_series(1, 3) n RETURNING id)
    INSERT INTO platform_team_members (tenant_id, team_id, account, role) SELECT ${tenantId}, t.id, ${account}, 'member' FROM t`;
  await database.sql`
    INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash)
    SELECT ${tenantId}, ${user!.id}, 'api', md5(random()::text), 'h' FROM generate_series(1, ${tokens})`;
  return user!.id as string;
}

describe('database pool sizing', () => {
  it('is sized from WORKER_CONCURRENCY, and a pool set too small is refused before anything starts', async () => {
    // 8 deprovision + 8 reconcile + 2 scan + 1 relay + 1 sweeper + 2 webhooks + 3 headroom.
    expect(databasePoolSize('worker', { databasePoolSize: undefined, workerConcurrency: 8 })).toBe(25);
    expect(databasePoolSize('worker', { databasePoolSize: undefined, workerConcurrency: 2 })).toBe(13);
    expect(databasePoolSize('serve', { databasePoolSize: undefined, workerConcurrency: 8 })).toBe(18);
    expect(databasePoolSize('worker', { databasePoolSize: 30, workerConcurrency: 8 })).toBe(30);
    expect(() => databasePoolSize('worker', { databasePoolSize: 10, workerConcurrency: 8 })).toThrow(
      new ConfigError(
        'DATABASE_POOL_SIZE',
        'must be at least 25 for `idsync worker` with WORKER_CONCURRENCY=8 (deprovision 8 + reconcile 8 + scan 2 + relay 1 + sweeper 1 + webhooks 2 + headroom 3)',
      ),
    );
    const database = await createTestDatabase();
    await expect(
      startTestDaemon({ mode: 'worker', config: testConfig(database.url, { databasePoolSize: 10 }), log }),
    ).rejects.toThrow(/DATABASE_POOL_SIZE: must be at least 25/);
  });
});

describe('no deprovisioning lost or stuck', () => {
  it('a burst of 30 users in one group and 15 deactivations completes in ONE worker at default settings', async () => {
    const database = await createTestDatabase();
    const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
    await addRule(
      database.db,
      tenant.id,
      { target: 'team', idpGroup: 'Burst', team: 'core', role: 'member' },
      't',
    );
    await addRule(
      database.db,
      tenant.id,
      { target: 'app', idpGroup: 'Burst', app: 'api', permissions: ['deploy'] },
      't',
    );
    const prefix = uniquePrefix('burst');
    // Default settings: WORKER_CONCURRENCY 8 in two lanes, the pool sized from it.
    const api = await startTestDaemon({
      mode: 'serve',
      config: testConfig(database.url),
      log,
      queuePrefix: prefix,
    });
    cleanups.push(() => api.stop());
    const worker = await startTestDaemon({
      mode: 'worker',
      config: testConfig(database.url),
      log,
      queuePrefix: prefix,
    });
    cleanups.push(() => worker.stop());
    const scim = scimClient(api.port!, scimToken);

    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      const created = await scim('POST', '/Users', { schemas: [USER], userName: `burst${i}@example.com` });
      expect(created.status).toBe(201);
      ids.push(created.body.id);
    }
    const group = await scim('POST', '/Groups', {
      schemas: [GROUP],
      displayName: 'Burst',
      members: ids.map((value) => ({ value })),
    });
    expect(group.status).toBe(201);
    // The deactivations arrive while the group's 30 reconciles are still in flight.
    for (const id of ids.slice(0, 15))
      expect((await scim('PATCH', `/Users/${id}`, deactivation)).status).toBe(200);

    await expect.poll(() => unfinishedWork(database), { timeout: 30_000 }).toBe(0);
    for (const [i, id] of ids.entries()) {
      if (i < 15) {
        expect(await edgesOf(database, `burst${i}@example.com`)).toBe(0);
        // Offboarded before or after its grant landed: never an unfinished or second receipt.
        const [complete, total] = await receiptsOf(database, id);
        expect(complete).toBe(total);
        expect(total).toBeLessThanOrEqual(1);
      } else {
        expect(await edgesOf(database, `burst${i}@example.com`)).toBe(3);
      }
    }
    const [withReceipt] = await database.sql`
      SELECT count(DISTINCT user_id)::int AS n FROM receipts r
      WHERE EXISTS (SELECT 1 FROM receipt_edges e WHERE e.receipt_id = r.id)`;
    // Some of the 15 may have been deactivated before their grant was applied: nothing to remove, no receipt.
    expect(withReceipt!.n).toBeGreaterThan(0);
    expect(withReceipt!.n).toBeLessThanOrEqual(15);
  }, 60_000);

  it('a deprovision whose worker process is killed (-9) twice while it runs is retried and completes', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const userId = await seedOffboarded(database, tenant.id, 'twice@example.com');
    const prefix = uniquePrefix('stalled');
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: inject('redisUrl'),
      IDSYNC_QUEUE_PREFIX: prefix,
      JOB_LOCK_MS: '1000',
      OUTBOX_POLL_MS: '100',
      SWEEPER_INTERVAL_MS: '0',
      DRIFT_TICK_MS: '0',
      LOG_LEVEL: 'warn',
    };
    const startWorker = () => startWorkerProcess(env);
    const kill = (child: ChildProcess) => stopProcess(child);
    // The test holds the user's advisory lock, so the job stays in the middle of its run until released.
    const holder = await database.sql.reserve();
    cleanups.push(async () => holder.release());
    await holder`SELECT pg_advisory_lock(hashtextextended(${`user:${userId}`}, 0))`;
    // A killed worker's backend may linger in the lock queue (it notices the closed socket only when the
    // lock is granted), so "running" means: a backend not seen before is waiting for the lock — in this
    // database: pg_locks covers the whole cluster, and other test files wait on advisory locks too.
    const seen = new Set<number>();
    const newWaiter = async () => {
      const rows = await database.sql`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
      const fresh = rows.map((r) => r.pid as number).filter((pid) => !seen.has(pid));
      for (const pid of fresh) seen.add(pid);
      return fresh.length > 0;
    };
    await database.sql`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      VALUES (${tenant.id}, 'deprovision', 'user', ${userId}, '{"event":"user.deactivated"}'::jsonb)`;

    for (let death = 0; death < 2; death++) {
      const worker = await startWorker();
      await expect.poll(newWaiter, { timeout: 20_000 }).toBe(true);
      await kill(worker);
    }
    await holder`SELECT pg_advisory_unlock(hashtextextended(${`user:${userId}`}, 0))`;
    const last = await startWorker();
    cleanups.push(() => kill(last));

    await expect.poll(() => receiptsOf(database, userId), { timeout: 30_000 }).toEqual([1, 1]);
    expect(await edgesOf(database, 'twice@example.com')).toBe(0);
    const [tokens] = await database.sql`SELECT count(*)::int AS n FROM tokens WHERE revoked_at IS NULL`;
    expect(tokens!.n).toBe(0);
    // It really was found stalled twice (BullMQ's default maxStalledCount of 1 would have failed it).
    const redis = createRedisConnection(inject('redisUrl'), 'producer');
    const queue = new Queue(queueName('deprovision'), { connection: redis, prefix });
    cleanups.push(async () => {
      await queue.close();
      redis.disconnect();
    });
    const [job] = await queue.getJobs(['completed']);
    expect(job?.stalledCounter).toBe(2);
  }, 90_000);

  it('a deprovision that keeps failing is retried with back-off and alerted (fatal log line and audit row)', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const userId = await seedOffboarded(database, tenant.id, 'stuck@example.com');
    const captured = capturingLogger('warn');
    const attempts: number[] = [];
    const worker = await startTestDaemon({
      mode: 'worker',
      config: testConfig(database.url, { sweeperIntervalMs: 0 }),
      log: captured.log,
      jobHandler: async () => {
        attempts.push(Date.now());
        throw new Error('platform said 503');
      },
    });
    cleanups.push(() => worker.stop());
    await database.sql`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      VALUES (${tenant.id}, 'deprovision', 'user', ${userId}, '{"event":"user.deactivated"}'::jsonb)`;
    const alerts = () =>
      database.sql`SELECT subject_id, after->>'attempts' AS attempts, after->>'retrying' AS retrying
        FROM audit_log WHERE action = 'deprovision.failed'`;
    await expect
      .poll(alerts, { timeout: 20_000 })
      .toEqual([{ subject_id: userId, attempts: '3', retrying: 'true' }]);
    const fatal = captured
      .output()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .filter((line) => line.event === 'deprovision.failed');
    expect(fatal).toEqual([expect.objectContaining({ level: 60, userId, attempts: 3, retrying: true })]);
    // Back-off: about 1 s before the second attempt, about 2 s before the third (±20 % jitter).
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    expect(attempts[1]! - attempts[0]!).toBeGreaterThanOrEqual(750);
    expect(attempts[2]! - attempts[1]!).toBeGreaterThanOrEqual(1_550);
    expect(captured.output()).toContain('job failed; it will be retried with back-off');
    expect(captured.output()).not.toContain('BullMQ retries it');
  }, 40_000);

  it('Redis forgetting relayed jobs (FLUSHALL) loses no deprovision: the sweeper sends them again', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-redis-'));
    const redis = await startEmbeddedRedis({
      directory: scratch,
      port: await freePort(),
      role: 'owner' as const,
      persistent: false,
    });
    cleanups.push(async () => {
      await redis.stop();
      rmSync(scratch, { recursive: true, force: true });
    });
    const prefix = uniquePrefix('flushall');
    const lost = [
      await seedOffboarded(database, tenant.id, 'lost1@example.com'),
      await seedOffboarded(database, tenant.id, 'lost2@example.com'),
    ];
    // Deactivated with nothing to remove: the sweeper must never write a receipt for this one.
    const [bare] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'bare@example.com', 'scim', false)
      RETURNING id::text`;
    for (const id of [...lost, bare!.id]) {
      await database.sql`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
        VALUES (${tenant.id}, 'deprovision', 'user', ${id}, '{"event":"user.deactivated"}'::jsonb)`;
    }

    // The relay moves the rows into Redis and marks them relayed; then Redis forgets everything.
    const producer = createRedisConnection(redis.url, 'producer');
    await connectionReady(producer);
    const queues = openQueues(producer, prefix);
    const relay = new OutboxRelay({ sql: database.sql, queues, log, pollMs: 100 });
    expect(await relay.relayOnce()).toBe(3);
    expect(await queues.deprovision.getWaitingCount()).toBe(3);
    await producer.flushall();
    expect(await queues.deprovision.getWaitingCount()).toBe(0);
    await closeQueues(queues);
    producer.disconnect();

    const worker = await startTestDaemon({
      mode: 'worker',
      config: testConfig(database.url, { redisUrl: redis.url, sweeperIntervalMs: 200, sweeperGraceMs: 500 }),
      log,
      queuePrefix: prefix,
    });
    cleanups.push(() => worker.stop());
    for (const id of lost)
      await expect.poll(() => receiptsOf(database, id), { timeout: 20_000 }).toEqual([1, 1]);
    expect(await edgesOf(database, 'lost1@example.com')).toBe(0);
    expect(await edgesOf(database, 'lost2@example.com')).toBe(0);
    await expect.poll(() => unfinishedWork(database), { timeout: 10_000 }).toBe(0);
    // Each row was sent again after Redis forgot it.
    const resent = await database.sql`SELECT relay_count FROM outbox ORDER BY id`;
    for (const row of resent) expect(row.relay_count).toBeGreaterThanOrEqual(2);
    expect(await receiptsOf(database, bare!.id)).toEqual([0, 0]);
  }, 60_000);

  it('the sweeper queues an offboarded user with access left and no job in flight, and nobody else', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const forgotten = await seedOffboarded(database, tenant.id, 'forgotten@example.com');
    await database.sql`INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'empty@example.com', 'scim', false)`;
    await database.sql`UPDATE users SET deactivated_at = now() - interval '1 hour'`;
    const worker = await startTestDaemon({
      mode: 'worker',
      config: testConfig(database.url, { sweeperIntervalMs: 200, sweeperGraceMs: 500 }),
      log,
    });
    cleanups.push(() => worker.stop());
    await expect.poll(() => receiptsOf(database, forgotten), { timeout: 20_000 }).toEqual([1, 1]);
    expect(await edgesOf(database, 'forgotten@example.com')).toBe(0);
    const queued = await database.sql`SELECT subject_id, cause->>'event' AS event FROM outbox`;
    expect(queued).toEqual([{ subject_id: forgotten, event: 'sweeper.offboarding-unfinished' }]);
    const [receipts] = await database.sql`SELECT count(*)::int AS n FROM receipts`;
    expect(receipts!.n).toBe(1);
  }, 30_000);

  it('a late reconcile-lane job (user.created, group.member_added) writes no second receipt after the deactivation', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const deps = { database, connectorFor: async () => new BuiltinConnector(database.db, tenant.id) };
    const userId = await seedOffboarded(database, tenant.id, 'late@example.com');
    const createdAt = new Date(Date.now() - 60_000).toISOString();
    await reconcileUser(deps, tenant.id, userId, { event: 'user.deactivated', at: new Date().toISOString() });
    expect(await receiptsOf(database, userId)).toEqual([1, 1]);
    await reconcileUser(deps, tenant.id, userId, { event: 'user.created', at: createdAt }, 'reconcile');
    await reconcileUser(deps, tenant.id, userId, { event: 'group.member_added', at: createdAt }, 'reconcile');
    expect(await receiptsOf(database, userId)).toEqual([1, 1]);
    const [receipt] = await database.sql`
      SELECT idp_event, (SELECT count(*)::int FROM receipt_edges e WHERE e.receipt_id = r.id) AS edges, tokens_revoked
      FROM receipts r`;
    expect(receipt).toEqual({ idp_event: 'user.deactivated', edges: 4, tokens_revoked: 2 });

    // A user deactivated with nothing to remove gets no receipt at all.
    const [bare] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'bare@example.com', 'scim', false)
      RETURNING id::text`;
    await reconcileUser(deps, tenant.id, bare!.id, { event: 'user.deactivated' });
    expect(await receiptsOf(database, bare!.id)).toEqual([0, 0]);

    // Reactivated and deactivated again: a second offboarding, a second receipt.
    await database.sql`UPDATE users SET active = true WHERE id = ${userId}`;
    await database.sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions) VALUES (${tenant.id}, 'late@example.com', '{view}')`;
    await database.sql`UPDATE users SET active = false WHERE id = ${userId}`;
    await reconcileUser(deps, tenant.id, userId, { event: 'user.deactivated' });
    expect(await receiptsOf(database, userId)).toEqual([2, 2]);
  });

  it('20 users created, grouped and deactivated at once through SCIM: exactly one receipt each', async () => {
    const database = await createTestDatabase();
    const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
    await addRule(
      database.db,
      tenant.id,
      { target: 'team', idpGroup: 'Staff', team: 'core', role: 'member' },
      't',
    );
    const daemon = await startTestDaemon({ mode: 'start', config: testConfig(database.url), log });
    cleanups.push(() => daemon.stop());
    const scim = scimClient(daemon.port!, scimToken);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++)
      ids.push((await scim('POST', '/Users', { schemas: [USER], userName: `s${i}@example.com` })).body.id);
    const group = await scim('POST', '/Groups', {
      schemas: [GROUP],
      displayName: 'Staff',
      members: ids.map((value) => ({ value })),
    });
    expect(group.status).toBe(201);
    await expect.poll(async () => edgesOf(database, 's19@example.com'), { timeout: 20_000 }).toBe(2);
    await database.sql`
      INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash)
      SELECT ${tenant.id}, u::uuid, 'api', md5(random()::text || u), 'h' FROM unnest(${ids}::text[]) u`;
    for (const id of ids) await scim('PATCH', `/Users/${id}`, deactivation);
    await expect.poll(() => unfinishedWork(database), { timeout: 30_000 }).toBe(0);
    for (const id of ids) expect(await receiptsOf(database, id)).toEqual([1, 1]);
  }, 60_000);
});

describe('the mass-change brake decides from stored state', async () => {
  const database = await createTestDatabase();
  const daemon = await startTestDaemon({ mode: 'start', config: testConfig(database.url), log });
  afterAll(() => daemon.stop());

  /** A tenant whose 20-member group Engineering grants team core; 25 Enterprise Account members. */
  async function twentyEngineers(name: string) {
    const { tenant, scimToken } = await createTenant(database.db, name, 'test');
    await addRule(
      database.db,
      tenant.id,
      { target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' },
      't',
    );
    const scim = scimClient(daemon.port!, scimToken);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++)
      ids.push((await scim('POST', '/Users', { schemas: [USER], userName: `e${i}@${name}.com` })).body.id);
    await database.sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
      SELECT ${tenant.id}, 'other' || n || '@example.com', '{view}' FROM generate_series(1, 5) n`;
    const group = await scim('POST', '/Groups', {
      schemas: [GROUP],
      displayName: 'Engineering',
      members: ids.map((value) => ({ value })),
    });
    const inCore = async () =>
      (
        await database.sql`SELECT count(*)::int AS n FROM platform_team_members WHERE tenant_id = ${tenant.id}`
      )[0]!.n;
    await expect.poll(inCore, { timeout: 20_000 }).toBe(20);
    await expect.poll(() => unfinishedWork(database), { timeout: 20_000 }).toBe(0);
    return { tenant, scim, groupId: group.body.id as string, inCore };
  }

  const heldChanges = async (tenantId: string) =>
    database.sql`SELECT event, affected_users, status FROM held_changes WHERE tenant_id = ${tenantId}`;

  it('a 20-member group renamed away from its rule is held: nothing removed', async () => {
    const { tenant, scim, groupId, inCore } = await twentyEngineers('rename');
    const renamed = await scim('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'displayName', value: 'Engineering (old)' }],
    });
    expect(renamed.status).toBeLessThan(300);
    // Held in the request's own transaction, before any job ran.
    expect(await heldChanges(tenant.id)).toEqual([
      { event: 'group.renamed', affected_users: 20, status: 'pending' },
    ]);
    await expect.poll(() => unfinishedWork(database), { timeout: 20_000 }).toBe(0);
    expect(await inCore()).toBe(20);
  }, 60_000);

  it('a group deleted and a rule removed are held the same way', async () => {
    const deleted = await twentyEngineers('deletion');
    expect((await deleted.scim('DELETE', `/Groups/${deleted.groupId}`)).status).toBe(204);
    expect(await heldChanges(deleted.tenant.id)).toEqual([
      { event: 'group.deleted', affected_users: 20, status: 'pending' },
    ]);

    const unruled = await twentyEngineers('unruled');
    const [rule] =
      await database.sql`SELECT id::text FROM assignment_rules WHERE tenant_id = ${unruled.tenant.id}`;
    const { removeRule } = await import('../src/reconcile/rules.js');
    await removeRule(database.db, unruled.tenant.id, rule!.id, 'test');
    expect(await heldChanges(unruled.tenant.id)).toEqual([
      { event: 'rule.removed', affected_users: 20, status: 'pending' },
    ]);

    await expect.poll(() => unfinishedWork(database), { timeout: 20_000 }).toBe(0);
    expect(await deleted.inCore()).toBe(20);
    expect(await unruled.inCore()).toBe(20);
  }, 90_000);

  it('a rename that changes nobody’s access holds nothing', async () => {
    const { tenant, scim, groupId, inCore } = await twentyEngineers('harmless');
    await addRule(
      database.db,
      tenant.id,
      { target: 'team', idpGroup: 'Platform', team: 'core', role: 'member' },
      't',
    );
    await expect.poll(() => unfinishedWork(database), { timeout: 20_000 }).toBe(0);
    await scim('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'displayName', value: 'Platform' }],
    });
    expect(await heldChanges(tenant.id)).toEqual([]);
    await expect.poll(() => unfinishedWork(database), { timeout: 20_000 }).toBe(0);
    expect(await inCore()).toBe(20);
  }, 60_000);
});
