import type { ErrorRequestHandler, Response } from 'express';
import { RETRY_AFTER_SECONDS } from '../db/availability.js';
import { type DomainError, HTTP_STATUS, rootCause, toDomainError } from '../errors.js';

/*
 * The JSON error body of the admin API and of routes no edge claims:
 * `{"error": {"code": <kind>, "message": …, "requestId": …}}`, the status from the shared table.
 */

export function sendJsonError(res: Response, error: DomainError, requestId?: unknown): void {
  // RFC 9110 §10.2.3: a 503 says when to come back.
  if (error.kind === 'service_unavailable') res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
  res.status(HTTP_STATUS[error.kind]).json({
    error: {
      code: error.kind,
      message: error.message,
      ...requestIdOf(requestId),
      ...(error.details === undefined ? {} : { details: error.details }),
    },
  });
}

const requestIdOf = (id: unknown) => (id === undefined ? {} : { requestId: String(id) });

export const jsonErrorHandler: ErrorRequestHandler = (error, req, res, _next) => {
  const known = toDomainError(error);
  if (!known) req.log?.error({ err: rootCause(error) }, 'request failed');
  if (res.headersSent) return;
  if (known) return sendJsonError(res, known, req.id);
  res.status(500).json({
    error: {
      code: 'internal_error',
      message: 'internal error; quote the X-Request-Id response header',
      ...requestIdOf(req.id),
    },
  });
};
