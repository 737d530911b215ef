import path from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';
import { startEmbeddedRedis } from './embedded-redis.js';
import type { LocalServer } from './processes.js';

/**
 * Where PostgreSQL and Redis come from: the URLs the operator configured, or — the laptop default —
 * real servers idsync starts itself with their data under IDSYNC_DATA_DIR, reused across restarts.
 */
export interface Endpoint {
  url: string;
  /** Stops the server if idsync started (or adopted) it; a no-op for configured URLs. */
  release(): Promise<void>;
  embedded: boolean;
}

const external = (url: string): Endpoint => ({ url, embedded: false, release: async () => {} });

const embedded = (server: LocalServer): Endpoint => ({
  url: server.url,
  embedded: true,
  release: () => server.stop(),
});

/**
 * @param adoptRunning the daemon takes over servers a killed earlier start left running and stops them
 *   when it exits; one-shot CLI commands use them as they are and leave them running.
 */
export async function provideDatabase(config: Config, log: Logger, adoptRunning: boolean): Promise<Endpoint> {
  if (config.databaseUrl) return external(config.databaseUrl);
  const server = await startEmbeddedPostgres({
    directory: path.join(config.dataDir, 'postgres'),
    port: config.embeddedPostgresPort,
    database: 'idsync',
    adoptRunning,
    onLog: (line) => log.debug({ component: 'embedded-postgres' }, line),
  });
  log.info({ component: 'embedded-postgres', reused: !server.owned }, 'embedded PostgreSQL ready');
  return embedded(server);
}

export async function provideRedis(config: Config, log: Logger, adoptRunning: boolean): Promise<Endpoint> {
  if (config.redisUrl) return external(config.redisUrl);
  const server = await startEmbeddedRedis({
    directory: path.join(config.dataDir, 'redis'),
    port: config.embeddedRedisPort,
    adoptRunning,
    persistent: true,
    onLog: (line) => log.debug({ component: 'embedded-redis' }, line),
  });
  log.info({ component: 'embedded-redis' }, 'embedded Redis ready');
  return embedded(server);
}
