import type { Redis } from 'ioredis';
import { QUEUE_BOARD_PATH, queueBoardRouter } from '../admin/queue-board.js';
import { adminRouter } from '../admin/router.js';
import { startWebhookWorker } from '../alerts/delivery.js';
import { WebhookDispatcher } from '../alerts/dispatcher.js';
import type { Config } from '../config.js';
import { consoleRouter } from '../console/router.js';
import { connectDatabase, type DatabaseHandle } from '../db/client.js';
import { appliedMigrationCount, expectedMigrationCount, runMigrations } from '../db/migrate.js';
import { StatisticsKeeper } from '../db/statistics-keeper.js';
import { type AppOptions, createHttpListener } from '../http/app.js';
import { API_MOUNTS, OPENAPI_PATH, openApiRouter } from '../http/openapi.js';
import { asSettingError, listen, type RunningHttpServer } from '../http/server.js';
import { syncAuditPollSchedulers } from '../jobs/audit-poll-schedule.js';
import { connectionReady, createRedisConnection } from '../jobs/connection.js';
import { deprovisionAlert } from '../jobs/deprovision-alert.js';
import { OutboxPurger } from '../jobs/outbox-purge.js';
import { OutboxRelay } from '../jobs/outbox-relay.js';
import { closeQueues, type LaneQueues, openQueues } from '../jobs/queues.js';
import { settlesWithin } from '../jobs/settles-within.js';
import { Sweeper } from '../jobs/sweeper.js';
import { type JobHandler, startWorkerPool, type WorkerPool } from '../jobs/workers.js';
import type { Logger } from '../log.js';
import { metricsRouter, offerMetricsToPrimary } from '../metrics/endpoint.js';
import { attachSharedState } from '../metrics/shared-state.js';
import { type ConnectorFor, connectorFactory } from '../platform/factory.js';
import { scimRouter } from '../scim/router.js';
import { SecretBox } from '../security/secret-box.js';
import { ssoRouter } from '../sso/router.js';
import { ScimTokenVerifier } from '../tenants/scim-token-cache.js';
import { createTenant, listTenants, type TenantWithToken } from '../tenants/tenants.js';
import { oauthRouter } from '../tokens/router.js';
import { warmEdgeReads } from './edge-warm-up.js';
import {
  claimForDaemon,
  type Endpoint,
  provideDatabase,
  provideRedis,
  reaching,
  releaseClaim,
} from './infrastructure.js';
import { createJobHandler, DRIFT_TICK } from './job-handler.js';
import {
  databasePoolSize,
  embeddedMaxConnections,
  PAGE_SCAN_CONNECTIONS,
  PIPELINED_READ_CONNECTIONS,
} from './pool-size.js';
import { startWorkerHealth } from './worker-health.js';

/** start: HTTP and workers in one process (the laptop default); serve: HTTP only; worker: jobs only. */
export type DaemonMode = 'start' | 'serve' | 'worker';

export interface DaemonOptions {
  mode: DaemonMode;
  config: Config;
  log: Logger;
  /** BullMQ key prefix; tests give each file its own so they can share one Redis. */
  queuePrefix?: string;
  jobHandler?: JobHandler;
  /** Extra routers to mount (the protocol edges), given the running daemon's resources. */
  mounts?: (resources: DaemonResources) => AppOptions['mounts'];
  /** First back-off of a failed webhook delivery (doubles per attempt); tests shorten it. */
  webhookBackoffMs?: number;
}

export interface DaemonResources {
  database: DatabaseHandle;
  /** The SCIM edge's short reads (pool-size.ts, PIPELINED_READ_CONNECTIONS); `database` in a worker. */
  pipelinedReads: DatabaseHandle;
  /** The SCIM edge's deep pages (pool-size.ts, PAGE_SCAN_CONNECTIONS); `database` in a worker. */
  pageScans: DatabaseHandle;
  queues: LaneQueues;
  connectorFor: ConnectorFor;
  config: Config;
  log: Logger;
}

export interface Daemon {
  resources: DaemonResources;
  /** The HTTP port actually bound (serve and start modes). */
  port: number | undefined;
  /** The port of the worker's /healthz and /readyz (worker and start modes). */
  workerHealthPort: number | undefined;
  /** Set when this start created the first tenant: its SCIM token, to show once. */
  firstTenant: TenantWithToken | undefined;
  databaseUrl: string;
  redisUrl: string;
  stop(): Promise<void>;
}

/**
 * Brings idsync up in dependency order and takes it down in the reverse: stop accepting HTTP and drain
 * in-flight requests, stop relaying, let running jobs finish, close pools, and only then stop the
 * embedded servers.
 */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { config, log, mode } = options;
  // Each cleanup is told how much of SHUTDOWN_TIMEOUT_MS is left, so the whole stop is bounded by it
  // (stopping embedded servers aside): a wedged job or request cannot keep the process alive.
  const cleanups: ((remainingMs: number) => Promise<void>)[] = [];
  // Stopping the embedded servers and releasing the data directory must finish whatever the deadline.
  const mustFinish = new Set<(typeof cleanups)[number]>();
  const stopAll = async () => {
    const deadline = Date.now() + config.shutdownTimeoutMs;
    for (const cleanup of cleanups.reverse()) {
      const remainingMs = Math.max(0, deadline - Date.now());
      try {
        const step = cleanup(remainingMs);
        // A step that ignores its budget (a client stuck reconnecting to a Redis that came back) gets
        // one more second past it, then the stop moves on: nothing it holds outlives the process.
        if (!mustFinish.has(cleanup) && !(await settlesWithin(step, remainingMs + 1_000)))
          log.warn({ remainingMs }, 'shutdown: a step did not finish in time; moving on');
        else await step;
      } catch (error) {
        log.warn({ err: error }, 'error during shutdown');
      }
    }
    cleanups.length = 0;
  };
  const pushMustFinish = (cleanup: (typeof cleanups)[number]) => {
    mustFinish.add(cleanup);
    cleanups.push(cleanup);
  };

  try {
    // Checked before anything starts: a pool too small for the configured concurrency is a config error.
    const poolSize = databasePoolSize(mode, config);
    // One idsync per data directory: a second start refuses here, before it touches the servers.
    const claim = await claimForDaemon(config, mode);
    pushMustFinish(async () => releaseClaim(claim));
    const databaseEndpoint: Endpoint = await provideDatabase(
      config,
      log,
      claim,
      embeddedMaxConnections(mode, config, 1),
    );
    pushMustFinish(() => databaseEndpoint.release());
    const redisEndpoint: Endpoint = await provideRedis(config, log, claim);
    pushMustFinish(() => redisEndpoint.release());

    await reaching('PostgreSQL', databaseEndpoint, () =>
      runMigrations(databaseEndpoint.url, { warn: (message) => log.warn(message) }),
    );
    const database = connectDatabase(databaseEndpoint.url, {
      max: poolSize,
      connectTimeoutMs: config.databaseTimeoutMs,
      // Requests must not hang on a wedged database; workers' drift scans may run longer statements.
      ...(mode === 'worker' ? {} : { statementTimeoutMs: config.databaseTimeoutMs }),
    });
    cleanups.push((remainingMs) => database.close(Math.min(5_000, remainingMs)));
    // The SCIM edge's own small pools (pool-size.ts); a worker has no edge and passes its pool instead.
    const edgePool = (max: number, applicationName: string, genericPlans = false) => {
      if (mode === 'worker') return database;
      const pool = connectDatabase(databaseEndpoint.url, {
        max,
        connectTimeoutMs: config.databaseTimeoutMs,
        statementTimeoutMs: config.databaseTimeoutMs,
        applicationName,
        genericPlans,
      });
      cleanups.push((remainingMs) => pool.close(Math.min(5_000, remainingMs)));
      return pool;
    };
    const pipelinedReads = edgePool(PIPELINED_READ_CONNECTIONS, 'idsync reads');
    // Its page statements read the order index whatever the offset (user-queries.ts, skipping seeks).
    const pageScans = edgePool(PAGE_SCAN_CONNECTIONS, 'idsync page scans', true);
    // Every process, whichever mode: during an initial push it is the API's own lookups that misplan.
    const statistics = new StatisticsKeeper({ sql: database.sql, log });
    statistics.start();
    cleanups.push(() => statistics.stop());

    const producer: Redis = createRedisConnection(redisEndpoint.url, 'producer');
    cleanups.push(async () => producer.disconnect());
    await reaching('Redis', redisEndpoint, () => connectionReady(producer));
    const prefix = options.queuePrefix ?? config.queuePrefix;
    const queues = openQueues(producer, prefix);
    cleanups.push(() => closeQueues(queues));
    const connectorFor = connectorFactory({ database, redis: producer, config, log });
    // Scrapes on either port read the outbox, queues and reports through this process's pools.
    const detachSharedState = attachSharedState({ sql: database.sql, queues });
    cleanups.push(async () => detachSharedState());
    offerMetricsToPrimary();
    const resources: DaemonResources = {
      database,
      pipelinedReads,
      pageScans,
      queues,
      connectorFor,
      config,
      log,
    };

    let firstTenant: TenantWithToken | undefined;
    if (mode === 'start' && (await listTenants(database.db)).length === 0) {
      firstTenant = await createTenant(database.db, 'default', 'idsync start');
    }

    let workerHealthPort: number | undefined;
    if (mode !== 'serve') {
      const pool: WorkerPool = await startWorkerPool({
        redisUrl: redisEndpoint.url,
        prefix,
        log,
        concurrency: config.workerConcurrency,
        lockMs: config.jobLockMs,
        maxStalledCount: config.jobMaxStalledCount,
        onFailure: deprovisionAlert(database.db, log),
        handler: options.jobHandler ?? createJobHandler(database, connectorFor, queues),
      });
      cleanups.push((remainingMs) => pool.close(remainingMs));
      const health = await startWorkerHealth({
        port: config.workerHealthPort,
        fallbackToFreePort: config.workerHealthPort === undefined,
        host: config.host,
        log,
        sql: database.sql,
        redis: producer,
        queues,
        activity: pool.activity,
        stuckAfterMs: config.workerStuckAfterMs,
        metrics: config,
      });
      workerHealthPort = health.port;
      cleanups.push((remainingMs) => health.close(Math.min(1_000, remainingMs)));
      if (config.driftTickMs > 0) {
        // One scheduler for all workers (BullMQ keeps it once per id); each tick queues the due scans.
        await queues.scan.upsertJobScheduler(
          'drift-tick',
          { every: config.driftTickMs },
          {
            name: 'drift-tick',
            data: { tenantId: DRIFT_TICK, subjectType: 'tenant', subjectId: DRIFT_TICK },
          },
        );
      }
      // Audit-trail polls per tenant; kept in step with the tenants' settings by each drift tick.
      await syncAuditPollSchedulers(database.db, queues.scan);
      const relay = new OutboxRelay({ sql: database.sql, queues, log, pollMs: config.outboxPollMs });
      await relay.start();
      cleanups.push(() => relay.stop());
      // Alerts: delivery rows written with their facts move into the webhook lane and out to receivers.
      const dispatcher = new WebhookDispatcher({
        sql: database.sql,
        redis: producer,
        prefix,
        log,
        pollMs: config.outboxPollMs,
        ...(options.webhookBackoffMs ? { backoffMs: options.webhookBackoffMs } : {}),
      });
      await dispatcher.start();
      cleanups.push(async (remainingMs) => {
        if (!(await dispatcher.stop(remainingMs)))
          log.warn(
            'shutdown: the webhook dispatcher did not stop in time; its rows stay pending in PostgreSQL',
          );
      });
      const webhooks = await startWebhookWorker({
        db: database.db,
        redisUrl: redisEndpoint.url,
        prefix,
        log,
        secretBox: optionalSecretBox(config),
        allowPrivateNetworks: config.webhookAllowPrivateNetworks,
        publicUrl: config.publicUrl,
      });
      cleanups.push((remainingMs) => webhooks.close(remainingMs));
      const purger = new OutboxPurger({
        sql: database.sql,
        log,
        retentionDays: config.outboxRetentionDays,
      });
      purger.start();
      cleanups.push(() => purger.stop());
      if (config.sweeperIntervalMs > 0) {
        const sweeper = new Sweeper({
          database,
          log,
          intervalMs: config.sweeperIntervalMs,
          graceMs: config.sweeperGraceMs,
        });
        sweeper.start();
        cleanups.push(() => sweeper.stop());
      }
    }

    let http: RunningHttpServer | undefined;
    if (mode !== 'worker') {
      // Before the port opens, so the first reads find their connections open and statements ready.
      await warmEdgeReads(resources, `${config.publicUrl}${API_MOUNTS.scim}`, log, config.databaseTimeoutMs);
      const tokens = new ScimTokenVerifier(database);
      await tokens.start();
      cleanups.push(() => tokens.stop());
      const expectedMigrations = expectedMigrationCount();
      const listener = createHttpListener({
        log,
        readiness: [
          {
            name: 'postgres',
            check: async () => {
              const applied = await appliedMigrationCount(database.sql);
              if (applied < expectedMigrations) {
                throw new Error(`migrations pending: ${applied} of ${expectedMigrations} applied`);
              }
            },
          },
          {
            name: 'redis',
            check: async () => {
              await producer.ping();
            },
            // SCIM and SSO write changes and their outbox rows to PostgreSQL only; the relay moves them
            // on when Redis is back. Without Redis the API is degraded, not unable to serve.
            required: false,
          },
        ],
        mounts: [
          ...edgeMounts({ resources, tokens, redis: producer }),
          ...(options.mounts?.(resources) ?? []),
        ],
      });
      http = await listen(listener, config.port, config.host).catch((error) => {
        throw asSettingError(error, config.port, config.host, 'PORT');
      });
      const server = http;
      cleanups.push((remainingMs) => server.close(remainingMs));
      if (claim.kind === 'owner') claim.lock.update({ httpPort: server.port });
    }

    return {
      resources,
      port: http?.port,
      workerHealthPort,
      firstTenant,
      databaseUrl: databaseEndpoint.url,
      redisUrl: redisEndpoint.url,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * The protocol edges the HTTP app mounts, in order: the OpenAPI document before the admin API (it needs
 * no credential), each edge with its own error format. Exported so the contract test walks exactly these.
 */
export function edgeMounts(options: {
  resources: DaemonResources;
  tokens: ScimTokenVerifier;
  redis: Redis;
}): NonNullable<AppOptions['mounts']> {
  const { database, config, connectorFor, queues } = options.resources;
  return [
    { path: '/', router: metricsRouter(config) },
    {
      path: API_MOUNTS.scim,
      withoutExpress: true,
      router: scimRouter({
        db: database.db,
        pipelinedReads: options.resources.pipelinedReads.db,
        pageScans: options.resources.pageScans.db,
        tokens: options.tokens,
        baseUrl: `${config.publicUrl}${API_MOUNTS.scim}`,
      }),
    },
    { path: API_MOUNTS.oauth, router: oauthRouter({ db: database.db }) },
    {
      path: '/sso',
      router: ssoRouter({
        db: database.db,
        redis: options.redis,
        publicUrl: config.publicUrl,
        secretBox: optionalSecretBox(config),
      }),
    },
    { path: OPENAPI_PATH, router: openApiRouter() },
    {
      path: API_MOUNTS.admin,
      router: adminRouter({
        db: database.db,
        adminToken: config.adminToken,
        reconcile: { database, connectorFor },
        secretBox: optionalSecretBox(config),
        webhookAllowPrivateNetworks: config.webhookAllowPrivateNetworks,
      }),
    },
    {
      path: QUEUE_BOARD_PATH,
      router: queueBoardRouter({
        db: database.db,
        adminToken: config.adminToken,
        queues,
        publicUrl: config.publicUrl,
      }),
    },
    {
      path: '/console',
      router: consoleRouter({
        db: database.db,
        adminToken: config.adminToken,
        publicUrl: config.publicUrl,
      }),
    },
  ];
}

/**
 * The SP key that signs SAML Single Logout messages is sealed like platform tokens. With a shared
 * DATABASE_URL and no IDSYNC_SECRET_KEY there is no key every process shares: SLO is then not offered.
 */
function optionalSecretBox(config: Config): SecretBox | undefined {
  try {
    return SecretBox.fromConfig(config);
  } catch {
    return undefined;
  }
}
