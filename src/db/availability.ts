import { rootCause } from '../errors.js';

/*
 * Failures that say "PostgreSQL is not there right now" rather than "this request is wrong": a refused or
 * timed-out connection, a connection the server closed while shutting down, a statement cancelled by
 * statement_timeout. Edges answer these with 503 and Retry-After (the client should come back), never 500.
 */

/** postgres.js's own codes for a connection that could not be made or was lost. */
const DRIVER_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
]);

/**
 * SQLSTATEs: class 08 (connection exception), 57P01–57P03 (admin/crash shutdown, cannot connect now),
 * 57014 (query_canceled: our statement_timeout), 53300 (too many connections).
 */
function isUnavailableSqlState(code: string): boolean {
  return code.startsWith('08') || ['57P01', '57P02', '57P03', '57014', '53300'].includes(code);
}

export function isDatabaseUnavailable(error: unknown): boolean {
  const cause = rootCause(error);
  if (typeof cause !== 'object' || cause === null) return false;
  const code = (cause as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return DRIVER_CODES.has(code) || isUnavailableSqlState(code);
}

/** What a client is told to wait before retrying while the database is away. */
export const RETRY_AFTER_SECONDS = 5;
