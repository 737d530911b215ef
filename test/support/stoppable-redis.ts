import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedRedis } from '../../src/runtime/embedded-redis.js';
import { freePort } from './ports.js';

/**
 * A Redis of the test's own that it may stop and start again (an outage), on the same port and password
 * so clients reconnect, without persistence: what it held is gone after a restart, as after a failover.
 */
export async function startStoppableRedis() {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-redis-'));
  const options = { directory: scratch, port: await freePort(), role: 'owner' as const, persistent: false };
  let server = await startEmbeddedRedis(options);
  return {
    get url() {
      return server.url;
    },
    stop: () => server.stop(),
    start: async () => {
      server = await startEmbeddedRedis(options);
    },
    /** For the test's cleanup: stops it and removes its files. */
    dispose: async () => {
      await server.stop();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
