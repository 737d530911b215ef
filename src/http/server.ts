import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { ConfigError } from '../config.js';

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
  server.on('clientError', answerUnparsableRequest);
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

/**
 * A port or host the server cannot listen on is a setting for the operator to change (a ConfigError,
 * exit 78, naming it), not a crash with a stack; anything else is returned as it was.
 */
export function asSettingError(error: unknown, port: number, host: string, portSetting: string): unknown {
  switch ((error as NodeJS.ErrnoException).code) {
    case 'EADDRINUSE':
      return new ConfigError(portSetting, `${host} port ${port} is already in use by another program`);
    case 'EACCES':
      return new ConfigError(portSetting, `port ${port} needs privileges this process does not have`);
    case 'EADDRNOTAVAIL':
      return new ConfigError('HOST', `${host} is not an address of this machine`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError('HOST', `${host} does not resolve to an address`);
    default:
      return error;
  }
}

/**
 * A request Node could not parse (headers or URL over its limit, malformed HTTP) never reaches a
 * handler; Node's own answer has no body. This one carries an error in SCIM's format (the path is
 * unknown, and SCIM clients are the ones that send long filters in URLs), as every other refusal does.
 */
function answerUnparsableRequest(error: NodeJS.ErrnoException, socket: Socket): void {
  // As Node's own handler: nothing to answer on a reset socket or after a response began.
  const started = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
  if (error.code === 'ECONNRESET' || !socket.writable || started) {
    socket.destroy();
    return;
  }
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    socket.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    socket.destroySoon();
    return;
  }
  const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
  const status = tooLarge ? 431 : 400;
  const body = JSON.stringify({
    schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'],
    status: String(status),
    detail: tooLarge
      ? 'the request line and headers are larger than the server accepts'
      : 'the request is not valid HTTP',
  });
  socket.end(
    `HTTP/1.1 ${status} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
      `Content-Type: application/scim+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  // As Node does: a client that never closes its side must not keep the socket.
  socket.destroySoon();
}
