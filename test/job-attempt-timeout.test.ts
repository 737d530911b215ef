import { afterAll, describe, expect, inject, it } from 'vitest';
import { connectionReady, createRedisConnection } from '../src/jobs/connection.js';
import { closeQueues, type JobPayload, jobOptions, openQueues } from '../src/jobs/queues.js';
import { startWorkerPool } from '../src/jobs/workers.js';
import { uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

/*
 * An attempt that never settles (seen after a PostgreSQL restart: a promise the lost connection never
 * settled, no query running, the worker alive and renewing the job's lock) is abandoned at its lane's
 * deadline and the job retried, instead of holding the user's offboarding for good. Real Redis and BullMQ.
 */
describe('a job attempt that never settles', async () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('attempt-timeout');
  const { log, output } = capturingLogger('warn');
  const attempts: number[] = [];
  const done: string[] = [];
  const pool = await startWorkerPool({
    redisUrl,
    prefix,
    log,
    concurrency: 2,
    attemptTimeoutMs: { deprovision: 400, reconcile: 400, scan: 400 },
    handler: async (payload: JobPayload, context) => {
      attempts.push(context.attempt);
      // The first attempt waits on nothing that will ever happen, as the wedged attempt did.
      if (context.attempt === 1) return new Promise<void>(() => {});
      done.push(payload.subjectId);
    },
  });
  const producer = createRedisConnection(redisUrl, 'producer');
  await connectionReady(producer);
  const queues = openQueues(producer, prefix);
  afterAll(async () => {
    await pool.close(1_000);
    await closeQueues(queues);
    producer.disconnect();
  });

  it('is abandoned at the deadline and the job retried to completion', async () => {
    const payload: JobPayload = {
      tenantId: '00000000-0000-4000-8000-000000000001',
      subjectType: 'user',
      subjectId: 'wedged-user',
      outboxId: 1,
      cause: { event: 'user.deactivated' },
    };
    await queues.deprovision.add('user:deprovision', payload, jobOptions(payload, 'deprovision'));
    await expect.poll(() => done.includes('wedged-user'), { timeout: 20_000 }).toBe(true);
    expect(attempts).toEqual([1, 2]);
    expect(output()).toContain('did not finish within 0 s; abandoned, to be retried');
    expect(pool.activity.running).toBe(0);
  });
});
