import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import {
  captureOutput,
  findOnPath,
  isProcessAlive,
  type LocalServer,
  readPid,
  sleep,
  spawnServer,
  stopChild,
  stopPid,
} from './processes.js';

export interface EmbeddedRedisOptions {
  directory: string;
  port: number;
  adoptRunning: boolean;
  /** Append-only persistence, so queued jobs survive a restart. Tests turn it off. */
  persistent: boolean;
  onLog?: (line: string) => void;
}

/**
 * A redis-server binary: REDIS_SERVER_BINARY, then `redis-server` on PATH, then one that the
 * redis-memory-server package already has in its cache. That package's own download-and-build step needs
 * download.redis.io, which is why its postinstall is disabled in package.json.
 */
async function findRedisBinary(): Promise<string> {
  const explicit = process.env.REDIS_SERVER_BINARY;
  if (explicit) return explicit;
  const onPath = findOnPath('redis-server');
  if (onPath) return onPath;
  try {
    const { RedisBinary } = await import('redis-memory-server');
    const cached = await RedisBinary.getPath({ version: 'stable', downloadDir: undefined } as never);
    if (cached) return cached;
  } catch {
    // fall through to the message below
  }
  throw new Error(
    'no redis-server found: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL',
  );
}

export async function startEmbeddedRedis(options: EmbeddedRedisOptions): Promise<LocalServer> {
  const dir = path.resolve(options.directory);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pidFile = path.join(dir, 'redis.pid');
  const passwordFile = path.join(dir, 'redis.password');
  if (!existsSync(passwordFile))
    writeFileSync(passwordFile, randomBytes(24).toString('base64url'), { mode: 0o600 });
  const password = readFileSync(passwordFile, 'utf8').trim();
  const log = options.onLog ?? (() => {});

  const runningPid = readPid(pidFile);
  if (runningPid !== undefined && isProcessAlive(runningPid)) {
    const portFile = path.join(dir, 'redis.port');
    const port = existsSync(portFile) ? Number(readFileSync(portFile, 'utf8')) : options.port;
    const url = `redis://:${encodeURIComponent(password)}@127.0.0.1:${port}`;
    if (await answers(url)) {
      log(`reusing Redis already running from ${dir} (pid ${runningPid}, port ${port})`);
      return {
        url,
        owned: options.adoptRunning,
        stop: async () => {
          if (options.adoptRunning) await stopPid(runningPid, 'SIGTERM');
        },
      };
    }
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
  writeFileSync(path.join(dir, 'redis.port'), String(options.port));
  const output = captureOutput(child, log);
  const url = `redis://:${encodeURIComponent(password)}@127.0.0.1:${options.port}`;
  const deadline = Date.now() + 30_000;
  while (!(await answers(url))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `redis-server did not start (port ${options.port}): ${output().trim().split('\n').pop()}`,
      );
    }
    if (Date.now() > deadline) {
      await stopChild(child, 'SIGKILL');
      throw new Error('redis-server did not answer within 30 s');
    }
    await sleep(25);
  }
  return { url, owned: true, stop: () => stopChild(child, 'SIGTERM') };
}

async function answers(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
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
