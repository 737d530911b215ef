import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, createWriteStream, mkdirSync, mkdtempSync, rmSync, type WriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { connectDatabase, type DatabaseHandle } from '../../src/db/client.js';
import { runMigrations } from '../../src/db/migrate.js';
import { startEmbeddedPostgres } from '../../src/runtime/embedded-postgres.js';
import { startEmbeddedRedis } from '../../src/runtime/embedded-redis.js';
import type { LocalServer } from '../../src/runtime/processes.js';
import { freePort } from '../../test/support/ports.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * How the idsync processes are started: the compiled CLI (`npm run chaos`, after `npm run build`), or
 * the TypeScript source through tsx (the short variants inside `npm test`, which must test the source).
 */
export type Runner = 'dist' | 'source';

export interface ClusterOptions {
  workers: number;
  runner: Runner;
  /** Extra environment for every idsync process (JOB_LOCK_MS, WORKER_CONCURRENCY, …). */
  env?: Record<string, string>;
  /** Prints progress lines. */
  say?: (line: string) => void;
}

interface IdsyncProcess {
  name: string;
  child: ChildProcess;
  port: number;
}

/**
 * Real PostgreSQL and Redis (durable: fsync on, Redis append-only), one `idsync serve` and N
 * `idsync worker`, each its own OS process, on loopback. Every process's output goes to a log file in
 * the scratch directory, kept when the run fails.
 */
export class ChaosCluster {
  readonly scratch: string;
  databaseUrl = '';
  redisUrl = '';
  apiPort = 0;
  readonly workerPorts: number[] = [];
  database!: DatabaseHandle;
  kills = 0;
  /** Processes that exited without being told to (each restarted, as a process supervisor would). */
  readonly crashes: string[] = [];
  private readonly intended = new Set<ChildProcess>();
  private stopping = false;
  private postgres: LocalServer | undefined;
  private redis: LocalServer | undefined;
  private postgresOptions!: Parameters<typeof startEmbeddedPostgres>[0];
  private redisOptions!: Parameters<typeof startEmbeddedRedis>[0];
  private api: IdsyncProcess | undefined;
  private readonly workers: (IdsyncProcess | undefined)[] = [];
  private readonly logs: WriteStream;
  private readonly say: (line: string) => void;

  constructor(private readonly options: ClusterOptions) {
    this.scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-chaos-'));
    chmodSync(this.scratch, 0o755);
    mkdirSync(path.join(this.scratch, 'logs'));
    this.logs = createWriteStream(path.join(this.scratch, 'logs', 'idsync.log'));
    this.say = options.say ?? (() => {});
  }

  async start(): Promise<void> {
    this.postgresOptions = {
      directory: path.join(this.scratch, 'postgres'),
      port: await freePort(),
      database: 'idsync',
      adoptRunning: false,
      settings: { max_connections: '300' },
    };
    this.redisOptions = {
      directory: path.join(this.scratch, 'redis'),
      port: await freePort(),
      adoptRunning: false,
      persistent: true,
    };
    this.postgres = await startEmbeddedPostgres(this.postgresOptions);
    this.redis = await startEmbeddedRedis(this.redisOptions);
    this.databaseUrl = this.postgres.url;
    this.redisUrl = this.redis.url;
    await runMigrations(this.databaseUrl);
    this.database = connectDatabase(this.databaseUrl, { max: 4 });
  }

  /**
   * Starts serve and the workers (after the test data is in place); on a cluster already running,
   * brings the number of running workers to `workers` (stopping extra ones with SIGTERM).
   */
  async startIdsync(workers = this.options.workers): Promise<void> {
    if (this.api) {
      for (let i = 0; i < Math.max(workers, this.workers.length); i++) {
        if (i < workers) await this.restartWorker(i);
        else await this.stopWorker(i);
      }
      return;
    }
    this.apiPort = await freePort();
    this.api = await this.spawn('serve', 'serve', { PORT: String(this.apiPort) });
    for (let i = 0; i < workers; i++) this.workers[i] = await this.spawnWorker(i);
  }

  private async stopWorker(index: number): Promise<void> {
    const worker = this.workers[index];
    if (!worker) return;
    this.workers[index] = undefined;
    this.intended.add(worker.child);
    await stopProcess(worker);
  }

  private async spawnWorker(index: number): Promise<IdsyncProcess> {
    this.workerPorts[index] ??= await freePort();
    const worker = await this.spawn(`worker-${index + 1}`, 'worker', {
      // Workers have no public HTTP port; PORT only keeps them off the default 8080.
      PORT: String(this.apiPort),
      WORKER_HEALTH_PORT: String(this.workerPorts[index]),
    });
    // A worker that dies by itself is counted and replaced, as systemd or Kubernetes would do.
    worker.child.once('exit', (code, signal) => {
      if (this.intended.has(worker.child) || this.stopping) return;
      this.crashes.push(`${worker.name} exited by itself (${code ?? signal})`);
      this.say(`${worker.name} crashed (${code ?? signal}); restarting it`);
      if (this.workers[index] === worker) {
        this.workers[index] = undefined;
        void this.superviseRestart(index);
      }
    });
    return worker;
  }

  private async spawn(name: string, mode: 'serve' | 'worker', extra: Record<string, string>) {
    const entry =
      this.options.runner === 'dist'
        ? [path.join(ROOT, 'dist/cli/main.js')]
        : ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts')];
    const child = spawn(process.execPath, [...entry, mode], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DATABASE_URL: this.databaseUrl,
        REDIS_URL: this.redisUrl,
        LOG_LEVEL: 'warn',
        OUTBOX_POLL_MS: '200',
        DRIFT_TICK_MS: '0',
        ...this.options.env,
        ...extra,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const tag = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line) this.logs.write(`[${name}] ${line}\n`);
    };
    child.stderr!.on('data', tag);
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      const onData = (chunk: Buffer) => {
        tag(chunk);
        seen += chunk;
        if (seen.includes('Press Ctrl-C') || seen.includes('worker running')) resolve();
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code, signal) => reject(new Error(`${name} exited (${code ?? signal}): ${seen}`)));
    });
    child.removeAllListeners('exit');
    return { name, child, port: Number(extra.PORT) };
  }

  /** kill -9 of one worker, then a fresh worker process in its place (as a supervisor would). */
  async killWorker(index: number, restart = true): Promise<void> {
    const worker = this.workers[index];
    if (!worker) return;
    const exited = new Promise((resolve) => worker.child.once('exit', resolve));
    this.intended.add(worker.child);
    worker.child.kill('SIGKILL');
    this.kills += 1;
    await exited;
    this.workers[index] = undefined;
    if (restart) this.workers[index] = await this.spawnWorker(index);
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) every running worker, relay included. */
  signalWorkers(signal: 'SIGSTOP' | 'SIGCONT'): void {
    for (const worker of this.workers) worker?.child.kill(signal);
  }

  /** Replaces every worker with a fresh process (kill -9, restart). */
  async replaceWorkers(): Promise<void> {
    for (let i = 0; i < this.workers.length; i++) if (this.workers[i]) await this.killWorker(i);
  }

  /**
   * Restarts a crashed worker until it stays up, with a back-off (systemd's Restart=always): a worker
   * refuses to start while PostgreSQL is down, so the first attempts may fail.
   */
  private async superviseRestart(index: number): Promise<void> {
    for (let attempt = 1; !this.stopping; attempt++) {
      try {
        await this.restartWorker(index);
        return;
      } catch (error) {
        this.say(
          `restart of worker-${index + 1} failed (attempt ${attempt}): ${(error as Error).message.slice(0, 120)}`,
        );
        await new Promise((resolve) => setTimeout(resolve, Math.min(1_000 * attempt, 5_000)));
      }
    }
  }

  async restartWorker(index: number): Promise<void> {
    if (!this.workers[index]) this.workers[index] = await this.spawnWorker(index);
  }

  async stopPostgres(): Promise<void> {
    await this.postgres?.stop();
    this.postgres = undefined;
  }

  async startPostgres(): Promise<void> {
    this.postgres = await startEmbeddedPostgres(this.postgresOptions);
  }

  async stopRedis(): Promise<void> {
    await this.redis?.stop();
    this.redis = undefined;
  }

  async startRedis(): Promise<void> {
    this.redis = await startEmbeddedRedis(this.redisOptions);
  }

  /** Redis forgets everything: every queued and running job, BullMQ's bookkeeping, the rate budgets. */
  async flushRedis(): Promise<void> {
    const client = new Redis(this.redisUrl, { maxRetriesPerRequest: 1 });
    try {
      await client.flushall();
    } finally {
      client.disconnect();
    }
  }

  redisClient(): Redis {
    const client = new Redis(this.redisUrl, { maxRetriesPerRequest: 1 });
    // Outages are the point here: failed commands say so; the connection's own errors are noise.
    client.on('error', () => {});
    return client;
  }

  /** Stops everything; the scratch directory (with the logs) is kept when `keep` is set. */
  async stop(keep: boolean): Promise<void> {
    this.stopping = true;
    const stopping = [this.api, ...this.workers].filter((p): p is IdsyncProcess => p !== undefined);
    await Promise.all(stopping.map(stopProcess));
    await this.database?.close().catch(() => {});
    await this.redis?.stop().catch(() => {});
    await this.postgres?.stop().catch(() => {});
    await new Promise<void>((resolve) => this.logs.end(resolve));
    if (keep) this.say(`logs and data kept in ${this.scratch}`);
    else rmSync(this.scratch, { recursive: true, force: true });
  }
}

function stopProcess(p: IdsyncProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
    p.child.once('exit', () => resolve());
    p.child.kill('SIGTERM');
    setTimeout(() => p.child.kill('SIGKILL'), 20_000).unref();
  });
}
