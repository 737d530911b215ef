import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serverIdentity } from '../../src/runtime/embedded-postgres.js';
import { captureOutput, sleep, spawnServer, stopChild } from '../../src/runtime/processes.js';
import { freePort } from './ports.js';

/** Debian's PostgreSQL 15 (apt-get install postgresql-15): the peers' benchmark server. */
export const POSTGRES_15_BIN = '/usr/lib/postgresql/15/bin';

export interface SystemPostgres {
  url: string;
  stop(): Promise<void>;
}

/**
 * A throwaway cluster of an installed PostgreSQL other than the embedded one (tests of older majors),
 * trusted on 127.0.0.1 only, under the test run's scratch folder (the global teardown stops leftovers).
 */
export async function startSystemPostgres(binDirectory: string): Promise<SystemPostgres> {
  const directory = mkdtempSync(path.join(os.tmpdir(), 'pg-system-'));
  const data = path.join(directory, 'data');
  mkdirSync(data, { mode: 0o700 });
  const identity = serverIdentity();
  if (identity) {
    chownSync(directory, identity.uid, identity.gid);
    chownSync(data, identity.uid, identity.gid);
  }
  const env = { ...process.env, LC_MESSAGES: 'C' };
  execFileSync(
    path.join(binDirectory, 'initdb'),
    [`--pgdata=${data}`, '--username=postgres', '--auth=trust', '--encoding=UTF8', '--locale=C.UTF-8'],
    { stdio: 'pipe', env, ...(identity ?? {}) },
  );
  const port = await freePort();
  const child = spawnServer(
    path.join(binDirectory, 'postgres'),
    [
      '-D',
      data,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'fsync=off',
    ],
    { identity, env },
  );
  let ready = false;
  const output = captureOutput(child, (line) => {
    if (line.includes('database system is ready to accept connections')) ready = true;
  });
  const deadline = Date.now() + 60_000;
  while (!ready) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stopChild(child, 'SIGKILL');
      throw new Error(`PostgreSQL from ${binDirectory} did not start: ${output().slice(-500)}`);
    }
    await sleep(25);
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () => stopChild(child, 'SIGINT'),
  };
}

export const hasPostgres15 = () => existsSync(path.join(POSTGRES_15_BIN, 'postgres'));
