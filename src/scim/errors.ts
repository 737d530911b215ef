import type { ErrorRequestHandler, Response } from 'express';
import { isDatabaseUnavailable, RETRY_AFTER_SECONDS } from '../db/availability.js';
import { DomainError, rootCause } from '../errors.js';

export const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';

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

export function sendScimError(res: Response, error: ScimError): void {
  // RFC 7644 §3.12: 503 "service unavailable"; Retry-After (RFC 9110) says when to come back.
  if (error.status === 503) res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
  res
    .status(error.status)
    .type('application/scim+json')
    .json({
      schemas: [ERROR_SCHEMA],
      // RFC 7644 §3.12 writes status as a string; Okta's spec test asserts it.
      status: String(error.status),
      ...(error.scimType ? { scimType: error.scimType } : {}),
      detail: error.detail,
    });
}

const DOMAIN_STATUS: Record<DomainError['kind'], number> = {
  not_found: 404,
  conflict: 409,
  invalid: 400,
  unauthorized: 401,
  precondition_failed: 412,
};

/** Turns anything thrown below the SCIM edge into a SCIM error body: the one place that does. */
export function toScimError(error: unknown): ScimError {
  if (error instanceof ScimError) return error;
  if (error instanceof DomainError) {
    const scimType =
      error.kind === 'conflict'
        ? 'uniqueness'
        : error.kind === 'invalid'
          ? ((error.reason as ScimType) ?? 'invalidValue')
          : undefined;
    return new ScimError(DOMAIN_STATUS[error.kind], scimType, error.message);
  }
  const status = (error as { status?: number; type?: string }).status;
  const type = (error as { type?: string }).type;
  if (type === 'entity.too.large') return new ScimError(413, undefined, 'request body is larger than 1 MiB');
  if (type === 'entity.parse.failed')
    return new ScimError(400, 'invalidSyntax', 'request body is not valid JSON');
  if (type === 'encoding.unsupported' || type === 'charset.unsupported') {
    return new ScimError(415, undefined, 'request body must be UTF-8 JSON');
  }
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new ScimError(status, undefined, (error as Error).message);
  }
  if (isDatabaseUnavailable(error)) {
    return new ScimError(
      503,
      undefined,
      `the database is unavailable; retry after ${RETRY_AFTER_SECONDS} seconds`,
    );
  }
  return new ScimError(
    500,
    undefined,
    'internal error; quote the X-Request-Id response header to the operator',
  );
}

export const scimErrorHandler: ErrorRequestHandler = (error, req, res, _next) => {
  const scimError = toScimError(error);
  if (scimError.status === 503)
    req.log?.warn({ err: rootCause(error) }, 'SCIM request refused: database unavailable');
  else if (scimError.status >= 500) req.log?.error({ err: rootCause(error) }, 'SCIM request failed');
  if (res.headersSent) return;
  sendScimError(res, scimError);
};
