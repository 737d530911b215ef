import { createServer } from 'node:net';

/**
 * A loopback TCP port that was free a moment ago: the embedded servers take one at each start unless a
 * port is configured, so two checkouts (or two test runs) on one machine never collide.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
