import { chmodSync, existsSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';

describe('idsync refuses bad configuration with one line and a non-zero exit', () => {
  it.each([
    ['PORT', 'abc', 'PORT: must be a number'],
    ['DATABASE_URL', 'not a url', 'DATABASE_URL: must be a URL starting with postgres://'],
    ['LOG_LEVEL', 'chatty', 'LOG_LEVEL: must be one of'],
  ])('%s=%s', async (variable, value, expected) => {
    const result = await runCli(['start'], { [variable]: value });
    expect(result.code).toBe(78);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(expected);
    expect(result.stdout).toBe('');
  });

  it('REDIS_SERVER_BINARY naming no executable: exit 78 naming it, never the embedded password', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idsync-redis-binary-'));
    chmodSync(dataDir, 0o755); // run as root, the embedded PostgreSQL runs as postgres, which must enter it
    const result = await runCli(['start'], {
      REDIS_SERVER_BINARY: '/nonexistent/redis-server',
      IDSYNC_DATA_DIR: dataDir,
    });
    expect(result.code).toBe(78);
    expect(result.stderr).toContain(
      'REDIS_SERVER_BINARY: /nonexistent/redis-server is not an executable file',
    );
    expect(result.stderr).not.toContain('requirepass');
  });

  it('a PORT another program holds, or a HOST not on this machine: exit 78 naming the setting, nothing left running', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      for (const [env, expected] of [
        [{ PORT: String(port) }, `PORT: 127.0.0.1 port ${port} is already in use by another program`],
        [{ HOST: '192.0.2.1' }, 'HOST: 192.0.2.1 is not an address of this machine'],
      ] as const) {
        const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idsync-listen-'));
        chmodSync(dataDir, 0o755);
        const result = await runCli(['start'], { ...env, IDSYNC_DATA_DIR: dataDir });
        expect(result.code).toBe(78);
        expect(result.stderr).toBe(`idsync: configuration error: ${expected}\n`);
        // The embedded servers it started were stopped and the data directory released.
        expect(existsSync(path.join(dataDir, 'idsync.lock'))).toBe(false);
        expect(existsSync(path.join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
      }
    } finally {
      taken.close();
    }
  });

  it('answers an unknown command with usage and exit 64', async () => {
    const result = await runCli(['frobnicate'], {});
    expect(result.code).toBe(64);
    expect(result.stderr).toContain("unknown command 'frobnicate'");
  });
});

describe('idsync names the server it cannot reach (exit 69)', () => {
  it('a DATABASE_URL nothing answers at: which server, where, which setting; never the password', async () => {
    const result = await runCli(['tenant', 'list'], {
      DATABASE_URL: 'postgres://idsync:hunter2-secret@127.0.0.1:1/idsync',
    });
    expect(result.code).toBe(69);
    expect(result.stderr).toBe(
      'idsync: cannot reach PostgreSQL at 127.0.0.1:1/idsync (DATABASE_URL): connect ECONNREFUSED 127.0.0.1:1\n',
    );
    expect(result.stderr).not.toContain('hunter2');
  });
});
