import { DrizzleQueryError } from 'drizzle-orm';

/**
 * Typed failures the core raises. Each protocol edge (SCIM JSON, SAML error page, CLI exit code, admin
 * API JSON) turns them into its own format in one place; nothing in the middle builds a response.
 */
export type DomainErrorKind = 'not_found' | 'conflict' | 'invalid' | 'unauthorized' | 'precondition_failed';

export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    /** Protocol-neutral detail an edge may map, e.g. a SCIM scimType. */
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const notFound = (message: string) => new DomainError('not_found', message);
export const conflict = (message: string, reason = 'uniqueness') =>
  new DomainError('conflict', message, reason);
export const invalid = (message: string, reason?: string) => new DomainError('invalid', message, reason);

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

/** The constraint a PostgreSQL error names, if any. */
export function violatedConstraint(error: unknown): string | undefined {
  return (rootCause(error) as { constraint_name?: string } | undefined)?.constraint_name;
}
