import express, { type ErrorRequestHandler, type Express, type RequestHandler, type Router } from 'express';
import { pinoHttp } from 'pino-http';
import { isDatabaseUnavailable, RETRY_AFTER_SECONDS } from '../db/availability.js';
import { type Logger, withoutBoundValues } from '../log.js';
import { requestIdFor } from './request-id.js';

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
  mounts?: { path: string; router: Router | RequestHandler }[];
}

const READINESS_TIMEOUT_MS = 2_000;

export function createApp(options: AppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');

  app.use(
    pinoHttp({
      logger: options.log,
      genReqId: (req, res) => {
        const id = requestIdFor(req);
        res.setHeader('X-Request-Id', id);
        return id;
      },
      // Log the request line only: headers carry bearer tokens and cookies, bodies carry assertions.
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({
          id: req.id,
          method: req.method,
          path: req.url.split('?')[0],
        }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      customLogLevel: (_req, res, error) => (error || res.statusCode >= 500 ? 'error' : 'info'),
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
    }),
  );

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

  for (const mount of options.mounts ?? []) app.use(mount.path, mount.router);

  app.use((req, res) => {
    res.status(404).json({ error: { code: 'not_found', message: `no route for ${req.method} ${req.path}` } });
  });

  const errorHandler: ErrorRequestHandler = (error, req, res, _next) => {
    const unavailable = isDatabaseUnavailable(error);
    const status = unavailable ? 503 : httpStatusOf(error);
    if (unavailable) req.log.warn({ err: error }, 'request refused: database unavailable');
    else if (status >= 500) req.log.error({ err: error }, 'unhandled error');
    if (res.headersSent) return;
    if (unavailable) res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
    res.status(status).json({
      error: {
        code: unavailable
          ? 'unavailable'
          : status === 400
            ? 'bad_request'
            : status === 413
              ? 'payload_too_large'
              : 'internal_error',
        message: unavailable
          ? `the database is unavailable; retry after ${RETRY_AFTER_SECONDS} seconds`
          : status < 500
            ? (error as Error).message
            : 'internal error; quote the request id to the operator',
        requestId: req.id,
      },
    });
  };
  app.use(errorHandler);
  return app;
}

/** Status carried by errors from body parsers and http-errors; anything else is our fault. */
function httpStatusOf(error: unknown): number {
  const status =
    (error as { status?: unknown; statusCode?: unknown }).status ??
    (error as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && status >= 400 && status < 600 ? status : 500;
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
