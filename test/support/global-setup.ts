import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { runMigrations } from '../../src/db/migrate.js';
import { startEmbeddedPostgres } from '../../src/runtime/embedded-postgres.js';
import { startEmbeddedRedis } from '../../src/runtime/embedded-redis.js';
import { isProcessAlive, type LocalServer, readPid, stopPid } from '../../src/runtime/processes.js';
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

/** The pid files of every server started under `directory`, by idsync or by a test. */
function serverPidFiles(directory: string): string[] {
  return readdirSync(directory, { recursive: true, encoding: 'utf8' })
    .filter((file) => /(^|\/)(postmaster\.pid|redis\.pid)$/.test(file))
    .map((file) => path.join(directory, file));
}

/**
 * Real servers for the whole run: the same launchers the daemon's embedded default uses, or the
 * servers DATABASE_URL and REDIS_URL point at.
 *
 * Everything a test writes goes to one scratch folder outside the checkout: the test processes inherit
 * TMPDIR and IDSYNC_DATA_DIR pointing into it. At the end every server whose pid file is in it is
 * stopped, so a test that timed out or a CLI process that was killed leaves nothing running.
 */
export default async function setup(project: TestProject) {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-test-'));
  // Run as root, the embedded server runs as the postgres user, which must be able to enter this folder.
  chmodSync(scratch, 0o755);
  const temporary = path.join(scratch, 'tmp');
  mkdirSync(temporary, { mode: 0o755 });
  // The CLI processes tests spawn keep the system's temporary folder, where tsx caches what it compiled.
  process.env.IDSYNC_TEST_SYSTEM_TMPDIR = os.tmpdir();
  process.env.TMPDIR = temporary;
  process.env.IDSYNC_DATA_DIR = path.join(scratch, 'data');
  const started: LocalServer[] = [];
  const teardown = async () => {
    for (const server of started.reverse()) await server.stop().catch(() => {});
    const leftovers = serverPidFiles(scratch)
      .map(readPid)
      .filter((pid): pid is number => pid !== undefined && isProcessAlive(pid));
    await Promise.all(leftovers.map((pid) => stopPid(pid, 'SIGTERM', 5_000)));
    rmSync(scratch, { recursive: true, force: true });
  };
  try {
    let adminUrl = process.env.DATABASE_URL;
    if (!adminUrl) {
      const pg = await startEmbeddedPostgres({
        directory: path.join(scratch, 'postgres'),
        port: await freePort(),
        database: 'postgres',
        role: 'owner' as const,
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
        role: 'owner' as const,
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
