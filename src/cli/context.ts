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
  refuseOnceInterrupted();
  const claim = await claimForOneShot(config, commandName());
  const release = releasedOnce(() => releaseClaim(claim));
  try {
    return await work(claim, { ...config, publicUrl: claim.publicUrl });
  } finally {
    await release();
  }
}

/*
 * Ctrl-C (or TERM, HUP) during a one-shot command. The embedded servers run in their own process group
 * (so a daemon can drain before they stop), so the terminal's signal reaches idsync alone, and Node's
 * default would end it there and leave them running until the next start adopts them. Instead the
 * command stops where it stands: what it holds is released, newest first (a server still starting
 * once it is up), the data directory last, and it exits 128 + the signal's number. A second signal
 * ends it at once.
 */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT;
const heldUntilExit: (() => Promise<void>)[] = [];
let interruption: StopSignal | undefined;

/** The exit code of the signal that interrupted this command, if one did (its errors are the stop's). */
export function interruptedExitCode(): number | undefined {
  return interruption && SIGNAL_EXIT[interruption];
}

/**
 * `release` run once, by whichever comes first: the command, done with what it holds (the returned
 * function), or a signal. The other waits for that same run, so the data directory is never released
 * before a server the command started has stopped.
 */
function releasedOnce(release: () => Promise<void> | void): () => Promise<void> {
  installSignalHandlers();
  let run: Promise<void> | undefined;
  const once = () => {
    run ??= Promise.resolve().then(release);
    return run;
  };
  heldUntilExit.push(once);
  return async () => {
    try {
      await once();
    } finally {
      const index = heldUntilExit.indexOf(once);
      if (index >= 0) heldUntilExit.splice(index, 1);
    }
  };
}

/** After a signal the command only unwinds: it takes nothing more that the stop would have to release. */
function refuseOnceInterrupted(): void {
  if (interruption) throw new Error(`interrupted (${interruption})`);
}

let signalHandlersInstalled = false;
function installSignalHandlers(): void {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  for (const signal of Object.keys(SIGNAL_EXIT) as StopSignal[]) {
    process.on(signal, () => void stopForSignal(signal));
  }
}

async function stopForSignal(signal: StopSignal): Promise<void> {
  if (interruption) process.exit(SIGNAL_EXIT[interruption]);
  interruption = signal;
  // From here on, errors are the stop's own doing (a query on a connection to the PostgreSQL being
  // stopped, a socket reset): they must not end the process before the stop is done, nor with code 1.
  // After a hang-up the terminal is gone too, and writing to it fails (EIO).
  process.on('unhandledRejection', () => {});
  process.on('uncaughtException', () => {});
  process.stderr.on('error', () => {});
  try {
    process.stderr.write(`idsync: interrupted (${signal}); stopping what this command started\n`);
  } catch {}
  // Newest first, until nothing is held: what the command took while an earlier release ran, too.
  const released = new Set<() => Promise<void>>();
  for (;;) {
    const next = heldUntilExit.findLast((release) => !released.has(release));
    if (!next) break;
    released.add(next);
    await next().catch(() => {});
  }
  process.exit(SIGNAL_EXIT[signal]);
}

/** One-shot commands keep their own chatter quiet; their output is the answer, not a log. */
const quietLogger = (config: Config) => createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);

/** Runs a one-shot command against the database (starting the embedded one if idsync is not running). */
export async function withDatabase<T>(
  work: (database: DatabaseHandle, config: Config) => Promise<T>,
): Promise<T> {
  return withClaim(configOrExit(), async (claim, config) => {
    refuseOnceInterrupted();
    // Sized as a default `idsync start` needs: a start that finds it left running can use it as it is.
    const provided = provideDatabase(
      config,
      quietLogger(config),
      claim,
      embeddedMaxConnections('start', config, processCount('start', config)),
    );
    const release = releasedOnce(async () => (await provided).release());
    try {
      const endpoint = await provided;
      await reaching('PostgreSQL', endpoint, () => runMigrations(endpoint.url));
      const database = connectDatabase(endpoint.url, { max: 2 });
      try {
        return await work(database, config);
      } finally {
        await database.close();
      }
    } finally {
      await release();
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
    refuseOnceInterrupted();
    const provided = provideRedis(config, log, claim);
    const release = releasedOnce(async () => (await provided).release());
    let redis: Redis | undefined;
    try {
      const endpoint = await provided;
      const connection = createRedisConnection(endpoint.url, 'producer');
      redis = connection;
      await reaching('Redis', endpoint, () => connectionReady(connection, 10_000));
      const queues = openQueues(connection, config.queuePrefix);
      try {
        return await work(connection, queues, log);
      } finally {
        await closeQueues(queues);
      }
    } finally {
      redis?.disconnect();
      await release();
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
