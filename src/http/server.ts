import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RunningHttpServer {
  port: number;
  /**
   * Stops accepting connections, lets in-flight requests finish (idle keep-alive sockets are closed at
   * once), and after `timeoutMs` cuts whatever is still open.
   */
  close(timeoutMs: number): Promise<void>;
}

export async function listen(
  listener: RequestListener,
  port: number,
  host: string,
): Promise<RunningHttpServer> {
  const server: Server = createServer(listener);
  server.keepAliveTimeout = 65_000;
  server.listen(port, host);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([error]) => {
      throw error;
    }),
  ]);
  return {
    port: (server.address() as AddressInfo).port,
    close: async (timeoutMs) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
