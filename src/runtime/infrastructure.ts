import path from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import {
  acquireDataDirLock,
  DataDirInUseError,
  type DataDirLock,
  type LockCommand,
  type LockHolder,
  liveLockHolder,
} from './data-dir-lock.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';
import { startEmbeddedRedis } from './embedded-redis.js';
import { freePort } from './free-port.js';
import type { LocalServer } from './processes.js';

/**
 * Where PostgreSQL and Redis come from: the URLs the operator configured, or — the laptop default —
 * real servers idsync starts itself with their data under IDSYNC_DATA_DIR, reused across restarts.
 */
export interface Endpoint {
  url: string;
  /** Stops the server if this process owns it; a no-op for configured URLs and a running daemon's servers. */
  release(): Promise<void>;
  embedded: boolean;
}

/**
 * How this process stands towards the data directory's embedded servers:
 * - owner: it holds the data directory's lock, so it starts the servers (or adopts those a dead owner
 *   left running) and stops them when it is done;
 * - guest: a running daemon holds the lock; a one-shot command uses that daemon's servers and URL and
 *   leaves them running;
 * - external: DATABASE_URL and REDIS_URL are both set, so the data directory's servers play no part.
 */
export type DataDirClaim =
  | { kind: 'owner'; lock: DataDirLock; publicUrl: string }
  | { kind: 'guest'; daemon: LockHolder; publicUrl: string }
  | { kind: 'external'; publicUrl: string };

const ONE_SHOT_WAIT_MS = 60_000;

/** A daemon takes the data directory or refuses (DataDirInUseError) when another idsync has it. */
export async function claimForDaemon(config: Config, command: Exclude<LockCommand, 'one-shot'>) {
  if (config.databaseUrl && config.redisUrl)
    return { kind: 'external', publicUrl: config.publicUrl } as const;
  const lock = await acquireDataDirLock(config.dataDir, { command, publicUrl: config.publicUrl }, 10_000);
  return { kind: 'owner', lock, publicUrl: config.publicUrl } as const;
}

/**
 * A one-shot command uses the running daemon's servers when there is one; otherwise it holds the data
 * directory while it starts the servers for the moment (waiting for another one-shot command to finish).
 */
export async function claimForOneShot(config: Config, detail: string): Promise<DataDirClaim> {
  if (config.databaseUrl && config.redisUrl) return { kind: 'external', publicUrl: config.publicUrl };
  const asGuest = (daemon: LockHolder): DataDirClaim => ({
    kind: 'guest',
    daemon,
    publicUrl: daemon.publicUrl,
  });
  const running = liveLockHolder(config.dataDir);
  if (running && running.command !== 'one-shot') return asGuest(running);
  try {
    const lock = await acquireDataDirLock(
      config.dataDir,
      { command: 'one-shot', detail, publicUrl: config.publicUrl },
      ONE_SHOT_WAIT_MS,
    );
    return { kind: 'owner', lock, publicUrl: config.publicUrl };
  } catch (error) {
    if (error instanceof DataDirInUseError && error.holder.command !== 'one-shot')
      return asGuest(error.holder);
    throw error;
  }
}

export function releaseClaim(claim: DataDirClaim): void {
  if (claim.kind === 'owner') claim.lock.release();
}

function serverStory(name: string, server: LocalServer, claim: DataDirClaim): string {
  if (!server.adopted) return `embedded ${name} started`;
  return claim.kind === 'owner'
    ? `embedded ${name} left running by an idsync that died: adopted, stopped at exit`
    : `using the running idsync's embedded ${name}`;
}

const external = (url: string): Endpoint => ({ url, embedded: false, release: async () => {} });

const embedded = (server: LocalServer): Endpoint => ({
  url: server.url,
  embedded: true,
  release: () => server.stop(),
});

export async function provideDatabase(
  config: Config,
  log: Logger,
  claim: DataDirClaim,
  /** What the processes of a daemon can open at once (an embedded server is sized for it); unset: 100. */
  maxConnections?: number,
): Promise<Endpoint> {
  if (config.databaseUrl) return external(config.databaseUrl);
  if (claim.kind === 'external')
    throw new Error('an embedded PostgreSQL needs a claim on the data directory');
  const server = await startEmbeddedPostgres({
    directory: path.join(config.dataDir, 'postgres'),
    port: config.embeddedPostgresPort || (await freePort()),
    portSetting: 'IDSYNC_EMBEDDED_PG_PORT',
    database: 'idsync',
    role: claim.kind === 'owner' ? 'owner' : 'guest',
    startTimeoutMs: config.embeddedStartTimeoutMs,
    ...(maxConnections === undefined ? {} : { settings: { max_connections: String(maxConnections) } }),
    onLog: (line) => log.debug({ component: 'embedded-postgres' }, line),
  });
  if (claim.kind === 'owner') claim.lock.update({ postgresPort: server.port });
  log.info({ component: 'embedded-postgres', port: server.port }, serverStory('PostgreSQL', server, claim));
  return embedded(server);
}

export async function provideRedis(config: Config, log: Logger, claim: DataDirClaim): Promise<Endpoint> {
  if (config.redisUrl) return external(config.redisUrl);
  if (claim.kind === 'external') throw new Error('an embedded Redis needs a claim on the data directory');
  const server = await startEmbeddedRedis({
    directory: path.join(config.dataDir, 'redis'),
    port: config.embeddedRedisPort || (await freePort()),
    portSetting: 'IDSYNC_EMBEDDED_REDIS_PORT',
    role: claim.kind === 'owner' ? 'owner' : 'guest',
    persistent: true,
    startTimeoutMs: config.embeddedStartTimeoutMs,
    onLog: (line) => log.debug({ component: 'embedded-redis' }, line),
  });
  if (claim.kind === 'owner') claim.lock.update({ redisPort: server.port });
  log.info({ component: 'embedded-redis', port: server.port }, serverStory('Redis', server, claim));
  return embedded(server);
}

/** A configured or embedded server that does not answer; the message names it and the setting to check. */
export class UnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnreachableError';
  }
}

const CONNECTION_FAILURES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'CONNECT_TIMEOUT',
  '28P01', // invalid password
  '28000', // no pg_hba entry / invalid authorization
  '3D000', // database does not exist
]);

/** host:port/database of a URL, without its credentials. */
function describeServer(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}${parsed.port ? `:${parsed.port}` : ''}${parsed.pathname === '/' ? '' : parsed.pathname}`;
}

/**
 * Runs the first call to a server and turns "connect ECONNREFUSED 127.0.0.1:1" into a line that says
 * which server, where, and which setting points there.
 */
export async function reaching<T>(
  service: 'PostgreSQL' | 'Redis',
  endpoint: Endpoint,
  first: () => Promise<T>,
): Promise<T> {
  try {
    return await first();
  } catch (error) {
    const code = (error as { code?: string }).code;
    const timedOut = /did not answer within/.test((error as Error).message);
    if (!timedOut && (code === undefined || !CONNECTION_FAILURES.has(code))) throw error;
    const setting = service === 'PostgreSQL' ? 'DATABASE_URL' : 'REDIS_URL';
    const source = endpoint.embedded ? `the embedded ${service}` : setting;
    throw new UnreachableError(
      `cannot reach ${service} at ${describeServer(endpoint.url)} (${source}): ${(error as Error).message}`,
    );
  }
}
