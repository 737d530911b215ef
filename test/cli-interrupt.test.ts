import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readPid } from '../src/runtime/processes.js';
import { runCli, spawnCli } from './support/cli.js';

/*
 * The embedded servers run in their own process group, so the Ctrl-C a terminal sends reaches idsync
 * alone. A one-shot command that started them must stop them itself when interrupted, not leave them
 * running until some later start adopts them.
 */
describe('a one-shot command interrupted by a signal', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idsync-interrupt-'));
  chmodSync(dataDir, 0o755); // run as root, the embedded PostgreSQL runs as postgres, which must enter it
  const postmasterPid = path.join(dataDir, 'postgres', 'postmaster.pid');
  const leftRunning = [postmasterPid];
  afterAll(() => {
    for (const file of leftRunning) {
      const pid = readPid(file);
      if (pid) process.kill(pid, 'SIGKILL'); // only when the command left it running
    }
  });

  it('stops the embedded PostgreSQL it started, releases the data directory and exits 130', async () => {
    const env = { IDSYNC_DATA_DIR: dataDir };
    expect((await runCli(['tenant', 'create', 'acme'], env)).code).toBe(0);
    // An import reading a pipe nobody writes to: it waits there, with PostgreSQL started and migrated.
    const pipe = path.join(dataDir, 'rows.csv');
    execFileSync('mkfifo', [pipe]);
    const writer = openSync(pipe, 'r+'); // keeps the pipe open, so the reader's open returns at once
    let writerOpen = true;
    try {
      const command = spawnCli(['import', pipe, '--tenant', 'acme'], env);
      let stderr = '';
      command.stderr!.on('data', (chunk) => {
        stderr += chunk;
      });
      const exited = once(command, 'exit');
      const readingThePipe = () =>
        readdirSync(`/proc/${command.pid}/fd`).some((fd) => {
          try {
            return readlinkSync(`/proc/${command.pid}/fd/${fd}`) === pipe;
          } catch {
            return false;
          }
        });
      await expect.poll(readingThePipe, { timeout: 60_000, interval: 100 }).toBe(true);
      expect(existsSync(postmasterPid)).toBe(true);
      command.kill('SIGINT');
      const stoppedOrGone = () =>
        !existsSync(postmasterPid) || command.exitCode !== null || command.signalCode !== null;
      await expect.poll(stoppedOrGone, { timeout: 60_000, interval: 100 }).toBe(true);
      // The read of the pipe holds one of Node's threads, and an exit waits for them: end it. Closing
      // the only writer ends every read for good (end of file); a line written instead would end the one
      // read under way, and if the stop were still running the stream would start another and the exit
      // would wait for that one (seen once in a full run on a loaded machine: a 120 s timeout).
      closeSync(writer);
      writerOpen = false;
      const [code, signal] = await exited;
      expect({ code, signal }, stderr).toEqual({ code: 130, signal: null });
      expect(stderr).toContain('idsync: interrupted (SIGINT); stopping what this command started');
      expect(existsSync(postmasterPid)).toBe(false);
      expect(existsSync(path.join(dataDir, 'idsync.lock'))).toBe(false);
    } finally {
      if (writerOpen) closeSync(writer);
    }
  });

  it('with PostgreSQL and Redis both started (platform check): each stops before the data directory is released', async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), 'idsync-interrupt-'));
    chmodSync(directory, 0o755);
    leftRunning.push(
      path.join(directory, 'postgres', 'postmaster.pid'),
      path.join(directory, 'redis', 'redis.pid'),
    );
    const env = { IDSYNC_DATA_DIR: directory, HEROKU_TOKEN: 'test-token' };
    // A Heroku that answers only when told: the check waits there, inside the command.
    const requests: ServerResponse[] = [];
    const heroku = createServer((_request, response) => requests.push(response));
    await new Promise<void>((resolve) => heroku.listen(0, '127.0.0.1', resolve));
    const apiUrl = `http://127.0.0.1:${(heroku.address() as AddressInfo).port}`;
    try {
      expect((await runCli(['tenant', 'create', 'acme'], env)).code).toBe(0);
      const set = await runCli(
        [
          'platform',
          'set',
          'heroku',
          '--tenant',
          'acme',
          '--enterprise-account',
          'ea',
          '--token-env',
          'HEROKU_TOKEN',
          '--api-url',
          apiUrl,
        ],
        env,
      );
      expect(set.code, set.stderr).toBe(0);
      const command = spawnCli(['platform', 'check', '--tenant', 'acme'], env);
      const exited = once(command, 'exit');
      await expect.poll(() => requests.length, { timeout: 60_000, interval: 50 }).toBeGreaterThan(0);
      const pidFiles = [
        path.join(directory, 'postgres', 'postmaster.pid'),
        path.join(directory, 'redis', 'redis.pid'),
      ];
      expect(pidFiles.map((file) => existsSync(file))).toEqual([true, true]);
      // Watch the release order: the lock must outlive both servers' pid files.
      const releasedEarly: string[] = [];
      const watch = setInterval(() => {
        if (existsSync(path.join(directory, 'idsync.lock'))) return;
        for (const file of pidFiles) if (existsSync(file)) releasedEarly.push(file);
      }, 2);
      command.kill('SIGINT');
      // The command's own work then fails too (a 401 is not retried), and unwinds while the signal's
      // stop runs: both reach the same releases.
      for (const response of requests) {
        response.writeHead(401, { 'Content-Type': 'application/json' });
        response.end(JSON.stringify({ id: 'unauthorized', message: 'Invalid credentials provided.' }));
      }
      const [code] = await exited;
      clearInterval(watch);
      expect(code).toBe(130);
      expect(releasedEarly).toEqual([]);
      expect(pidFiles.map((file) => existsSync(file))).toEqual([false, false]);
      expect(existsSync(path.join(directory, 'idsync.lock'))).toBe(false);
    } finally {
      heroku.closeAllConnections();
      heroku.close();
    }
  });
});
