import { type Config, ConfigError } from '../config.js';

/** Connections the HTTP side of a process uses by default (SCIM, SSO, admin API, readiness). */
const HTTP_CONNECTIONS = 18;

/**
 * A second, small pool of each serving process for the SCIM reads that are one short statement (a
 * `userName eq` lookup, a page among the first 1,000 users, a user by id). With more of them
 * in flight than connections, postgres.js pipelines them on a busy connection instead of one each: one
 * socket write and one backend wake-up carry several queries. Measured in the peers' load (16 clients,
 * `serve`, one process): PostgreSQL CPU per `userName eq` lookup −40 % and 12 % more lookups a second
 * than on the main pool of 20. Writes stay on the main pool: pipelined on one backend, each commit would
 * wait for the previous one's WAL flush instead of sharing it. Not part of DATABASE_POOL_SIZE.
 */
export const PIPELINED_READ_CONNECTIONS = 2;

/**
 * A third small pool of each serving process, for unfiltered pages by offset past the first 1,000 users:
 * statements that read many rows (every user the OFFSET skips) and are bound by PostgreSQL's CPU, where
 * more backends than cores only compete for them. On two connections their plans stay warm (PostgreSQL
 * keeps a generic plan per connection after five custom ones; spread over the main pool's 18, a client's
 * 100 pages were mostly planned anew, 1.3 ms each), and they never queue a short read behind them.
 * Measured (`serve`, one process, 100 pages of 100 at 16 clients on a fresh server): 410 and 430 → 530
 * and 530 pages/s. Not part of DATABASE_POOL_SIZE.
 */
export const PAGE_SCAN_CONNECTIONS = 2;

/**
 * What a worker process needs at most at once, one connection per thing that can run: each deprovision
 * and reconcile job holds exactly one (its lock and all its queries); a drift scan holds its lock and
 * queries beside it (2); the outbox relay (1) and the sweeper (1); the webhook dispatcher's and
 * deliveries' short transactions (2); and headroom for the short statements
 * beside them (a failure alert, a group fan-out, a platform stop) (3).
 */
export function workerConnections(workerConcurrency: number): { total: number; breakdown: string } {
  const parts = {
    deprovision: workerConcurrency,
    reconcile: workerConcurrency,
    scan: 2,
    relay: 1,
    sweeper: 1,
    webhooks: 2,
    headroom: 3,
  };
  const total = Object.values(parts).reduce((a, b) => a + b, 0);
  return {
    total,
    breakdown: Object.entries(parts)
      .map(([k, v]) => `${k} ${v}`)
      .join(' + '),
  };
}

/**
 * The pool size of a process: DATABASE_POOL_SIZE if set — refused when smaller than what the workers
 * can hold at once, since a pool smaller than that can wedge a worker for good — else sized from the
 * mode and WORKER_CONCURRENCY.
 */
export function databasePoolSize(
  mode: 'start' | 'serve' | 'worker',
  config: Pick<Config, 'databasePoolSize' | 'workerConcurrency'>,
): number {
  const workers = mode === 'serve' ? undefined : workerConnections(config.workerConcurrency);
  const minimum = (workers?.total ?? 0) + (mode === 'worker' ? 0 : 2);
  if (config.databasePoolSize === undefined) {
    return (workers?.total ?? 0) + (mode === 'worker' ? 0 : HTTP_CONNECTIONS);
  }
  if (config.databasePoolSize < minimum) {
    throw new ConfigError(
      'DATABASE_POOL_SIZE',
      `must be at least ${minimum} for \`idsync ${mode}\` with WORKER_CONCURRENCY=${config.workerConcurrency}` +
        (workers ? ` (${workers.breakdown}${mode === 'worker' ? '' : ' + HTTP 2'})` : ''),
    );
  }
  return config.databasePoolSize;
}

/**
 * Connections a process of `mode` opens at most: its pool, the serving edge's two small pools, and the
 * long-lived sessions beside them (LISTEN for tenant changes and webhook wake-ups, a statistics round).
 */
function connectionsPerProcess(
  mode: 'start' | 'serve' | 'worker',
  config: Pick<Config, 'databasePoolSize' | 'workerConcurrency'>,
): number {
  const edge = mode === 'worker' ? 0 : PIPELINED_READ_CONNECTIONS + PAGE_SCAN_CONNECTIONS;
  return databasePoolSize(mode, config) + edge + SESSIONS_BESIDE_POOLS;
}
const SESSIONS_BESIDE_POOLS = 3;

/**
 * `max_connections` for the PostgreSQL idsync starts itself: what its processes can open at once, plus
 * room for the CLI, a `psql` and PostgreSQL's reserved superuser slots; never below PostgreSQL's default
 * of 100. With the default (100) `idsync start` on 4 cores could open more connections than allowed.
 */
export function embeddedMaxConnections(
  mode: 'start' | 'serve' | 'worker',
  config: Pick<Config, 'databasePoolSize' | 'workerConcurrency'>,
  processes: number,
): number {
  return Math.max(100, processes * connectionsPerProcess(mode, config) + 20);
}
