import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { embeddedMaxConnections } from '../src/runtime/pool-size.js';
import { isProcessAlive, readPid } from '../src/runtime/processes.js';
import { runCli, spawnCli } from './support/cli.js';
import { freePort } from './support/ports.js';

/** Waits for `pattern` in the child's stdout and returns everything printed so far. */
function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  let seen = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${pattern} within ${timeoutMs} ms; saw:\n${seen}`)),
      timeoutMs,
    );
    child.stdout?.on('data', (chunk) => {
      seen += chunk;
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code} before ${pattern}; saw:\n${seen}`)));
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('idsync start on embedded defaults (the Quick start)', async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idsync-quickstart-'));
  chmodSync(dataDir, 0o755);
  const children: ChildProcess[] = [];
  afterAll(() => {
    // A test that failed half-way must not leave its daemon running.
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });
  // The embedded servers choose free ports themselves (no IDSYNC_EMBEDDED_*_PORT); one process is enough.
  // Workers that may hold more connections than PostgreSQL allows by default (100).
  const env = {
    IDSYNC_DATA_DIR: dataDir,
    PORT: String(await freePort()),
    WORKER_PROCESSES: '1',
    WORKER_CONCURRENCY: '60',
  };
  const postgresPidFile = path.join(dataDir, 'postgres', 'postmaster.pid');
  const redisPidFile = path.join(dataDir, 'redis', 'redis.pid');

  it('prints a SCIM base URL and token, becomes ready, and Ctrl-C leaves no server behind', async () => {
    const started = Date.now();
    const child = spawnCli(['start'], env);
    children.push(child);
    const exited = exitOf(child);
    const output = await waitForOutput(child, /Press Ctrl-C to stop/, 110_000);
    expect(Date.now() - started).toBeLessThan(110_000);
    expect(output).toContain(`SCIM base URL:  http://localhost:${env.PORT}/scim/v2`);
    expect(output).toMatch(/SCIM token:\s+scim_[0-9a-f]{16}_\S{43}/);

    const ready = await fetch(`http://127.0.0.1:${env.PORT}/readyz`);
    expect(ready.status).toBe(200);
    const postgresPid = readPid(postgresPidFile)!;
    const redisPid = readPid(redisPidFile)!;
    expect(isProcessAlive(postgresPid)).toBe(true);
    expect(isProcessAlive(redisPid)).toBe(true);
    // Sized for what the processes can open at once: 2 × 60 + 9 for the workers, 18 + 4 for the API.
    const maxConnections = embeddedMaxConnections(
      'start',
      { databasePoolSize: undefined, workerConcurrency: 60 },
      1,
    );
    expect(maxConnections).toBeGreaterThan(129 + 18 + 4);
    expect(readFileSync(`/proc/${postgresPid}/cmdline`, 'utf8').split('\0')).toContain(
      `max_connections=${maxConnections}`,
    );

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(isProcessAlive(postgresPid)).toBe(false);
    expect(isProcessAlive(redisPid)).toBe(false);
  });

  it('reuses the data on the next start: same tenant, no new token', async () => {
    const child = spawnCli(['start'], env);
    children.push(child);
    const exited = exitOf(child);
    const output = await waitForOutput(child, /Press Ctrl-C to stop/, 110_000);
    expect(output).not.toContain('SCIM token:');

    // A one-shot command while the daemon runs uses the same embedded server and leaves it running.
    const list = await runCli(['tenant', 'list'], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^default\tid=/);
    expect((await fetch(`http://127.0.0.1:${env.PORT}/readyz`)).status).toBe(200);

    const postgresPid = readPid(postgresPidFile)!;
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(isProcessAlive(postgresPid)).toBe(false);
  });

  it('creates and rotates tenants from the CLI with the embedded database not running', async () => {
    const created = await runCli(['tenant', 'create', 'acme'], env);
    expect(created.code).toBe(0);
    const token = /SCIM token:\s+(\S+)/.exec(created.stdout)?.[1];
    expect(token).toMatch(/^scim_/);
    const duplicate = await runCli(['tenant', 'create', 'acme'], env);
    expect(duplicate.code).toBe(65);
    expect(duplicate.stderr.trim()).toBe('idsync: a tenant named "acme" already exists');
    const rotated = await runCli(['tenant', 'rotate-token', 'acme'], env);
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).not.toContain(token!);
    expect(readFileSync(path.join(dataDir, 'postgres.password'), 'utf8').length).toBeGreaterThan(10);
    expect(readPid(postgresPidFile)).toBeUndefined();
  });
});

describe('one idsync per data directory', async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idsync-lock-'));
  chmodSync(dataDir, 0o755);
  const publicUrl = `http://127.0.0.1:${await freePort()}`;
  const env = {
    IDSYNC_DATA_DIR: dataDir,
    PORT: new URL(publicUrl).port,
    PUBLIC_URL: publicUrl,
    WORKER_PROCESSES: '1',
  };
  const running: ChildProcess[] = [];
  afterAll(async () => {
    for (const child of running) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });
  const lock = () =>
    JSON.parse(readFileSync(path.join(dataDir, 'idsync.lock'), 'utf8')) as {
      pid: number;
      publicUrl: string;
      postgresPort: number;
      redisPort: number;
    };

  it('a second start refuses (exit 75, naming the first) and leaves the first serving', async () => {
    const first = spawnCli(['start'], env);
    running.push(first);
    await waitForOutput(first, /Press Ctrl-C to stop/, 110_000);
    const holder = lock();
    expect(holder).toMatchObject({ pid: first.pid, publicUrl });
    expect(holder.postgresPort).toBeGreaterThan(0);
    expect(holder.redisPort).toBeGreaterThan(0);

    const second = await runCli(['start'], { ...env, PORT: String(await freePort()), PUBLIC_URL: '' });
    expect(second.code).toBe(75);
    expect(second.stderr).toContain(`idsync start (pid ${first.pid} at ${publicUrl}`);
    expect(second.stderr).toContain('set IDSYNC_DATA_DIR to another directory');

    expect((await fetch(`${publicUrl}/readyz`)).status).toBe(200);
    expect(isProcessAlive(readPid(path.join(dataDir, 'postgres', 'postmaster.pid'))!)).toBe(true);
  });

  it("one-shot commands print the running daemon's URLs, whatever PORT and PUBLIC_URL they see", async () => {
    const created = await runCli(['tenant', 'create', 'acme'], { IDSYNC_DATA_DIR: dataDir, PORT: '9' });
    expect(created.code).toBe(0);
    expect(created.stdout).toContain(`SCIM base URL:  ${publicUrl}/scim/v2`);
    const token = /SCIM token:\s+(\S+)/.exec(created.stdout)![1]!;
    const users = await fetch(`${publicUrl}/scim/v2/Users`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(users.status).toBe(200);
  });

  it('a start after the owner was killed adopts its servers and stops them at exit', async () => {
    const first = running[0]!;
    const postgresPid = readPid(path.join(dataDir, 'postgres', 'postmaster.pid'))!;
    const redisPid = readPid(path.join(dataDir, 'redis', 'redis.pid'))!;
    first.kill('SIGKILL');
    await exitOf(first);
    // Its servers run in their own process group, so they outlive a kill -9 of idsync.
    expect(isProcessAlive(postgresPid)).toBe(true);

    const next = spawnCli(['start'], env);
    running.push(next);
    const exited = exitOf(next);
    await waitForOutput(next, /Press Ctrl-C to stop/, 110_000);
    expect(lock().pid).toBe(next.pid);
    expect(readPid(path.join(dataDir, 'postgres', 'postmaster.pid'))).toBe(postgresPid);
    next.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(isProcessAlive(postgresPid)).toBe(false);
    expect(isProcessAlive(redisPid)).toBe(false);
    expect(existsSync(path.join(dataDir, 'idsync.lock'))).toBe(false);
  });

  it('a start needing more connections than the PostgreSQL it adopts allows restarts that PostgreSQL', async () => {
    const first = spawnCli(['start'], env);
    running.push(first);
    await waitForOutput(first, /Press Ctrl-C to stop/, 110_000);
    const postgresPid = readPid(path.join(dataDir, 'postgres', 'postmaster.pid'))!;
    first.kill('SIGKILL');
    await exitOf(first);
    expect(isProcessAlive(postgresPid)).toBe(true);

    // More workers than the left-over server was sized for.
    const next = spawnCli(['start'], { ...env, WORKER_CONCURRENCY: '90' });
    running.push(next);
    const exited = exitOf(next);
    await waitForOutput(next, /Press Ctrl-C to stop/, 110_000);
    const restartedPid = readPid(path.join(dataDir, 'postgres', 'postmaster.pid'))!;
    expect(restartedPid).not.toBe(postgresPid);
    expect(isProcessAlive(postgresPid)).toBe(false);
    const wanted = embeddedMaxConnections('start', { databasePoolSize: undefined, workerConcurrency: 90 }, 1);
    expect(readFileSync(`/proc/${restartedPid}/cmdline`, 'utf8').split('\0')).toContain(
      `max_connections=${wanted}`,
    );
    next.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(isProcessAlive(restartedPid)).toBe(false);
  });
});
