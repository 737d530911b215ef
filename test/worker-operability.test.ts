import { afterEach, describe, expect, inject, it } from 'vitest';
import { connectionReady, createRedisConnection } from '../src/jobs/connection.js';
import { recordForReconcile } from '../src/jobs/outbox.js';
import { OutboxPurger } from '../src/jobs/outbox-purge.js';
import { OutboxRelay } from '../src/jobs/outbox-relay.js';
import { closeQueues, openQueues } from '../src/jobs/queues.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { startStoppableRedis } from './support/stoppable-redis.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const never = new Promise<void>(() => {});

describe('worker health port', () => {
  it('answers /healthz and /readyz on its own port, and /readyz fails once jobs stop moving while work waits', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const { log } = capturingLogger('silent');
    const handled: string[] = [];
    const worker = await startTestDaemon({
      mode: 'worker',
      config: testConfig(database.url, { workerConcurrency: 1, workerStuckAfterMs: 1_000 }),
      log,
      // The first job wedges (as a deadlocked pool did); everything else queues behind it.
      jobHandler: async (payload) => {
        handled.push(payload.subjectId);
        if (payload.subjectId === 'wedged') await never;
      },
    });
    cleanups.push(() => worker.stop());
    const health = `http://127.0.0.1:${worker.workerHealthPort}`;
    expect(worker.workerHealthPort).toBeGreaterThan(0);
    expect((await fetch(`${health}/healthz`)).status).toBe(200);
    const idle = await fetch(`${health}/readyz`);
    expect(idle.status).toBe(200);
    expect(await idle.json()).toEqual({
      status: 'ready',
      checks: { postgres: 'ok', redis: 'ok', jobs: 'ok' },
    });

    await recordForReconcile(database.db, [
      { tenantId: tenant.id, lane: 'deprovision', subjectType: 'user', subjectId: 'wedged', cause: {} },
    ]);
    await expect.poll(() => handled, { timeout: 10_000 }).toContain('wedged');
    await recordForReconcile(database.db, [
      { tenantId: tenant.id, lane: 'deprovision', subjectType: 'user', subjectId: 'waiting', cause: {} },
    ]);
    // Queued behind the wedged job before readiness is asked: a second after the wedged job started, a
    // slow relay would otherwise leave the check saying "0 wait and 1 run".
    await expect
      .poll(
        async () =>
          (await database.sql`SELECT relayed_at FROM outbox WHERE subject_id = 'waiting'`)[0]?.relayed_at ??
          null,
        { timeout: 10_000 },
      )
      .not.toBeNull();
    await expect
      .poll(async () => (await fetch(`${health}/readyz`)).status, { timeout: 15_000, interval: 200 })
      .toBe(503);
    const stuck = (await (await fetch(`${health}/readyz`)).json()) as {
      status: string;
      checks: Record<string, string>;
    };
    expect(stuck.status).toBe('not ready');
    expect(stuck.checks.jobs).toMatch(
      /^stuck: no job has started or finished here for \d+ s while 1 wait and 1 run$/,
    );
    expect(handled).not.toContain('waiting');
  });
});

describe('bounded shutdown', () => {
  it('stops a worker within SHUTDOWN_TIMEOUT_MS even mid-job, and another worker takes the job over', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const { log } = capturingLogger('silent');
    const prefix = uniquePrefix('sigterm');
    const attempts: string[] = [];
    const first = await startTestDaemon({
      mode: 'worker',
      queuePrefix: prefix,
      config: testConfig(database.url, { shutdownTimeoutMs: 1_500, jobLockMs: 2_000 }),
      log,
      jobHandler: async (payload) => {
        attempts.push(`first ${payload.subjectId}`);
        await never;
      },
    });
    await recordForReconcile(database.db, [
      { tenantId: tenant.id, lane: 'deprovision', subjectType: 'user', subjectId: 'u1', cause: {} },
    ]);
    await expect.poll(() => attempts, { timeout: 10_000 }).toEqual(['first u1']);

    const started = Date.now();
    await first.stop();
    const took = Date.now() - started;
    // SHUTDOWN_TIMEOUT_MS plus the 2 s the aborted jobs get to record their failed attempt, at most.
    expect(took).toBeLessThan(1_500 + 2_000 + 1_000);

    const second = await startTestDaemon({
      mode: 'worker',
      queuePrefix: prefix,
      config: testConfig(database.url, { jobLockMs: 2_000 }),
      log,
      jobHandler: async (payload) => {
        attempts.push(`second ${payload.subjectId}`);
      },
    });
    cleanups.push(() => second.stop());
    await expect.poll(() => attempts, { timeout: 20_000 }).toEqual(['first u1', 'second u1']);
  });
});

describe('outbox relay logging', () => {
  it('logs "recovered" only after a real recovery, not on empty polls while Redis is still down', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const redis = await startStoppableRedis();
    const producer = createRedisConnection(redis.url, 'producer');
    await connectionReady(producer);
    const queues = openQueues(producer, uniquePrefix('relay-log'));
    const { log, output } = capturingLogger('info');
    class CountingRelay extends OutboxRelay {
      polls = 0;
      override async relayOnce(): Promise<number> {
        this.polls += 1;
        return super.relayOnce();
      }
    }
    const relay = new CountingRelay({ sql: database.sql, queues, log, pollMs: 50 });
    await relay.start();
    cleanups.push(async () => {
      await relay.stop();
      await closeQueues(queues);
      producer.disconnect();
      await redis.dispose();
    });
    const lines = (message: string) =>
      output()
        .split('\n')
        .filter((l) => l.includes(message)).length;

    await redis.stop();
    await recordForReconcile(database.db, [
      { tenantId: tenant.id, lane: 'reconcile', subjectType: 'user', subjectId: 'u1', cause: {} },
    ]);
    await expect.poll(() => lines('cannot reach Redis'), { timeout: 10_000 }).toBe(1);
    // Another relay took the row: from now on every poll is empty, while Redis is still down.
    await database.sql`UPDATE outbox SET relayed_at = now()`;
    const polled = relay.polls;
    await expect.poll(() => relay.polls, { timeout: 10_000 }).toBeGreaterThan(polled + 5);
    expect(lines('outbox relay recovered')).toBe(0);

    await redis.start();
    await expect.poll(() => lines('outbox relay recovered'), { timeout: 20_000 }).toBe(1);
    expect(lines('cannot reach Redis')).toBe(1);
  });
});

describe('outbox purge', () => {
  it('deletes completed rows past retention in batches, never a row the relay or the sweeper still owes', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await database.sql`
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, created_at, relayed_at, completed_at)
      SELECT ${tenant.id}, 'reconcile', 'user', 'old-' || n, now() - interval '9 days', now() - interval '8 days',
        now() - interval '8 days'
      FROM generate_series(1, 25) n`;
    await database.sql`
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, created_at, relayed_at, completed_at)
      VALUES (${tenant.id}, 'reconcile', 'user', 'recent', now() - interval '2 days', now() - interval '1 day', now()),
             (${tenant.id}, 'deprovision', 'user', 'unrelayed', now() - interval '30 days', NULL, NULL),
             (${tenant.id}, 'deprovision', 'user', 'never-completed', now() - interval '30 days', now() - interval '30 days', NULL)`;
    const { log } = capturingLogger('silent');
    const purger = new OutboxPurger({ sql: database.sql, log, retentionDays: 7, batchSize: 10 });
    expect(await purger.purge()).toBe(25);
    const left = await database.sql<
      { subject_id: string }[]
    >`SELECT subject_id FROM outbox ORDER BY subject_id`;
    expect(left.map((r) => r.subject_id)).toEqual(['never-completed', 'recent', 'unrelayed']);
    expect(await purger.purge()).toBe(0);
  });
});

describe('no bound parameters in logs', () => {
  it('a job failing on a query with an e-mail logs the driver error without the e-mail, and keeps none in Redis', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const { log, output } = capturingLogger('info');
    const prefix = uniquePrefix('redaction');
    const worker = await startTestDaemon({
      mode: 'worker',
      queuePrefix: prefix,
      config: testConfig(database.url),
      log,
      jobHandler: async () => {
        // A real driver error through drizzle: its message repeats the SQL and the bound parameters.
        await database.db.execute(
          (await import('drizzle-orm')).sql`SELECT ${'ada.lovelace@example.com'}::uuid`,
        );
      },
    });
    cleanups.push(() => worker.stop());
    await recordForReconcile(database.db, [
      { tenantId: tenant.id, lane: 'deprovision', subjectType: 'user', subjectId: 'u1', cause: {} },
    ]);
    await expect
      .poll(() => output(), { timeout: 10_000 })
      .toContain('job failed; it will be retried with back-off');
    const logged = output();
    expect(logged).toContain('invalid input syntax for type uuid');
    expect(logged).not.toContain('ada.lovelace');
    const redis = createRedisConnection(inject('redisUrl'), 'producer');
    await connectionReady(redis);
    const queues = openQueues(redis, prefix);
    try {
      const jobs = await queues.deprovision.getJobs(['delayed', 'failed', 'wait', 'active']);
      expect(jobs.length).toBeGreaterThan(0);
      for (const job of jobs) {
        expect(job.failedReason ?? '').not.toContain('ada.lovelace');
        for (const line of job.stacktrace ?? []) expect(line).not.toContain('ada.lovelace');
      }
      expect(jobs.some((j) => (j.failedReason ?? '').includes('invalid input syntax for type uuid'))).toBe(
        true,
      );
    } finally {
      await closeQueues(queues);
      redis.disconnect();
    }
  });
});
