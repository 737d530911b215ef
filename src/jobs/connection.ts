import { Redis, type RedisOptions } from 'ioredis';

/**
 * Two kinds of Redis connection, because BullMQ needs them to behave differently:
 * - a worker blocks on Redis and must wait out an outage rather than fail (maxRetriesPerRequest: null);
 * - a producer (the outbox relay, readiness checks) must fail fast while Redis is away, so the relay
 *   leaves rows in the outbox and tries again instead of piling commands up in memory.
 */
export type ConnectionPurpose = 'worker' | 'producer';

export function createRedisConnection(url: string, purpose: ConnectionPurpose): Redis {
  const options: RedisOptions =
    purpose === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: false }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000 };
  const connection = new Redis(url, {
    ...options,
    // Reconnect forever with a capped back-off: Redis coming back must be enough for idsync to recover.
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 6), 5_000),
  });
  // Errors surface through the commands that fail; an unhandled 'error' event would crash the process.
  connection.on('error', () => {});
  return connection;
}

/** Resolves once the connection is up, so a process does not report ready before Redis is reachable. */
export async function connectionReady(connection: Redis, timeoutMs = 30_000): Promise<void> {
  if (connection.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      connection.off('ready', onReady);
      reject(new Error(`Redis did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    function onReady() {
      clearTimeout(timer);
      resolve();
    }
    connection.once('ready', onReady);
  });
}
