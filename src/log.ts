import { type Logger, pino, stdSerializers } from 'pino';
import { rootCause } from './errors.js';

export type { Logger };

/**
 * Paths that may carry a credential or an assertion anywhere idsync logs an object. pino removes them
 * before serialising, so a careless `log.info({ req })` still cannot leak a bearer token or a SAMLResponse.
 */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-admin-token"]',
  'res.headers["set-cookie"]',
  'token',
  'secret',
  'password',
  'authorization',
  'SAMLResponse',
  'assertion',
  '*.token',
  '*.secret',
  '*.password',
  '*.authorization',
  '*.SAMLResponse',
  '*.assertion',
];

/**
 * Fields of a PostgreSQL error that quote row values: `detail` ("Key (user_name)=(ada@…) already
 * exists"), `where`, and the query and parameters postgres.js attaches in debug mode.
 */
const VALUE_BEARING_FIELDS = ['detail', 'where', 'query', 'parameters', 'internal_query', 'args'] as const;

/**
 * Removes bound values from an error text: drizzle's "Failed query: … params: ada@example.com,…" loses
 * its params, and the quoted value in a PostgreSQL data error ("invalid input syntax for type uuid:
 * \"ada@…\"") is replaced. The SQL text itself is kept: idsync binds every value, so it holds none.
 */
export function withoutBoundValues(text: string): string {
  return text
    .replace(/\nparams: [^\n]*/g, '\nparams: [redacted]')
    .replace(/(invalid input (?:syntax|value) for [^:]*: )"[^"]*"/g, '$1"[redacted]"')
    .replace(/(value too long for type [^\n]*?|out of range[^\n]*?)"[^"]*"/g, '$1"[redacted]"');
}

/** The error serializer every log line uses: the driver's own error, with no bound parameter values. */
export function serializeError(error: unknown): unknown {
  const cause = rootCause(error);
  if (cause instanceof Error) {
    const serialized = stdSerializers.err(cause) as unknown as Record<string, unknown>;
    for (const field of VALUE_BEARING_FIELDS) delete serialized[field];
    if (typeof serialized.message === 'string') serialized.message = withoutBoundValues(serialized.message);
    if (typeof serialized.stack === 'string') serialized.stack = withoutBoundValues(serialized.stack);
    return serialized;
  }
  if (typeof cause === 'object' && cause !== null) {
    const copy: Record<string, unknown> = { ...(cause as Record<string, unknown>) };
    for (const field of VALUE_BEARING_FIELDS) delete copy[field];
    if (typeof copy.message === 'string') copy.message = withoutBoundValues(copy.message);
    return copy;
  }
  return typeof cause === 'string' ? withoutBoundValues(cause) : cause;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'idsync' },
      redact: { paths: REDACTED_PATHS, remove: true },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeError },
    },
    destination,
  );
}
