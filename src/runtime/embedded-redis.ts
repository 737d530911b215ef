import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { ConfigError } from '../config.js';
import {
  captureOutput,
  EmbeddedServerError,
  findOnPath,
  isProcessAlive,
  type LocalServer,
  readPid,
  type ServerRole,
  sleep,
  spawnServer,
  stopChild,
  stopPid,
} from './processes.js';

export interface EmbeddedRedisOptions {
  directory: string;
  /** The port to start on (a server found running keeps its own, from redis.port). */
  port: number;
  /** The setting that chose the port, named when the port is taken. */
  portSetting?: string;
  role: ServerRole;
  /** Append-only persistence, so queued jobs survive a restart. Tests turn it off. */
  persistent: boolean;
  /** How long to wait for the server to answer (IDSYNC_EMBEDDED_START_TIMEOUT_MS). */
  startTimeoutMs?: number;
  onLog?: (line: string) => void;
}

/**
 * A redis-server binary: REDIS_SERVER_BINARY, then `redis-server` on PATH, then one that the
 * redis-memory-server package already has in its cache. That package's own download-and-build step needs
 * download.redis.io, which is why its postinstall is disabled in package.json.
 */
async function findRedisBinary(): Promise<string> {
  const explicit = process.env.REDIS_SERVER_BINARY;
  if (explicit) {
    // Checked here: a spawn of a missing binary fails with an error event that printed the server's
    // command line, password included.
    let executable = false;
    try {
      accessSync(explicit, constants.X_OK);
      executable = statSync(explicit).isFile();
    } catch {
      // not there, or not executable
    }
    if (!executable) throw new ConfigError('REDIS_SERVER_BINARY', `${explicit} is not an executable file`);
    return explicit;
  }
  const onPath = findOnPath('redis-server');
  if (onPath) return onPath;
  try {
    const { RedisBinary } = await import('redis-memory-server');
    const cached = await RedisBinary.getPath({ version: 'stable', downloadDir: undefined } as never);
    if (cached) return cached;
  } catch {
    // fall through to the message below
  }
  throw new EmbeddedServerError(
    'no redis-server found: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL',
  );
}

export async function startEmbeddedRedis(options: EmbeddedRedisOptions): Promise<LocalServer> {
  const dir = path.resolve(options.directory);
  // The data directory itself stays enterable (the embedded PostgreSQL beside it may run as another
  // user); only the Redis folder is private.
  mkdirSync(path.dirname(dir), { recursive: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pidFile = path.join(dir, 'redis.pid');
  const portFile = path.join(dir, 'redis.port');
  const passwordFile = path.join(dir, 'redis.password');
  if (!existsSync(passwordFile))
    writeFileSync(passwordFile, randomBytes(24).toString('base64url'), { mode: 0o600 });
  const password = readFileSync(passwordFile, 'utf8').trim();
  const urlFor = (port: number) => `redis://:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const log = options.onLog ?? (() => {});
  const timeoutMs = options.startTimeoutMs ?? 30_000;

  const runningPid = readPid(pidFile);
  if (runningPid !== undefined && isProcessAlive(runningPid) && existsSync(portFile)) {
    const port = Number(readFileSync(portFile, 'utf8'));
    if (await answers(urlFor(port))) {
      log(`using Redis already running from ${dir} (pid ${runningPid}, port ${port})`);
      return {
        url: urlFor(port),
        port,
        adopted: true,
        stop: async () => {
          if (options.role === 'owner') await stopPid(runningPid, 'SIGTERM');
        },
      };
    }
  }
  if (options.role === 'guest') {
    throw new EmbeddedServerError(
      `the running idsync has not started its Redis in ${dir} yet; try again in a moment`,
    );
  }

  const binary = await findRedisBinary();
  const args = [
    '--port',
    String(options.port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--pidfile',
    pidFile,
    '--requirepass',
    password,
    '--daemonize',
    'no',
    // BullMQ needs every key kept: an evicted job key is a lost job.
    '--maxmemory-policy',
    'noeviction',
    '--appendonly',
    options.persistent ? 'yes' : 'no',
    '--save',
    '',
    '--logfile',
    '',
  ];
  const child = spawnServer(binary, args, {});
  writeFileSync(portFile, String(options.port));
  const output = captureOutput(child, log);
  const url = urlFor(options.port);
  const deadline = Date.now() + timeoutMs;
  while (!(await answers(url))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const why = output().trim().split('\n').pop() ?? 'no output';
      const portTaken = /address already in use|could not create server tcp/i.test(output());
      throw new EmbeddedServerError(
        `redis-server did not start on port ${options.port}: ${why}${
          portTaken && options.portSetting
            ? `; set ${options.portSetting} to a free port, or leave it unset to have one chosen`
            : ''
        }`,
      );
    }
    if (Date.now() > deadline) {
      await stopChild(child, 'SIGKILL');
      throw new EmbeddedServerError(
        `redis-server did not answer on port ${options.port} within ${timeoutMs / 1000} s (IDSYNC_EMBEDDED_START_TIMEOUT_MS)`,
      );
    }
    await sleep(25);
  }
  return { url, port: options.port, adopted: false, stop: () => stopChild(child, 'SIGTERM') };
}

/** One PING, bounded: a silent process holding the port must not hang the start. */
async function answers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 1_000,
    commandTimeout: 1_000,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}
