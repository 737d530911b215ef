import { type Job, Worker } from 'bullmq';
import { rootCause } from '../errors.js';
import { type Logger, withoutBoundValues } from '../log.js';
import { jobDuration, jobsFailed, jobsStalled } from '../metrics/registry.js';
import { createRedisConnection } from './connection.js';
import { backoffDelay, type JobPayload, LANES, type Lane, queueName } from './queues.js';
import { settlesWithin } from './settles-within.js';

/** A job whose worker died this many times while running it fails; far more than crashes in a row. */
export const DEFAULT_MAX_STALLED_COUNT = 10;

/**
 * How long one attempt may run before it is abandoned and retried with back-off. A deprovision or
 * reconcile takes seconds; a platform request waits at most its rate-limit patience (2 minutes) for the
 * budget, so an attempt of a few requests stays well inside this even on an exhausted budget. A scan
 * lists a whole account. The fault suite's PostgreSQL restart left deprovision attempts waiting on
 * statements the driver never settled (patches/postgres+3.4.9.patch fixes that), with no query running
 * and their workers renewing the jobs' locks: the users' offboarding would have waited for good. This is
 * the net for any other such wait. An abandoned attempt keeps its connection and the user's lock until it
 * settles; the retry waits its turn on that lock and redoes only what is not done yet.
 */
export const ATTEMPT_TIMEOUT_MS: Readonly<Record<Lane, number>> = {
  deprovision: 10 * 60_000,
  reconcile: 10 * 60_000,
  scan: 60 * 60_000,
};

export interface JobContext {
  lane: Lane;
  jobId: string;
  attempt: number;
  log: Logger;
  /** Aborted when the process is shutting down and cannot wait for the job any longer, or the attempt ran out of time. */
  signal?: AbortSignal;
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
  /** ATTEMPT_TIMEOUT_MS unless set (tests). */
  attemptTimeoutMs?: Readonly<Record<Lane, number>>;
}

/** What the worker's health endpoint reads: is anything moving in this process? */
export interface WorkerActivity {
  /** Jobs this process is running now. */
  running: number;
  /** When a job last started or finished here (or the pool started), in ms since the epoch. */
  lastProgressAt: number;
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
  activity: WorkerActivity;
  /**
   * Stops taking jobs and waits up to `timeoutMs` for the ones in progress; then aborts them, so their
   * jobs fail this attempt and are retried by another worker (a job's writes are one transaction, which
   * the abort rolls back), and returns.
   */
  close(timeoutMs?: number): Promise<void>;
}

/** Thrown into a job that shutdown cut short; BullMQ retries the job with back-off. */
export class JobAbortedError extends Error {
  constructor() {
    super('worker shutting down: job aborted, to be retried');
    this.name = 'JobAbortedError';
  }
}

/** An attempt that ran past its lane's ATTEMPT_TIMEOUT_MS: it fails, and BullMQ retries it with back-off. */
export class AttemptTimedOutError extends Error {
  constructor(timeoutMs: number) {
    super(`the attempt did not finish within ${Math.round(timeoutMs / 1000)} s; abandoned, to be retried`);
    this.name = 'AttemptTimedOutError';
  }
}

export async function startWorkerPool(options: WorkerPoolOptions): Promise<WorkerPool> {
  const connections = LANES.map(() => createRedisConnection(options.redisUrl, 'worker'));
  const activity: WorkerActivity = { running: 0, lastProgressAt: Date.now() };
  const workers = LANES.map((lane, index) => {
    const worker = new Worker<JobPayload>(
      queueName(lane),
      async (job: Job<JobPayload>, _token, signal) => {
        const log = options.log.child({
          lane,
          jobId: job.id,
          subject: `${job.data.subjectType}:${job.data.subjectId}`,
        });
        const started = performance.now();
        let result: 'completed' | 'failed' = 'failed';
        activity.running += 1;
        activity.lastProgressAt = Date.now();
        // One timer per attempt, cleared when it settles: thousands of jobs a second must not leave as
        // many ten-minute timers behind.
        const timeoutMs = (options.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS)[lane];
        const attempt = new AbortController();
        const deadline = setTimeout(() => attempt.abort(new AttemptTimedOutError(timeoutMs)), timeoutMs);
        deadline.unref();
        const onShutdown = () => attempt.abort(new JobAbortedError());
        if (signal?.aborted) onShutdown();
        signal?.addEventListener('abort', onShutdown, { once: true });
        try {
          await untilAborted(
            options.handler(job.data, {
              lane,
              jobId: job.id ?? '',
              attempt: job.attemptsMade + 1,
              log,
              signal: attempt.signal,
            }),
            attempt.signal,
          );
          result = 'completed';
        } catch (error) {
          // BullMQ keeps the message as the job's failedReason (shown by `idsync jobs failed`): the
          // driver's error without the query's bound values.
          if (error instanceof JobAbortedError) throw error;
          const cause = rootCause(error);
          const sanitized = new Error(
            withoutBoundValues(cause instanceof Error ? cause.message : String(cause)),
          );
          sanitized.name = cause instanceof Error ? cause.name : 'Error';
          throw sanitized;
        } finally {
          clearTimeout(deadline);
          signal?.removeEventListener('abort', onShutdown);
          activity.running -= 1;
          activity.lastProgressAt = Date.now();
          jobDuration.observe({ lane, result }, (performance.now() - started) / 1000);
        }
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
      jobsFailed.inc({ lane, final: String(final) });
      options.log.warn(
        { lane, jobId: job?.id, attempt: attemptsMade, err: error },
        final
          ? 'job failed for good: no attempt left (the sweeper re-sends unfinished work)'
          : 'job failed; it will be retried with back-off',
      );
      if (job && options.onFailure) {
        options
          .onFailure({ lane, jobId: job.id ?? '', payload: job.data, attemptsMade, final, error })
          .catch((alertError: Error) =>
            options.log.error({ lane, err: alertError }, 'could not record a job failure'),
          );
      }
    });
    // A stalled job's worker died or wedged while holding it: BullMQ hands it to another worker.
    worker.on('stalled', () => jobsStalled.inc({ lane }));
    worker.on('error', (error) => options.log.warn({ lane, err: error }, 'worker error'));
    return worker;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return {
    activity,
    close: async (timeoutMs = Number.POSITIVE_INFINITY) => {
      const graceful = Promise.all(workers.map((w) => w.close()));
      if (!(await settlesWithin(graceful, timeoutMs))) {
        options.log.warn(
          { running: activity.running, timeoutMs },
          'shutdown: jobs still running after the timeout; aborting them for another worker to retry',
        );
        for (const worker of workers) worker.cancelAllJobs('shutdown');
        // The aborted jobs record their failed attempt (so they are retried at once, not after the lock
        // expires); if Redis cannot take that, the lock expiry hands them over instead.
        if (!(await settlesWithin(graceful, 2_000))) await Promise.all(workers.map((w) => w.close(true)));
      }
      for (const connection of connections) connection.disconnect();
    },
  };
}

/** The work's outcome, or the abort's reason (a JobAbortedError or an AttemptTimedOutError) if that comes first. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
