import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import express, { type Express, type RequestHandler, Router } from 'express';
import { notFound } from '../errors.js';
import { type Logger, withoutBoundValues } from '../log.js';
import { jsonErrorHandler, sendJsonError } from './json-errors.js';
import { requestLogging } from './request-log.js';

export interface ReadinessCheck {
  name: string;
  /** Resolves when the dependency is usable; rejects with the reason it is not. */
  check(): Promise<void>;
  /**
   * False when the process still does its job without it (the API accepts SCIM writes into the outbox
   * while Redis is down): a failure then makes the process "degraded" (200), not "not ready" (503).
   */
  required?: boolean;
}

export interface AppOptions {
  log: Logger;
  readiness: ReadinessCheck[];
  /** Protocol edges (SCIM, SSO, admin API) mounted by the caller, each with its own error format. */
  mounts?: Mount[];
}

export interface Mount {
  path: string;
  router: Router | RequestHandler;
  /**
   * Served on Node's own request and response, before Express's app layer (see createHttpListener):
   * the edge's handlers use nothing Express adds to them (req.get, res.send, res.locals...).
   */
  withoutExpress?: true;
}

const READINESS_TIMEOUT_MS = 2_000;

export function createApp(options: AppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');

  // SCIM resources carry their own ETag (the row version, RFC 7644 §3.14); a hash of every other JSON
  // body (lists, errors, admin answers) cost a SHA-1 per response for conditional GETs no client sends.
  // A request's If-None-Match is still answered with 304 against the ETag a handler set.
  app.set('etag', false);
  app.use(requestLogging(options.log));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const results = await Promise.all(
      options.readiness.map(async ({ name, check }) => {
        try {
          await withTimeout(
            check(),
            READINESS_TIMEOUT_MS,
            `${name} did not answer within ${READINESS_TIMEOUT_MS} ms`,
          );
          return { name, ok: true as const };
        } catch (error) {
          return { name, ok: false as const, reason: withoutBoundValues((error as Error).message) };
        }
      }),
    );
    const failed = options.readiness.filter((_, index) => !results[index]!.ok);
    const status =
      failed.length === 0 ? 'ready' : failed.every((c) => c.required === false) ? 'degraded' : 'not ready';
    res.status(status === 'not ready' ? 503 : 200).json({
      status,
      checks: Object.fromEntries(results.map((r) => [r.name, r.ok ? 'ok' : r.reason])),
    });
  });

  for (const mount of options.mounts ?? []) {
    if (!mount.withoutExpress) app.use(mount.path, mount.router);
  }

  app.use((req, res) => {
    sendJsonError(res, notFound(`no route for ${req.method} ${req.path}`));
  });

  app.use(jsonErrorHandler);
  return app;
}

/**
 * The HTTP server's listener: edges marked `withoutExpress` first, each behind the request log, on the
 * router Express itself uses (same path matching: case-insensitive, mount stripped from req.url); every
 * other request goes on to the Express app.
 *
 * Why: Express's app layer swaps the prototypes of Node's request and response on every request, and
 * V8 then runs every later property access on them slowly. A `userName eq` filter spent 30–42 % of
 * its Node CPU there (BENCHMARKS.md), which the SCIM edge, the one an IdP hammers, does not need.
 */
export function createHttpListener(options: AppOptions): RequestListener {
  const app = createApp(options);
  const front = Router();
  const logging = requestLogging(options.log);
  for (const mount of options.mounts ?? []) {
    if (mount.withoutExpress) front.use(mount.path, logging as RequestHandler, mount.router);
  }
  return (req: IncomingMessage, res: ServerResponse) => {
    front(req as express.Request, res as express.Response, (error?: unknown) => {
      if (error === undefined || error === 'route' || error === 'router') {
        app(req, res);
        return;
      }
      // An edge's own error handler failed: nothing is left to format the error in its protocol.
      options.log.error({ err: error }, 'request failed outside its edge');
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}
