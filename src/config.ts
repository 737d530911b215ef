import path from 'node:path';
import { z } from 'zod';

/**
 * Every setting idsync reads, from environment variables only (twelve-factor), validated once at start.
 * A bad value becomes a ConfigError that names the variable, so the operator sees one precise line.
 */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const portNumber = z.coerce
  .number({ error: 'must be a number' })
  .int('must be a whole number')
  .min(0, 'must be between 0 and 65535')
  .max(65535, 'must be between 0 and 65535');
const port = (fallback: number) => portNumber.default(fallback);

const positiveInt = (fallback: number) =>
  z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .positive('must be greater than 0')
    .default(fallback);

const connectionUrl = (schemes: string[]) =>
  z
    .string()
    .refine(
      (value) => {
        try {
          return schemes.includes(new URL(value).protocol);
        } catch {
          return false;
        }
      },
      `must be a URL starting with ${schemes.map((s) => `${s}//`).join(' or ')}`,
    )
    .optional();

const envSchema = z.object({
  DATABASE_URL: connectionUrl(['postgres:', 'postgresql:']),
  REDIS_URL: connectionUrl(['redis:', 'rediss:']),
  PORT: port(8080),
  HOST: z.string().min(1, 'must not be empty').default('127.0.0.1'),
  PUBLIC_URL: z
    .string()
    .refine((value) => {
      try {
        const url = new URL(value);
        return (
          (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === ''
        );
      } catch {
        return false;
      }
    }, 'must be an http:// or https:// URL without query or fragment')
    .optional(),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  IDSYNC_DATA_DIR: z.string().min(1, 'must not be empty').default('.idsync'),
  // 0: a free port chosen at each start and recorded in the data directory's lock file.
  IDSYNC_EMBEDDED_PG_PORT: port(0),
  IDSYNC_EMBEDDED_REDIS_PORT: port(0),
  IDSYNC_EMBEDDED_START_TIMEOUT_MS: positiveInt(60_000),
  IDSYNC_ADMIN_TOKEN: z.string().min(32, 'must be at least 32 characters').optional(),
  WORKER_CONCURRENCY: positiveInt(8),
  WORKER_PROCESSES: z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .positive('must be greater than 0')
    .optional(),
  SHUTDOWN_TIMEOUT_MS: positiveInt(15_000),
  OUTBOX_POLL_MS: positiveInt(200),
  IDSYNC_QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, dashes or underscores')
    .default('idsync'),
  JOB_LOCK_MS: positiveInt(30_000),
  DRIFT_TICK_MS: z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(0, 'must be 0 (off) or more')
    .default(60_000),
  IDSYNC_SECRET_KEY: z.string().min(32, 'must be at least 32 characters').optional(),
  DATABASE_TIMEOUT_MS: positiveInt(5_000),
  WORKER_HEALTH_PORT: portNumber.optional(),
  WORKER_STUCK_AFTER_MS: positiveInt(300_000),
  OUTBOX_RETENTION_DAYS: positiveInt(7),
  DATABASE_POOL_SIZE: z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .positive('must be greater than 0')
    .optional(),
  JOB_MAX_STALLED_COUNT: positiveInt(10),
  SWEEPER_INTERVAL_MS: z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(0, 'must be 0 (off) or more')
    .default(60_000),
  SWEEPER_GRACE_MS: positiveInt(300_000),
  METRICS_TOKEN: z.string().min(32, 'must be at least 32 characters').optional(),
  METRICS_OPEN: z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'),
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .default('false'),
});

export interface Config {
  /** Absent: idsync starts its own PostgreSQL under dataDir. */
  databaseUrl: string | undefined;
  /** Absent: idsync starts its own Redis under dataDir. */
  redisUrl: string | undefined;
  port: number;
  host: string;
  /** The origin IdPs and browsers reach idsync at; SCIM base URL and SAML endpoints derive from it. */
  publicUrl: string;
  logLevel: (typeof LOG_LEVELS)[number];
  dataDir: string;
  /** 0: a free port at each start. */
  embeddedPostgresPort: number;
  /** 0: a free port at each start. */
  embeddedRedisPort: number;
  /** How long idsync waits for an embedded server to accept connections. */
  embeddedStartTimeoutMs: number;
  adminToken: string | undefined;
  workerConcurrency: number;
  /**
   * How many daemon processes to run. Unset: see defaultProcessCount (runtime/process-count.ts).
   */
  processes: number | undefined;
  shutdownTimeoutMs: number;
  outboxPollMs: number;
  /** BullMQ key prefix: several deployments can share one Redis. */
  queuePrefix: string;
  /** How long a worker's job lock lasts; a crashed worker's job is taken over after about this long. */
  jobLockMs: number;
  /**
   * Encrypts platform credentials stored in the database. Absent: a random key kept in
   * dataDir/secret.key (fine on one machine; set it when API and workers run on several).
   */
  secretKey: string | undefined;
  /** How often workers look for tenants due a drift scan (each tenant has its own interval); 0: never. */
  driftTickMs: number;
  /**
   * How long a connection attempt to PostgreSQL, and (in API processes) one statement, may take before
   * the request fails; SCIM then answers 503 with Retry-After instead of hanging on an outage.
   */
  databaseTimeoutMs: number;
  /**
   * Port of the worker's own /healthz and /readyz (worker and start modes); 0 picks a free port.
   * Unset: 8081, or a free port (logged) when 8081 is taken, e.g. by a second worker on one host.
   */
  workerHealthPort: number | undefined;
  /** A worker whose jobs have not moved for this long while work is waiting reports not ready. */
  workerStuckAfterMs: number;
  /** Relayed outbox rows older than this are deleted (in batches). */
  outboxRetentionDays: number;
  /** PostgreSQL connections per process; unset: sized from the mode and WORKER_CONCURRENCY. */
  databasePoolSize: number | undefined;
  /** How often a job may be found stalled (its worker died) and run again before it fails. */
  jobMaxStalledCount: number;
  /** How often workers sweep for lost or unfinished work; 0: never. */
  sweeperIntervalMs: number;
  /** How old relayed-but-unfinished work must be before the sweeper sends it again. */
  sweeperGraceMs: number;
  /** Bearer token Prometheus presents at /metrics (API and worker health ports). */
  metricsToken: string | undefined;
  /**
   * /metrics without a token: only for a port that nothing but Prometheus can reach. Off by default,
   * so metrics (which name lanes, drift classes and backlogs) are never public by accident.
   */
  metricsOpen: boolean;
  /**
   * Webhooks may reach loopback, private, link-local and metadata addresses (receivers on the
   * operator's own network). Off: only public addresses, checked at add time and at each connection.
   */
  webhookAllowPrivateNetworks: boolean;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set": docker-compose and shells often export VAR= for optional settings.
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? 'environment'), issue.message);
  }
  const e = parsed.data;
  const publicUrl = (e.PUBLIC_URL ?? `http://${displayHost(e.HOST)}:${e.PORT}`).replace(/\/+$/, '');
  return {
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    port: e.PORT,
    host: e.HOST,
    publicUrl,
    logLevel: e.LOG_LEVEL,
    dataDir: path.resolve(e.IDSYNC_DATA_DIR),
    embeddedPostgresPort: e.IDSYNC_EMBEDDED_PG_PORT,
    embeddedRedisPort: e.IDSYNC_EMBEDDED_REDIS_PORT,
    embeddedStartTimeoutMs: e.IDSYNC_EMBEDDED_START_TIMEOUT_MS,
    adminToken: e.IDSYNC_ADMIN_TOKEN,
    workerConcurrency: e.WORKER_CONCURRENCY,
    processes: e.WORKER_PROCESSES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    outboxPollMs: e.OUTBOX_POLL_MS,
    queuePrefix: e.IDSYNC_QUEUE_PREFIX,
    jobLockMs: e.JOB_LOCK_MS,
    secretKey: e.IDSYNC_SECRET_KEY,
    driftTickMs: e.DRIFT_TICK_MS,
    databaseTimeoutMs: e.DATABASE_TIMEOUT_MS,
    workerHealthPort: e.WORKER_HEALTH_PORT,
    workerStuckAfterMs: e.WORKER_STUCK_AFTER_MS,
    outboxRetentionDays: e.OUTBOX_RETENTION_DAYS,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    jobMaxStalledCount: e.JOB_MAX_STALLED_COUNT,
    sweeperIntervalMs: e.SWEEPER_INTERVAL_MS,
    sweeperGraceMs: e.SWEEPER_GRACE_MS,
    metricsToken: e.METRICS_TOKEN,
    metricsOpen: e.METRICS_OPEN === 'true',
    webhookAllowPrivateNetworks: e.WEBHOOK_ALLOW_PRIVATE_NETWORKS === 'true',
  };
}

function displayHost(host: string): string {
  return host === '0.0.0.0' || host === '::' || host === '127.0.0.1' ? 'localhost' : host;
}
