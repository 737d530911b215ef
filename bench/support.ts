import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres } from '../src/runtime/embedded-postgres.js';
import { startEmbeddedRedis } from '../src/runtime/embedded-redis.js';
import type { LocalServer } from '../src/runtime/processes.js';
import { freePort } from '../test/support/ports.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Real PostgreSQL (durable defaults: fsync on) and Redis on loopback, in a scratch directory. */
export async function startBackends(extraSettings: Record<string, string> = {}): Promise<{
  databaseUrl: string;
  redisUrl: string;
  stop(): Promise<void>;
}> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'idsync-bench-'));
  chmodSync(scratch, 0o755);
  const servers: LocalServer[] = [];
  const pg = await startEmbeddedPostgres({
    directory: path.join(scratch, 'postgres'),
    port: await freePort(),
    database: 'idsync',
    role: 'owner' as const,
    settings: { max_connections: '200', shared_buffers: '256MB', ...extraSettings },
  });
  servers.push(pg);
  const redis = await startEmbeddedRedis({
    directory: path.join(scratch, 'redis'),
    port: await freePort(),
    role: 'owner' as const,
    persistent: false,
  });
  servers.push(redis);
  return {
    databaseUrl: pg.url,
    redisUrl: redis.url,
    stop: async () => {
      for (const s of servers.reverse()) await s.stop();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}

/** The compiled daemon as its own process, so its memory can be measured apart from the load generator. */
export async function startServer(
  mode: 'serve' | 'start' | 'worker',
  env: Record<string, string>,
): Promise<{ child: ChildProcess; port: number; stop(): Promise<void> }> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  // BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", profiles the server under load.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // BENCH_DIST (in `env` or the bench's own), e.g. ".scratch/dist-before", a copy of an earlier build.
  const dist = env.BENCH_DIST ?? process.env.BENCH_DIST ?? 'dist';
  const child = spawn(process.execPath, [...nodeArgs, path.join(ROOT, dist, 'cli/main.js'), mode], {
    env: { ...process.env, LOG_LEVEL: 'warn', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    child.stdout!.on('data', (chunk) => {
      seen += chunk;
      if (seen.includes('Press Ctrl-C') || seen.includes('worker running')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${seen}`)));
  });
  return {
    child,
    port,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Peak resident set size of a process (VmHWM), in MB. */
export function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

export interface Client {
  send(method: string, path: string, body?: unknown): Promise<{ status: number; body: string }>;
  /** POSTs an HTML form (application/x-www-form-urlencoded). */
  form(path: string, fields: Record<string, string>): Promise<{ status: number; body: string }>;
}

export function httpClient(port: number, token: string, concurrency: number): Client {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const raw = (method: string, requestPath: string, payload: string | undefined, type: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method,
          path: requestPath,
          agent,
          headers: {
            Authorization: `Bearer ${token}`,
            ...(payload ? { 'Content-Type': type, 'Content-Length': Buffer.byteLength(payload) } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      if (payload) req.write(payload);
      req.end();
    });
  return {
    form: (requestPath, fields) =>
      raw('POST', requestPath, new URLSearchParams(fields).toString(), 'application/x-www-form-urlencoded'),
    send: (method, requestPath, body) =>
      raw(
        method,
        requestPath,
        body === undefined ? undefined : JSON.stringify(body),
        'application/scim+json',
      ),
  };
}

export interface Timing {
  count: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
}

/** Runs `total` operations over `concurrency` workers; each op is timed. */
export async function load(
  total: number,
  concurrency: number,
  op: (i: number) => Promise<void>,
): Promise<Timing> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const t = performance.now();
        await op(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return {
    count: total,
    seconds: round(seconds, 2),
    perSecond: Math.round(total / seconds),
    p50: round(pct(50), 2),
    p99: round(pct(99), 2),
    max: round(latencies.at(-1) ?? 0, 2),
  };
}

export const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;

export function expectStatus(actual: number, expected: number, what: string): void {
  if (actual !== expected) throw new Error(`${what}: expected HTTP ${expected}, got ${actual}`);
}
