import { DrizzleQueryError } from 'drizzle-orm';
import postgres from 'postgres';
import { isDatabaseUnavailable, RETRY_AFTER_SECONDS } from './db/availability.js';

/**
 * The one error vocabulary. The core and the parsers throw a DomainError of a kind; each kind of edge
 * turns it into its own format in one place (SCIM error JSON in src/scim/errors.ts, admin JSON in
 * src/http/json-errors.ts, an HTML page in src/http/html-errors.ts, RFC 6749 §5.2 in
 * src/tokens/oauth-errors.ts, an exit code in the CLI). Nothing in the middle builds a response.
 */
export type DomainErrorKind =
  | 'invalid'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'precondition_failed'
  | 'too_large'
  | 'unsupported_media_type'
  /** A dependency (PostgreSQL, Redis) cannot answer now; the caller should retry later. */
  | 'service_unavailable';

/** The HTTP status of each kind: the only copy of this table. */
export const HTTP_STATUS: Record<DomainErrorKind, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  too_large: 413,
  unsupported_media_type: 415,
  service_unavailable: 503,
};

export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    /** Protocol-neutral detail an edge may map, e.g. a SCIM scimType. */
    readonly reason?: string,
    /** Structured detail the caller needs to act (an import's rows and why each was refused). */
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const notFound = (message: string) => new DomainError('not_found', message);
export const conflict = (message: string, reason = 'uniqueness') =>
  new DomainError('conflict', message, reason);
export const invalid = (message: string, reason?: string) => new DomainError('invalid', message, reason);
export const forbidden = (message: string) => new DomainError('forbidden', message);
export const unauthorized = (message: string) => new DomainError('unauthorized', message);

const KIND_OF_STATUS = new Map(
  (Object.entries(HTTP_STATUS) as [DomainErrorKind, number][]).map(([kind, status]) => [status, kind]),
);

/**
 * Anything thrown below an edge, as a DomainError when it is the caller's fault: our own errors, and
 * the 4xx errors of express and its body parsers (malformed JSON, a body too large, a bad charset).
 * Undefined means an internal failure the edge answers with a 5xx without details.
 */
export function toDomainError(error: unknown): DomainError | undefined {
  const cause = rootCause(error);
  if (cause instanceof DomainError) return cause;
  if (isDatabaseUnavailable(cause)) {
    return new DomainError(
      'service_unavailable',
      `the database is unavailable; retry after ${RETRY_AFTER_SECONDS} seconds`,
    );
  }
  const { status, type, message } = (cause ?? {}) as { status?: unknown; type?: unknown; message?: unknown };
  if (type === 'entity.parse.failed') return invalid('request body is not valid JSON', 'invalidSyntax');
  if (type === 'entity.too.large') return new DomainError('too_large', 'request body is too large');
  if (type === 'encoding.unsupported' || type === 'charset.unsupported')
    return new DomainError('unsupported_media_type', 'request body must be UTF-8');
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const text = typeof message === 'string' ? message : 'bad request';
    return new DomainError(KIND_OF_STATUS.get(status) ?? 'invalid', text);
  }
  return undefined;
}

/**
 * drizzle wraps driver errors in a DrizzleQueryError whose message repeats the query and its parameters
 * (user data, credential hashes). Anything that reports an error — logs, CLI output, HTTP bodies — goes
 * through this to get the driver's own error, which names the problem without the values.
 */
export function rootCause(error: unknown): unknown {
  let current = error;
  while (current instanceof DrizzleQueryError && current.cause !== undefined) current = current.cause;
  return current;
}

/** PostgreSQL's unique_violation, raised by the constraints that guard against duplicates. */
export function isUniqueViolation(error: unknown): boolean {
  const cause = rootCause(error);
  return typeof cause === 'object' && cause !== null && (cause as { code?: string }).code === '23505';
}

/** PostgreSQL aborted the transaction to break a deadlock with another (40P01): nothing of it was written. */
export function isDeadlock(error: unknown): boolean {
  const cause = rootCause(error);
  return typeof cause === 'object' && cause !== null && (cause as { code?: string }).code === '40P01';
}

/** A foreign key the statement's rows referred to was gone by the time it was checked (23503). */
export function isForeignKeyViolation(error: unknown): boolean {
  const cause = rootCause(error);
  return typeof cause === 'object' && cause !== null && (cause as { code?: string }).code === '23503';
}

/**
 * PostgreSQL answered the statement with an error, so nothing of it was written: a data or constraint
 * error, a statement timeout, a deadlock. Not a lost connection (class 08 or no answer at all), where a
 * statement's commit may have happened without its caller hearing of it.
 */
export function isStatementRolledBack(error: unknown): boolean {
  const cause = rootCause(error);
  if (!(cause instanceof postgres.PostgresError)) return false;
  return /^[0-9A-Z]{5}$/.test(cause.code) && !cause.code.startsWith('08');
}

/** The constraint a PostgreSQL error names, if any. */
export function violatedConstraint(error: unknown): string | undefined {
  return (rootCause(error) as { constraint_name?: string } | undefined)?.constraint_name;
}
