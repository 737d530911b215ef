import type { Redis } from 'ioredis';
import { type Config, ConfigError, loadConfig } from '../config.js';
import { connectDatabase, type DatabaseHandle } from '../db/client.js';
import { runMigrations } from '../db/migrate.js';
import { connectionReady, createRedisConnection } from '../jobs/connection.js';
import { closeQueues, type LaneQueues, openQueues } from '../jobs/queues.js';
import { createLogger, type Logger } from '../log.js';
import { type ConnectorFor, connectorFactory } from '../platform/factory.js';
import { provideDatabase, provideRedis } from '../runtime/infrastructure.js';

/** Exit codes, after sysexits.h, so scripts can tell a typo from a broken database. */
export const EXIT = { ok: 0, failure: 1, usage: 64, dataError: 65, config: 78 } as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError)
      throw new CliError(`configuration error: ${error.message}`, EXIT.config);
    throw error;
  }
}

/** Runs a one-shot command against the database (starting the embedded one if idsync is not running). */
export async function withDatabase<T>(
  work: (database: DatabaseHandle, config: Config) => Promise<T>,
): Promise<T> {
  const config = configOrExit();
  // One-shot commands keep their own chatter quiet; their output is the answer, not a log.
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const endpoint = await provideDatabase(config, log, false);
  try {
    await runMigrations(endpoint.url);
    const database = connectDatabase(endpoint.url, { max: 2 });
    try {
      return await work(database, config);
    } finally {
      await database.close();
    }
  } finally {
    await endpoint.release();
  }
}

export interface PlatformContext {
  database: DatabaseHandle;
  redis: Redis;
  queues: LaneQueues;
  config: Config;
  log: Logger;
  connectorFor: ConnectorFor;
}

/** Runs a one-shot command with a Redis connection and the queues (the embedded Redis if not configured). */
export async function withQueueConnection<T>(
  config: Config,
  work: (redis: Redis, queues: LaneQueues, log: Logger) => Promise<T>,
): Promise<T> {
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const endpoint = await provideRedis(config, log, false);
  const redis = createRedisConnection(endpoint.url, 'producer');
  try {
    await connectionReady(redis);
    const queues = openQueues(redis, config.queuePrefix);
    try {
      return await work(redis, queues, log);
    } finally {
      await closeQueues(queues);
    }
  } finally {
    redis.disconnect();
    await endpoint.release();
  }
}

/**
 * A one-shot command that talks to platforms: the database, Redis (shared rate budgets, queues) and
 * each tenant's connector.
 */
export async function withPlatform<T>(work: (context: PlatformContext) => Promise<T>): Promise<T> {
  return withDatabase((database, config) =>
    withQueueConnection(config, (redis, queues, log) =>
      work({
        database,
        redis,
        queues,
        config,
        log,
        connectorFor: connectorFactory({ database, redis, config, log }),
      }),
    ),
  );
}
