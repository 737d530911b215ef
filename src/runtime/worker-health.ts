import type { Redis } from 'ioredis';
import type { Sql } from '../db/client.js';
import { createApp, type ReadinessCheck } from '../http/app.js';
import { asSettingError, listen, type RunningHttpServer } from '../http/server.js';
import type { LaneQueues } from '../jobs/queues.js';
import type { WorkerActivity } from '../jobs/workers.js';
import type { Logger } from '../log.js';
import { type MetricsAccess, metricsRouter } from '../metrics/endpoint.js';

/** Where the worker's health endpoints listen unless WORKER_HEALTH_PORT says otherwise. */
export const DEFAULT_WORKER_HEALTH_PORT = 8081;

export interface WorkerHealthOptions {
  /** Undefined: DEFAULT_WORKER_HEALTH_PORT. */
  port: number | undefined;
  /** The port was not chosen by the operator: if it is taken, listen on a free one and log it. */
  fallbackToFreePort: boolean;
  host: string;
  log: Logger;
  sql: Sql;
  redis: Redis;
  queues: LaneQueues;
  activity: WorkerActivity;
  /** No job started or finished here for this long while work waits (or runs): not ready. */
  stuckAfterMs: number;
  /** Who may read /metrics here (the same rule as on the API port). */
  metrics: MetricsAccess;
}

/**
 * The worker's own /healthz and /readyz, on WORKER_HEALTH_PORT: a process supervisor (Docker
 * HEALTHCHECK, a Kubernetes probe) restarts a worker whose jobs have stopped moving — a wedged pool
 * answers every ping, so liveness of the process alone proves nothing.
 */
export async function startWorkerHealth(options: WorkerHealthOptions): Promise<RunningHttpServer> {
  const app = createApp({
    log: options.log,
    readiness: [
      {
        name: 'postgres',
        check: async () => {
          await options.sql`SELECT 1`;
        },
      },
      {
        name: 'redis',
        check: async () => {
          await options.redis.ping();
        },
      },
      progressCheck(options),
    ],
    mounts: [{ path: '/', router: metricsRouter(options.metrics) }],
  });
  const port = options.port ?? DEFAULT_WORKER_HEALTH_PORT;
  try {
    return await listen(app, port, options.host);
  } catch (error) {
    if (!options.fallbackToFreePort || (error as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
      throw asSettingError(error, port, options.host, 'WORKER_HEALTH_PORT');
    }
    const server = await listen(app, 0, options.host);
    options.log.warn(
      { component: 'worker-health', port: server.port },
      `port ${port} is taken (another worker on this host?): worker health listens on ${server.port}; set WORKER_HEALTH_PORT to choose`,
    );
    return server;
  }
}

/**
 * Stuck-worker detection. Work is waiting when jobs wait in the deprovision or reconcile lane, or run in
 * this process. The clock starts at the later of the last job that moved here and the moment waiting
 * work was first seen, so a worker idle for hours is not called stuck the instant a job arrives.
 */
export function progressCheck(options: {
  queues: LaneQueues;
  activity: WorkerActivity;
  stuckAfterMs: number;
}): ReadinessCheck {
  let waitingSince: number | undefined;
  return {
    name: 'jobs',
    check: async () => {
      const now = Date.now();
      const counts = await Promise.all(
        [options.queues.deprovision, options.queues.reconcile].map((q) =>
          q.getJobCounts('wait', 'prioritized'),
        ),
      );
      const waiting = counts.reduce((sum, c) => sum + (c.wait ?? 0) + (c.prioritized ?? 0), 0);
      const { running, lastProgressAt } = options.activity;
      if (waiting === 0 && running === 0) {
        waitingSince = undefined;
        return;
      }
      waitingSince ??= now;
      const stillFor = now - Math.max(lastProgressAt, waitingSince);
      if (stillFor >= options.stuckAfterMs) {
        throw new Error(
          `stuck: no job has started or finished here for ${Math.round(stillFor / 1000)} s while ${waiting} wait and ${running} run`,
        );
      }
    },
  };
}
