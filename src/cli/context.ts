import type { Redis } from 'ioredis';
import { type Config, ConfigError, loadConfig } from '../config.js';
import { connectDatabase, type DatabaseHandle } from '../db/client.js';
import { runMigrations } from '../db/migrate.js';
import { connectionReady, createRedisConnection } from '../jobs/connection.js';
import { closeQueues, type LaneQueues, openQueues } from '../jobs/queues.js';
import { createLogger, type Logger } from '../log.js';
import { type ConnectorFor, connectorFactory } from '../platform/factory.js';
import { liveLockHolder } from '../runtime/data-dir-lock.js';
import {
  claimForOneShot,
  type DataDirClaim,
  provideDatabase,
  provideRedis,
  reaching,
  releaseClaim,
} from '../runtime/infrastructure.js';
import { embeddedMaxConnections } from '../runtime/pool-size.js';
import { processCount } from '../runtime/process-count.js';

/**
 * Exit codes, after sysexits.h, so scripts can tell a typo from a broken database: 64 usage or invalid
 * input, 65 conflicting or missing data, 69 PostgreSQL or Redis unreachable, 75 the data directory is
 * in use by another idsync (try again once it stops), 78 configuration error.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 64,
  dataError: 65,
  unavailable: 69,
  inUse: 75,
  config: 78,
} as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError)
      throw new CliError(`configuration error: ${error.message}`, EXIT.config);
    throw error;
  }
}

/**
 * The origin IdPs must use: the running daemon's (from the data directory's lock file) when one runs,
 * so every URL a command prints is the one that daemon answers at; else PUBLIC_URL / PORT as configured.
 */
export function daemonPublicUrl(config: Config): string {
  const daemon = liveLockHolder(config.dataDir);
  return daemon && daemon.command !== 'one-shot' ? daemon.publicUrl : config.publicUrl;
}

/** What the command line was, for the lock file: `tenant create`. */
function commandName(): string {
  return process.argv
    .slice(2)
    .filter((a) => !a.startsWith('-'))
    .slice(0, 2)
    .join(' ');
}

/** Runs `work` holding (or, while a daemon runs, as a guest of) the data directory, with the daemon's public URL. */
async function withClaim<T>(config: Config, work: (claim: DataDirClaim, config: Config) => Promise<T>) {
  const claim = await claimForOneShot(config, commandName());
  const stopOnSignal = claim.kind === 'owner' ? onInterrupt(async () => releaseClaim(claim)) : () => {};
  try {
    return await work(claim, { ...config, publicUrl: claim.publicUrl });
  } finally {
    stopOnSignal();
    releaseClaim(claim);
  }
}

/*
 * Ctrl-C (or TERM, HUP) during a one-shot command. The embedded servers run in their own process group
 * (so a daemon can drain before they stop), so the terminal's signal reaches idsync alone, and Node's
 * default would end it there and leave them running until the next start adopts them. Instead the
 * command stops where it stands: what it started is stopped, newest first, the data directory is
 * released, and it exits 128 + the signal's number. A second signal ends it at once.
 */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT;
const interruptCleanups: (() => Promise<void>)[] = [];
let interruption: StopSignal | undefined;

/** The exit code of the signal that interrupted this command, if one did (its errors are the stop's). */
export function interruptedExitCode(): number | undefined {
  return interruption && SIGNAL_EXIT[interruption];
}

/** Registers `cleanup` to run if a signal interrupts the command; the returned function unregisters it. */
function onInterrupt(cleanup: () => Promise<void>): () => void {
  if (!interruptHandlersInstalled) {
    interruptHandlersInstalled = true;
    for (const signal of Object.keys(SIGNAL_EXIT) as StopSignal[]) {
      process.on(signal, () => void stopForSignal(signal));
    }
  }
  interruptCleanups.push(cleanup);
  return () => {
    const index = interruptCleanups.indexOf(cleanup);
    if (index >= 0) interruptCleanups.splice(index, 1);
  };
}
let interruptHandlersInstalled = false;

async function stopForSignal(signal: StopSignal): Promise<void> {
  if (interruption) process.exit(SIGNAL_EXIT[interruption]);
  interruption = signal;
  process.stderr.write(`idsync: interrupted (${signal}); stopping what this command started\n`);
  for (const cleanup of [...interruptCleanups].reverse()) await cleanup().catch(() => {});
  process.exit(SIGNAL_EXIT[signal]);
}

/** One-shot commands keep their own chatter quiet; their output is the answer, not a log. */
const quietLogger = (config: Config) => createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);

/** Runs a one-shot command against the database (starting the embedded one if idsync is not running). */
export async function withDatabase<T>(
  work: (database: DatabaseHandle, config: Config) => Promise<T>,
): Promise<T> {
  return withClaim(configOrExit(), async (claim, config) => {
    // Sized as a default `idsync start` needs: a start that finds it left running can use it as it is.
    const endpoint = await provideDatabase(
      config,
      quietLogger(config),
      claim,
      embeddedMaxConnections('start', config, processCount('start', config)),
    );
    const stopOnSignal = onInterrupt(() => endpoint.release());
    try {
      await reaching('PostgreSQL', endpoint, () => runMigrations(endpoint.url));
      const database = connectDatabase(endpoint.url, { max: 2 });
      try {
        return await work(database, config);
      } finally {
        await database.close();
      }
    } finally {
      stopOnSignal();
      await endpoint.release();
    }
  });
}

export interface PlatformContext {
  database: DatabaseHandle;
  redis: Redis;
  queues: LaneQueues;
  config: Config;
  log: Logger;
  connectorFor: ConnectorFor;
}

/** Runs a one-shot command with a Redis connection and the queues (the embedded Redis if not configured). */
export async function withQueueConnection<T>(
  config: Config,
  work: (redis: Redis, queues: LaneQueues, log: Logger) => Promise<T>,
): Promise<T> {
  return withClaim(config, async (claim) => {
    const log = quietLogger(config);
    const endpoint = await provideRedis(config, log, claim);
    const stopOnSignal = onInterrupt(() => endpoint.release());
    const redis = createRedisConnection(endpoint.url, 'producer');
    try {
      await reaching('Redis', endpoint, () => connectionReady(redis, 10_000));
      const queues = openQueues(redis, config.queuePrefix);
      try {
        return await work(redis, queues, log);
      } finally {
        await closeQueues(queues);
      }
    } finally {
      stopOnSignal();
      redis.disconnect();
      await endpoint.release();
    }
  });
}

/**
 * A one-shot command that talks to platforms: the database, Redis (shared rate budgets, queues) and
 * each tenant's connector.
 */
export async function withPlatform<T>(work: (context: PlatformContext) => Promise<T>): Promise<T> {
  return withDatabase((database, config) =>
    withQueueConnection(config, (redis, queues, log) =>
      work({
        database,
        redis,
        queues,
        config,
        log,
        connectorFor: connectorFactory({ database, redis, config, log }),
      }),
    ),
  );
}
