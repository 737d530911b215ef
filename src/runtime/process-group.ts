import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import type { Config } from '../config.js';
import { connectDatabase } from '../db/client.js';
import { runMigrations } from '../db/migrate.js';
import type { Logger } from '../log.js';
import { aggregateMetricsForGroup } from '../metrics/endpoint.js';
import { createTenant, listTenants, type TenantWithToken } from '../tenants/tenants.js';
import type { DaemonMode } from './daemon.js';
import {
  claimForDaemon,
  type Endpoint,
  provideDatabase,
  provideRedis,
  reaching,
  releaseClaim,
} from './infrastructure.js';
import { embeddedMaxConnections } from './pool-size.js';

/*
 * `--processes N`: one Node process uses one core, so on a bigger machine idsync runs N copies of the
 * daemon as node:cluster workers sharing the HTTP port (the primary hands each new connection to one of
 * them). The primary does what must happen once: it starts or finds PostgreSQL and Redis, migrates,
 * creates the first tenant, and stops the servers it started after every process has drained.
 * Everything the processes share lives in PostgreSQL and Redis already (token cache invalidation by
 * NOTIFY, assertion replay cache, job queues, the outbox claimed with SKIP LOCKED).
 */

/** Messages between the primary and its processes. */
type GroupMessage = { type: 'idsync-ready'; port: number | undefined } | { type: 'idsync-stop' };

const isGroupMessage = (message: unknown): message is GroupMessage =>
  typeof message === 'object' &&
  message !== null &&
  String((message as { type?: unknown }).type).startsWith('idsync-');

/** A process started in the first seconds and already gone is a crash loop, not a hiccup: give up. */
const CRASH_LOOP_MS = 10_000;

export interface ProcessGroup {
  port: number | undefined;
  firstTenant: TenantWithToken | undefined;
  /** Asks every process to drain and stop, then stops the servers the primary started. */
  stop(): Promise<void>;
  /** Resolves with an exit code if the group cannot go on (a process keeps crashing). */
  failed: Promise<number>;
}

export async function startProcessGroup(options: {
  mode: DaemonMode;
  config: Config;
  log: Logger;
  processes: number;
}): Promise<ProcessGroup> {
  const { mode, config, log, processes } = options;
  // The primary holds the data directory for the whole group; its processes get the servers' URLs.
  const claim = await claimForDaemon(config, mode);
  const endpoints: Endpoint[] = [];
  const releaseEndpoints = async () => {
    for (const endpoint of endpoints.reverse()) await endpoint.release().catch(() => {});
    releaseClaim(claim);
  };
  let firstTenant: TenantWithToken | undefined;
  try {
    const database = await provideDatabase(
      config,
      log,
      claim,
      embeddedMaxConnections(mode, config, processes),
    );
    endpoints.push(database);
    endpoints.push(await provideRedis(config, log, claim));
    await reaching('PostgreSQL', database, () =>
      runMigrations(database.url, { warn: (message) => log.warn(message) }),
    );
    if (mode === 'start') {
      const handle = connectDatabase(database.url, { max: 1 });
      try {
        if ((await listTenants(handle.db)).length === 0)
          firstTenant = await createTenant(handle.db, 'default', 'idsync start');
      } finally {
        await handle.close();
      }
    }
  } catch (error) {
    await releaseEndpoints();
    throw error;
  }

  const env = { DATABASE_URL: endpoints[0]!.url, REDIS_URL: endpoints[1]!.url };
  aggregateMetricsForGroup();
  const members = new Set<Worker>();
  let stopping = false;
  let reportFailure: (code: number) => void = () => {};
  const failed = new Promise<number>((resolve) => {
    reportFailure = resolve;
  });

  const fork = (): Promise<number | undefined> => {
    const startedAt = Date.now();
    const member = cluster.fork(env);
    members.add(member);
    const ready = new Promise<number | undefined>((resolve, reject) => {
      member.on('message', (message: unknown) => {
        if (isGroupMessage(message) && message.type === 'idsync-ready') resolve(message.port);
      });
      member.once('exit', (code, signal) => {
        members.delete(member);
        reject(new Error(`process ${member.process.pid} exited during start (${signal ?? code})`));
        if (stopping) return;
        if (Date.now() - startedAt < CRASH_LOOP_MS) {
          log.error({ pid: member.process.pid, code, signal }, 'a process keeps crashing; stopping idsync');
          reportFailure(1);
          return;
        }
        log.error({ pid: member.process.pid, code, signal }, 'a process died; starting another');
        fork().catch(() => {});
      });
    });
    return ready;
  };

  const stop = async () => {
    stopping = true;
    await Promise.all(
      [...members].map(async (member) => {
        if (member.isDead()) return;
        const exited = once(member, 'exit');
        member.send({ type: 'idsync-stop' } satisfies GroupMessage);
        const timer = setTimeout(() => member.process.kill('SIGKILL'), config.shutdownTimeoutMs + 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    await releaseEndpoints();
  };

  try {
    const ports = await Promise.all(Array.from({ length: processes }, fork));
    if (claim.kind === 'owner') claim.lock.update({ httpPort: ports[0] });
    return { port: ports[0], firstTenant, stop, failed };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * In a process of the group: tells the primary this process is up, and calls `stop` when the primary
 * asks. Outside a group it does nothing.
 */
export function joinProcessGroup(port: number | undefined, stop: () => void): void {
  if (!cluster.isWorker) return;
  process.on('message', (message: unknown) => {
    if (isGroupMessage(message) && message.type === 'idsync-stop') stop();
  });
  process.send?.({ type: 'idsync-ready', port } satisfies GroupMessage);
}

export const inProcessGroup = () => cluster.isWorker;
