import { availableParallelism } from 'node:os';
import type { Config } from '../config.js';
import type { DaemonMode } from './daemon.js';

/** How many processes `idsync <mode>` runs: WORKER_PROCESSES if set, else the default below. */
export function processCount(mode: DaemonMode, config: Pick<Config, 'processes' | 'databaseUrl'>): number {
  return config.processes ?? defaultProcessCount(mode, config.databaseUrl);
}

/**
 * How many processes `idsync <mode>` runs when neither `--processes` nor WORKER_PROCESSES says: one per
 * core, less one core for a PostgreSQL on this machine, which does its part of every SCIM request on the
 * same cores. Measured on 2 cores (BENCHMARKS.md, "Sittings of 1 Dec 2026, 13:24–14:17 UTC"): one
 * `start` process beside the database served 12–26 % more creates, 17–34 % more filters, 0–50 % more
 * single adds and 8–56 % more pages a second than two in every comparison; one client's page walk came
 * out even, and the one bulk PATCH took 60–100 ms against 60–70. A worker scales out by running more of
 * them, on any machine: one.
 */
export function defaultProcessCount(
  mode: DaemonMode,
  databaseUrl: string | undefined,
  cores: number = availableParallelism(),
  pgHost: string | undefined = process.env.PGHOST,
): number {
  if (mode === 'worker') return 1;
  return databaseSharesThisMachine(databaseUrl, pgHost) ? Math.max(1, cores - 1) : cores;
}

/**
 * Unset (idsync starts its own), on loopback, or a Unix socket. The host is read as postgres.js reads
 * it: the URL's host, else PGHOST (a directory there is a socket), else localhost. The URL has parsed
 * already (config.ts). A proxy on loopback (PgBouncer, a cloud SQL proxy) in front of a database
 * elsewhere counts as local: WORKER_PROCESSES says otherwise.
 */
export function databaseSharesThisMachine(
  databaseUrl: string | undefined,
  pgHost: string | undefined = process.env.PGHOST,
): boolean {
  if (databaseUrl === undefined) return true;
  const host = new URL(databaseUrl).hostname || pgHost || 'localhost';
  return host.startsWith('/') || isLoopback(host);
}

function isLoopback(host: string): boolean {
  const name = host.toLowerCase();
  return (
    name === 'localhost' ||
    name.endsWith('.localhost') ||
    // Connecting to 0.0.0.0 reaches this machine; 127.1 is 127.0.0.1 to the resolver.
    name === '0.0.0.0' ||
    /^127(\.\d{1,3}){0,3}$/.test(name)
  );
}
