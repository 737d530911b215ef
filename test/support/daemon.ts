import { inject } from 'vitest';
import { type Config, loadConfig } from '../../src/config.js';
import { type DaemonOptions, startDaemon } from '../../src/runtime/daemon.js';
import { uniquePrefix } from './database.js';

/** Config for a daemon inside a test: the test's own database and Redis, an ephemeral HTTP port. */
export function testConfig(databaseUrl: string, overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({}),
    databaseUrl,
    redisUrl: inject('redisUrl'),
    port: 0,
    outboxPollMs: 200,
    shutdownTimeoutMs: 5_000,
    driftTickMs: 0,
    workerHealthPort: 0,
    ...overrides,
  };
}

export function startTestDaemon(options: Omit<DaemonOptions, 'queuePrefix'> & { queuePrefix?: string }) {
  return startDaemon({ queuePrefix: uniquePrefix('daemon'), ...options });
}
