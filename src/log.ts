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

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'idsync' },
      redact: { paths: REDACTED_PATHS, remove: true },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: (error: Error) => stdSerializers.err(rootCause(error) as Error) },
    },
    destination,
  );
}
