import { type Job, Worker } from 'bullmq';
import type { Logger } from '../log.js';
import { createRedisConnection } from './connection.js';
import { type JobPayload, LANES, type Lane, queueName } from './queues.js';

export interface JobContext {
  lane: Lane;
  jobId: string;
  attempt: number;
  log: Logger;
}

export type JobHandler = (payload: JobPayload, context: JobContext) => Promise<void>;

export interface WorkerPoolOptions {
  redisUrl: string;
  prefix: string;
  handler: JobHandler;
  log: Logger;
  /** Concurrency of the deprovision and reconcile lanes; scans run one at a time per process. */
  concurrency: number;
  /** Job lock duration; a crashed worker's jobs are recovered as stalled after about this long. */
  lockMs?: number;
}

export interface WorkerPool {
  /** Stops taking jobs and waits for the ones in progress to finish. */
  close(): Promise<void>;
}

export async function startWorkerPool(options: WorkerPoolOptions): Promise<WorkerPool> {
  const connections = LANES.map(() => createRedisConnection(options.redisUrl, 'worker'));
  const workers = LANES.map((lane, index) => {
    const worker = new Worker<JobPayload>(
      queueName(lane),
      async (job: Job<JobPayload>) => {
        const log = options.log.child({
          lane,
          jobId: job.id,
          subject: `${job.data.subjectType}:${job.data.subjectId}`,
        });
        const started = performance.now();
        await options.handler(job.data, { lane, jobId: job.id ?? '', attempt: job.attemptsMade + 1, log });
        log.debug({ ms: Math.round(performance.now() - started) }, 'job done');
      },
      {
        connection: connections[index]!,
        prefix: options.prefix,
        concurrency: lane === 'scan' ? 1 : options.concurrency,
        ...(options.lockMs ? { lockDuration: options.lockMs, stalledInterval: options.lockMs } : {}),
      },
    );
    worker.on('failed', (job, error) =>
      options.log.warn(
        { lane, jobId: job?.id, attempt: job?.attemptsMade, err: { message: error.message } },
        'job failed; BullMQ retries it with back-off',
      ),
    );
    worker.on('error', (error) =>
      options.log.warn({ lane, err: { message: error.message } }, 'worker error'),
    );
    return worker;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return {
    close: async () => {
      await Promise.all(workers.map((w) => w.close()));
      for (const connection of connections) connection.disconnect();
    },
  };
}
