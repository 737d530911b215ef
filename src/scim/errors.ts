import type { IncomingMessage, ServerResponse } from 'node:http';
import { RETRY_AFTER_SECONDS } from '../db/availability.js';
import { HTTP_STATUS, rootCause, toDomainError } from '../errors.js';
import { sendText } from '../http/plain-response.js';

export const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';

/** Every SCIM answer's Content-Type: a constant, not a lookup in a MIME table on every request. */
export const SCIM_CONTENT_TYPE = 'application/scim+json; charset=utf-8';

/** RFC 7644 §3.12 scimType values idsync answers with. */
export type ScimType =
  | 'invalidFilter'
  | 'tooMany'
  | 'uniqueness'
  | 'mutability'
  | 'invalidSyntax'
  | 'invalidPath'
  | 'noTarget'
  | 'invalidValue'
  | 'invalidVers'
  | 'sensitive';

export class ScimError extends Error {
  constructor(
    readonly status: number,
    readonly scimType: ScimType | undefined,
    readonly detail: string,
  ) {
    super(detail);
    this.name = 'ScimError';
  }
}

export function sendScimError(req: IncomingMessage, res: ServerResponse, error: ScimError): void {
  // RFC 7644 §3.12: 503 "service unavailable"; Retry-After (RFC 9110) says when to come back.
  if (error.status === 503) res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
  res.setHeader('Content-Type', SCIM_CONTENT_TYPE);
  sendText(
    req,
    res,
    error.status,
    JSON.stringify({
      schemas: [ERROR_SCHEMA],
      // RFC 7644 §3.12 writes status as a string; Okta's spec test asserts it.
      status: String(error.status),
      ...(error.scimType ? { scimType: error.scimType } : {}),
      detail: error.detail,
    }),
  );
}

/** Turns anything thrown below the SCIM edge into a SCIM error body: the one place that does. */
export function toScimError(error: unknown): ScimError {
  if (error instanceof ScimError) return error;
  const known = toDomainError(error);
  if (!known) {
    return new ScimError(
      500,
      undefined,
      'internal error; quote the X-Request-Id response header to the operator',
    );
  }
  const scimType: ScimType | undefined =
    known.kind === 'conflict'
      ? 'uniqueness'
      : known.kind === 'invalid'
        ? ((known.reason as ScimType | undefined) ?? 'invalidValue')
        : undefined;
  return new ScimError(HTTP_STATUS[known.kind], scimType, known.message);
}

/** The edge's error middleware (four parameters, as the router wants). */
export function scimErrorHandler(
  error: unknown,
  req: IncomingMessage,
  res: ServerResponse,
  _next: (error?: unknown) => void,
): void {
  const scimError = toScimError(error);
  if (scimError.status === 503)
    req.log.warn({ err: rootCause(error) }, 'SCIM request refused: database unavailable');
  else if (scimError.status >= 500) req.log.error({ err: rootCause(error) }, 'SCIM request failed');
  if (res.headersSent) return;
  sendScimError(req, res, scimError);
}
