import type { ErrorRequestHandler } from 'express';
import { rootCause, toDomainError } from '../errors.js';

/** RFC 6749 §5.2 error codes the introspection and revocation endpoints answer with. */
export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'unauthorized_client' | 'server_error';

export class OAuthError extends Error {
  constructor(
    readonly code: OAuthErrorCode,
    readonly description: string,
    readonly status = 400,
    /** The WWW-Authenticate challenge of a failed HTTP Basic authentication (RFC 6749 §5.2). */
    readonly challenge?: string,
  ) {
    super(description);
    this.name = 'OAuthError';
  }
}

/** The one mapping of the shared error kinds onto RFC 6749 §5.2. */
export function toOAuthError(error: unknown): OAuthError {
  if (error instanceof OAuthError) return error;
  const known = toDomainError(error);
  if (!known) return new OAuthError('server_error', 'internal error; quote the X-Request-Id header', 500);
  switch (known.kind) {
    case 'unauthorized':
      return new OAuthError('invalid_client', known.message, 401);
    case 'forbidden':
      return new OAuthError('unauthorized_client', known.message, 400);
    case 'too_large':
      return new OAuthError('invalid_request', known.message, 413);
    case 'service_unavailable':
      return new OAuthError('server_error', known.message, 503);
    default:
      return new OAuthError('invalid_request', known.message, 400);
  }
}

export const oauthErrorHandler: ErrorRequestHandler = (error, req, res, _next) => {
  const oauth = toOAuthError(error);
  if (oauth.status >= 500) req.log?.error({ err: rootCause(error) }, 'OAuth request failed');
  if (res.headersSent) return;
  if (oauth.challenge) res.setHeader('WWW-Authenticate', oauth.challenge);
  res
    .status(oauth.status)
    .setHeader('Cache-Control', 'no-store')
    .json({ error: oauth.code, error_description: oauth.description });
};
