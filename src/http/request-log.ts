import { IncomingMessage, type ServerResponse } from 'node:http';
import { pino } from 'pino';
import type { Logger } from '../log.js';
import { requestIdFor } from './request-id.js';

declare module 'http' {
  interface IncomingMessage {
    /** This request's id: a sane incoming X-Request-Id, else a new UUID; echoed in X-Request-Id. */
    id: string;
    /** A logger bound to `req: {id, method, path}`, built the first time something logs through it. */
    log: Logger;
  }
}

/** Probes and scrapes come every few seconds: a line for each would drown the requests that matter. */
const UNLOGGED_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

const requestLogger = Symbol('requestLogger');
const rootLogger = Symbol('rootLogger');
const unseen: Logger = pino({ level: 'silent' });

interface LoggedRequest {
  id: string;
  method?: string;
  originalUrl?: string;
  url?: string;
  [requestLogger]?: Logger;
  [rootLogger]?: Logger;
}

/** The request as every line about it shows it: no headers, no query string, no body. */
function requestLine(req: LoggedRequest) {
  return { id: req.id, method: req.method, path: (req.originalUrl ?? req.url ?? '').split('?')[0] };
}

// On Node's own request prototype, so requests the SCIM edge serves without Express (createHttpListener)
// have it as much as those Express serves (its request prototype inherits from Node's).
Object.defineProperty(IncomingMessage.prototype, 'log', {
  configurable: true,
  get(this: LoggedRequest): Logger {
    // A message requestLogging never saw (a response to an outgoing request) logs nowhere.
    const root = this[rootLogger] ?? unseen;
    this[requestLogger] ??= root.child({ req: requestLine(this) });
    return this[requestLogger];
  },
});

/**
 * Request ids and the request log line, doing per request only what the log level will use.
 *
 * pino-http (used before) built two child loggers per request, each serialising the request, plus a
 * completion line that `warn` then dropped: about 4 % of the Node CPU of a `userName eq` filter
 * (BENCHMARKS.md). Here `req.log` is a getter on the request prototype that builds the child the first
 * time a handler logs (an error, a SAML login), and the completion line is built only when its level is
 * enabled. The line keeps pino-http's shape: `req: {id, method, path}`, `res: {statusCode}`,
 * `responseTime` (ms) and "request completed", or `err` and "request errored" at `error` for a 5xx, or
 * "request aborted" at `error` when the client went away before the answer.
 */
export function requestLogging(
  log: Logger,
): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  return (req, res, next) => {
    const id = requestIdFor(req);
    req.id = id;
    (req as LoggedRequest)[rootLogger] = log;
    res.setHeader('X-Request-Id', id);
    if (log.isLevelEnabled('error')) {
      const started = Date.now();
      // 'close' follows 'finish' on every response and also comes alone when the client goes away.
      res.once('close', () => {
        // A client that gave up before the answer (an IdP timing out a slow write) is an error, as it
        // was with pino-http: the status code is only what the handler had set so far.
        const aborted = !res.writableFinished;
        const failed = aborted || res.statusCode >= 500;
        if (!log.isLevelEnabled(failed ? 'error' : 'info')) return;
        if (UNLOGGED_PATHS.has((req as LoggedRequest).originalUrl ?? req.url ?? '')) return;
        // The root logger with the request as a field writes what the child would, without building it.
        const line = {
          req: requestLine(req),
          res: { statusCode: res.statusCode },
          responseTime: Date.now() - started,
        };
        if (aborted) log.error({ ...line, err: new Error('request aborted') }, 'request aborted');
        else if (failed)
          log.error(
            { ...line, err: new Error(`failed with status code ${res.statusCode}`) },
            'request errored',
          );
        else log.info(line, 'request completed');
      });
    }
    next();
  };
}
