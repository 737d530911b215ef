import { chmodSync, mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../src/runtime/embedded-postgres.js';
import { startEmbeddedRedis } from '../src/runtime/embedded-redis.js';

/** A process that holds a port and never answers: what another program squatting a port looks like. */
async function silentListener(): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const connections = new Set<Socket>();
  const server = createServer((socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as { port: number }).port,
    // close() waits for every open connection; the clients it kept waiting are cut off instead.
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of connections) socket.destroy();
      }),
  };
}

describe('embedded servers on a port another process holds', async () => {
  const squatter = await silentListener();
  afterAll(() => squatter.close());

  it('Redis: refuses at once (no hanging ping), naming the setting to change', async () => {
    const started = Date.now();
    await expect(
      startEmbeddedRedis({
        directory: mkdtempSync(path.join(os.tmpdir(), 'idsync-redis-')),
        port: squatter.port,
        portSetting: 'IDSYNC_EMBEDDED_REDIS_PORT',
        role: 'owner',
        persistent: false,
      }),
    ).rejects.toThrow(
      new RegExp(
        `redis-server did not start on port ${squatter.port}: .*set IDSYNC_EMBEDDED_REDIS_PORT to a free port`,
      ),
    );
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('PostgreSQL: refuses with its own reason, naming the setting to change', async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), 'idsync-pg-'));
    // Run as root, the server runs as the postgres user, which must be able to enter it.
    chmodSync(directory, 0o755);
    await expect(
      startEmbeddedPostgres({
        directory: path.join(directory, 'postgres'),
        port: squatter.port,
        portSetting: 'IDSYNC_EMBEDDED_PG_PORT',
        database: 'idsync',
        role: 'owner',
      }),
    ).rejects.toThrow(
      new RegExp(
        `PostgreSQL did not start on port ${squatter.port}: .*set IDSYNC_EMBEDDED_PG_PORT to a free port`,
      ),
    );
  }, 120_000);
});
