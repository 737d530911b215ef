import { availableParallelism } from 'node:os';
import type { DaemonMode } from './daemon.js';

/**
 * How many processes `idsync <mode>` runs when neither `--processes` nor WORKER_PROCESSES says: one per
 * core, less one core for a PostgreSQL on this machine (the embedded one, or a DATABASE_URL on
 * loopback or a Unix socket). That PostgreSQL does a SCIM request's other half of the work on the same
 * cores; measured on 2 cores (BENCHMARKS.md, "Processes when PostgreSQL shares the cores"), one API
 * process beside it beat two in every phase of the peers' load, by 18–57 % for `start`. A worker scales
 * out by running more of them, on any machine: one.
 */
export function defaultProcessCount(
  mode: DaemonMode,
  databaseUrl: string | undefined,
  cores: number = availableParallelism(),
): number {
  if (mode === 'worker') return 1;
  return databaseSharesThisMachine(databaseUrl) ? Math.max(1, cores - 1) : cores;
}

/**
 * Unset (idsync starts its own), on loopback, or a Unix socket (postgres.js reads a host holding a `/`,
 * percent-encoded in the URL, as the socket's directory). The URL has parsed already (config.ts).
 */
export function databaseSharesThisMachine(databaseUrl: string | undefined): boolean {
  if (databaseUrl === undefined) return true;
  const host = decodeURIComponent(new URL(databaseUrl).hostname);
  return host === '' || host.startsWith('/') || isLoopback(host);
}

function isLoopback(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[|\]$/g, '');
  return (
    name === 'localhost' ||
    name.endsWith('.localhost') ||
    name === '::1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name) ||
    /^::ffff:127\./.test(name)
  );
}
