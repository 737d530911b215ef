import { describe, expect, inject, it } from 'vitest';
import { createRedisConnection } from '../src/jobs/connection.js';
import { closeQueues, openQueues } from '../src/jobs/queues.js';
import { startWorkerPool } from '../src/jobs/workers.js';
import { runCli } from './support/cli.js';
import { uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

describe('idsync jobs failed / retry', () => {
  it('lists a job that failed every attempt with its reason, and retries it', async () => {
    const prefix = uniquePrefix('jobs-cli');
    const redisUrl = inject('redisUrl');
    const { log } = capturingLogger('silent');
    let failing = true;
    const processed: string[] = [];
    const pool = await startWorkerPool({
      redisUrl,
      prefix,
      log,
      concurrency: 1,
      handler: async (payload) => {
        if (failing) throw new Error('platform said 503');
        processed.push(payload.subjectId);
      },
    });
    const connection = createRedisConnection(redisUrl, 'producer');
    const queues = openQueues(connection, prefix);
    try {
      await queues.reconcile.add(
        'user:reconcile',
        { tenantId: 't', subjectType: 'user', subjectId: 'u-1' },
        { jobId: 'job-1', attempts: 2, backoff: { type: 'fixed', delay: 10 }, removeOnFail: false },
      );
      await expect.poll(async () => (await queues.reconcile.getFailed()).length, { timeout: 10_000 }).toBe(1);
      const env = {
        DATABASE_URL: 'postgres://unused@127.0.0.1:1/x',
        REDIS_URL: redisUrl,
        IDSYNC_QUEUE_PREFIX: prefix,
      };
      const failed = await runCli(['jobs', 'failed'], env);
      expect(failed.code).toBe(0);
      expect(failed.stdout).toBe('reconcile\tjob-1\tuser:u-1\tattempts=2\tplatform said 503\n');
      failing = false;
      const retried = await runCli(['jobs', 'retry', 'job-1'], env);
      expect(retried.stdout).toBe('retried 1 job\n');
      await expect.poll(() => processed, { timeout: 10_000 }).toEqual(['u-1']);
      expect((await runCli(['jobs', 'failed'], env)).stdout).toBe('no failed jobs\n');
      const unknown = await runCli(['jobs', 'retry', 'job-1'], env);
      expect(unknown.code).toBe(65);
      expect(unknown.stderr).toBe('idsync: no failed job job-1 (idsync jobs failed lists them)\n');
    } finally {
      await pool.close();
      await closeQueues(queues);
      connection.disconnect();
    }
  });
});
