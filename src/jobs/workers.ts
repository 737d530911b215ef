import { type Job, Worker } from 'bullmq';
import type { Logger } from '../log.js';
import { createRedisConnection } from './connection.js';
import { backoffDelay, type JobPayload, LANES, type Lane, queueName } from './queues.js';

/** A job whose worker died this many times while running it fails; far more than crashes in a row. */
export const DEFAULT_MAX_STALLED_COUNT = 10;

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
  /**
   * How often a job may be found stalled (its worker died while running it) and run again before BullMQ
   * fails it. BullMQ's default of 1 fails a job whose worker died twice, whatever its attempts say.
   */
  maxStalledCount?: number;
  /** Told of every failed attempt: whether BullMQ will try again, and how often it has tried. */
  onFailure?: (failure: JobFailure) => Promise<void>;
}

export interface JobFailure {
  lane: Lane;
  jobId: string;
  payload: JobPayload;
  attemptsMade: number;
  /** No further attempt: out of attempts, or stalled more often than maxStalledCount. */
  final: boolean;
  error: Error;
}

/** A job stalled too often fails with this reason and is not retried by BullMQ. */
const STALLED_TOO_OFTEN = 'stalled more than allowable limit';

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
        maxStalledCount: options.maxStalledCount ?? DEFAULT_MAX_STALLED_COUNT,
        settings: { backoffStrategy: (attemptsMade: number) => backoffDelay(attemptsMade) },
      },
    );
    worker.on('failed', (job, error) => {
      const attemptsMade = job?.attemptsMade ?? 0;
      const final =
        !job || error.message.includes(STALLED_TOO_OFTEN) || attemptsMade >= (job.opts.attempts ?? 1);
      options.log.warn(
        { lane, jobId: job?.id, attempt: attemptsMade, err: { message: error.message } },
        final
          ? 'job failed for good: no attempt left (the sweeper re-sends unfinished work)'
          : 'job failed; it will be retried with back-off',
      );
      if (job && options.onFailure) {
        options
          .onFailure({ lane, jobId: job.id ?? '', payload: job.data, attemptsMade, final, error })
          .catch((alertError: Error) =>
            options.log.error(
              { lane, err: { message: alertError.message } },
              'could not record a job failure',
            ),
          );
      }
    });
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
