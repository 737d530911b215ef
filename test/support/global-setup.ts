import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { runMigrations } from '../../src/db/migrate.js';
import { startEmbeddedPostgres } from '../../src/runtime/embedded-postgres.js';
import { startEmbeddedRedis } from '../../src/runtime/embedded-redis.js';
import type { LocalServer } from '../../src/runtime/processes.js';
import { freePort } from './ports.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A URL to the server's maintenance database, for creating one database per test file. */
    postgresAdminUrl: string;
    /** A migrated database each test file clones (CREATE DATABASE … TEMPLATE). */
    templateDatabase: string;
    redisUrl: string;
  }
}

const TEMPLATE = 'idsync_test_template';

/**
 * Real servers for the whole run: the same launchers the daemon's embedded default uses, or the
 * servers DATABASE_URL and REDIS_URL point at.
 */
export default async function setup(project: TestProject) {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-test-'));
  // Run as root, the embedded server runs as the postgres user, which must be able to enter this folder.
  chmodSync(scratch, 0o755);
  const started: LocalServer[] = [];
  const teardown = async () => {
    for (const server of started.reverse()) await server.stop().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  };
  try {
    let adminUrl = process.env.DATABASE_URL;
    if (!adminUrl) {
      const pg = await startEmbeddedPostgres({
        directory: path.join(scratch, 'postgres'),
        port: await freePort(),
        database: 'postgres',
        adoptRunning: false,
        // A throwaway cluster: durability buys nothing here and costs seconds.
        settings: {
          fsync: 'off',
          synchronous_commit: 'off',
          full_page_writes: 'off',
          max_connections: '400',
        },
      });
      started.push(pg);
      adminUrl = pg.url;
    }
    let redisUrl = process.env.REDIS_URL;
    if (!redisUrl) {
      const redis = await startEmbeddedRedis({
        directory: path.join(scratch, 'redis'),
        port: await freePort(),
        adoptRunning: false,
        persistent: false,
      });
      started.push(redis);
      redisUrl = redis.url;
    }

    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`DROP DATABASE IF EXISTS ${TEMPLATE} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${TEMPLATE}`);
    await admin.end();
    const templateUrl = new URL(adminUrl);
    templateUrl.pathname = `/${TEMPLATE}`;
    await runMigrations(templateUrl.toString());

    project.provide('postgresAdminUrl', adminUrl);
    project.provide('templateDatabase', TEMPLATE);
    project.provide('redisUrl', redisUrl);
  } catch (error) {
    await teardown();
    throw error;
  }
  return teardown;
}
