import { describe, expect, inject, it } from 'vitest';
import { createRedisConnection } from '../src/jobs/connection.js';
import { closeQueues, LANES, openQueues } from '../src/jobs/queues.js';
import { startWorkerPool } from '../src/jobs/workers.js';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

interface ProgressLine {
  progress: string;
  done: number;
  total: number;
  step?: string;
}

/** The JSON progress lines a non-terminal stderr carries (other stderr lines, e.g. logs, are skipped). */
function progressLines(stderr: string, label: string): ProgressLine[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{"progress"'))
    .map((line) => JSON.parse(line) as ProgressLine)
    .filter((line) => line.progress === label);
}

describe('progress of long CLI work, off a terminal: JSON lines on stderr, the result alone on stdout', () => {
  it('idsync jobs retry', async () => {
    const prefix = uniquePrefix('progress-retry');
    const redisUrl = inject('redisUrl');
    const { log } = capturingLogger('silent');
    const pool = await startWorkerPool({
      redisUrl,
      prefix,
      log,
      concurrency: 1,
      handler: async () => {
        throw new Error('platform said 503');
      },
    });
    const connection = createRedisConnection(redisUrl, 'producer');
    const queues = openQueues(connection, prefix);
    try {
      for (const lane of LANES) {
        await queues[lane].add(
          'user',
          { tenantId: 't', subjectType: 'user', subjectId: `u-${lane}` },
          { attempts: 1, removeOnFail: false },
        );
      }
      await expect
        .poll(
          async () => (await Promise.all(LANES.map((l) => queues[l].getFailedCount()))).every((n) => n === 1),
          {
            timeout: 10_000,
          },
        )
        .toBe(true);
      await pool.close();
      const result = await runCli(['jobs', 'retry'], {
        DATABASE_URL: 'postgres://unused@127.0.0.1:1/x',
        REDIS_URL: redisUrl,
        IDSYNC_QUEUE_PREFIX: prefix,
      });
      expect(result.code).toBe(0);
      expect(result.stdout).toBe('retried 3 jobs\n');
      const lines = progressLines(result.stderr, 'jobs retry');
      expect(lines[0]).toEqual({ progress: 'jobs retry', done: 0, total: 3 });
      expect(lines.at(-1)).toMatchObject({ progress: 'jobs retry', done: 3, total: 3 });
    } finally {
      await pool.close();
      await closeQueues(queues);
      connection.disconnect();
    }
  });

  it('idsync drift scan', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    await database.sql`
      INSERT INTO teams (tenant_id, name) VALUES (${tenant.id}, 'core'), (${tenant.id}, 'web')`;
    const result = await runCli(['drift', 'scan', '--tenant', 'acme'], {
      DATABASE_URL: database.url,
      REDIS_URL: inject('redisUrl'),
      IDSYNC_QUEUE_PREFIX: uniquePrefix('progress-scan'),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^stored drift report #1 [0-9a-f-]{36}\n/);
    expect(result.stdout).not.toContain('"progress"');
    const lines = progressLines(result.stderr, 'drift scan');
    expect(lines[0]).toEqual({ progress: 'drift scan', done: 0, total: 2 });
    const last = lines.at(-1)!;
    // desired state, the Enterprise Account, two teams, the stored report.
    expect(last).toEqual({ progress: 'drift scan', done: 5, total: 5 });
  });
});
