import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireDataDirLock, DataDirInUseError, lockPath } from '../src/runtime/data-dir-lock.js';
import { startEmbeddedPostgres } from '../src/runtime/embedded-postgres.js';
import { freePort } from './support/ports.js';

/*
 * A pid file outlives its process (kill -9, a container OOM-killed, a power cut), and its pid is then
 * often another process's: pid 1 of the next container, a reused pid on a host. Neither the data
 * directory's lock nor PostgreSQL's postmaster.pid may then keep idsync from starting again.
 */
describe('pid files left by processes that died', async () => {
  const children: ChildProcess[] = [];
  /** A live process that is neither idsync nor PostgreSQL, standing in for whatever got the pid. */
  const bystander = () => {
    const child = spawn('sleep', ['300'], { stdio: 'ignore' });
    children.push(child);
    return child.pid!;
  };
  afterAll(() => {
    for (const child of children) child.kill('SIGKILL');
  });

  const holder = (pid: number) =>
    JSON.stringify({ pid, command: 'start', startedAt: new Date().toISOString(), publicUrl: 'http://x' });

  it('the data directory lock: a dead owner whose pid is another program, or this very process, is taken over', async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), 'idsync-lock-'));
    writeFileSync(lockPath(directory), holder(bystander()));
    const first = await acquireDataDirLock(directory, { command: 'start', publicUrl: 'http://me' }, 0);
    first.release();
    writeFileSync(lockPath(directory), holder(process.pid));
    const second = await acquireDataDirLock(directory, { command: 'start', publicUrl: 'http://me' }, 0);
    second.release();
    // A live idsync (another process of this Node executable) still holds it.
    const idsync = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 300000)'], { stdio: 'ignore' });
    children.push(idsync);
    writeFileSync(lockPath(directory), holder(idsync.pid!));
    await expect(
      acquireDataDirLock(directory, { command: 'start', publicUrl: 'http://me' }, 0),
    ).rejects.toBeInstanceOf(DataDirInUseError);
  });

  it('PostgreSQL: a postmaster.pid naming another program is removed, and PostgreSQL starts', async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), 'idsync-pg-'));
    chmodSync(directory, 0o755); // run as root, the server runs as postgres, which must enter it
    const clusterDir = path.join(directory, 'postgres');
    const options = {
      directory: clusterDir,
      port: await freePort(),
      portSetting: 'IDSYNC_EMBEDDED_PG_PORT',
      database: 'idsync',
      role: 'owner' as const,
    };
    const first = await startEmbeddedPostgres(options);
    await first.stop();
    // As a kill -9 leaves it, with the pid now another program's and a port nobody listens on.
    writeFileSync(
      path.join(clusterDir, 'postmaster.pid'),
      `${bystander()}\n${clusterDir}\n${Math.floor(Date.now() / 1000)}\n${await freePort()}\n`,
    );
    const again = await startEmbeddedPostgres(options);
    try {
      expect(again.adopted).toBe(false);
      const sql = postgres(again.url, { max: 1, onnotice: () => {} });
      expect((await sql`SELECT 1 AS one`)[0]!.one).toBe(1);
      await sql.end();
    } finally {
      await again.stop();
    }
  }, 180_000);
});
