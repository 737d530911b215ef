import { createHash, randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Redis } from 'ioredis';
import { notify } from '../alerts/notify.js';
import { recordAudit } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Database, DatabaseHandle } from '../db/client.js';
import { DomainError } from '../errors.js';
import type { Logger } from '../log.js';
import { SecretBox } from '../security/secret-box.js';
import { BuiltinConnector } from './builtin.js';
import type { PlatformConnector } from './connector.js';
import { RateBudget, type RequestPriority } from './heroku/budget.js';
import { HerokuClient } from './heroku/client.js';
import { HerokuConnector } from './heroku/connector.js';
import { type HerokuSettings, herokuSettingsSchema } from './heroku/settings.js';
import { PlatformMirror } from './mirror.js';
import { loadPlatform, rememberEnterpriseAccountId } from './settings.js';

/**
 * The tenant's connector. `db` is the connection its reads and writes go over: a job passes its reserved
 * session, so that everything the job does uses the one connection that holds its lock.
 */
export type ConnectorFor = (
  tenantId: string,
  priority?: RequestPriority,
  db?: Database,
) => Promise<PlatformConnector>;

export interface ConnectorFactoryOptions {
  database: DatabaseHandle;
  /** Shared rate budgets of remote platforms. */
  redis: Redis;
  config: Pick<Config, 'secretKey' | 'dataDir' | 'databaseUrl'>;
  log: Logger;
  /** How long a request waits out 429s before giving up (the client's default: 2 minutes); tests shorten it. */
  rateLimitPatienceMs?: number;
}

/** The connector for each tenant's platform, as `idsync platform set` configured it. */
export function connectorFactory(options: ConnectorFactoryOptions): ConnectorFor {
  const { database } = options;
  let box: SecretBox | undefined;
  return async (tenantId, priority = 'reconcile', db = database.db) => {
    const tenant = await loadPlatform(db, tenantId);
    if (!tenant || tenant.connector === 'builtin') return new BuiltinConnector(db, tenantId);
    if (tenant.connector_status === 'stopped') {
      throw new DomainError(
        'conflict',
        `the ${tenant.connector} connection is stopped (${tenant.connector_status_reason}); fix it with \`idsync platform set\`, then \`idsync jobs retry\``,
      );
    }
    const settings = herokuSettingsSchema.parse(tenant.connector_settings);
    const token = resolveToken(settings, () => {
      box ??= SecretBox.fromConfig(options.config);
      return box;
    });
    const budget = new RateBudget(options.redis, budgetKey(settings, token), settings);
    const client = new HerokuClient({
      apiUrl: settings.apiUrl,
      token,
      budget,
      priority,
      log: options.log,
      onBudgetExhausted: () => budgetExhausted(options, tenantId, priority),
      ...(options.rateLimitPatienceMs !== undefined
        ? { rateLimitPatienceMs: options.rateLimitPatienceMs }
        : {}),
    });
    return new HerokuConnector(client, new PlatformMirror(db, tenantId, true), settings, {
      stopTenant: (reason) => stopTenant(options, tenantId, reason),
      rememberEnterpriseAccountId: (id) => rememberEnterpriseAccountId(db, tenantId, id),
    });
  };
}

export function resolveToken(settings: HerokuSettings, box: () => SecretBox): string {
  if ('env' in settings.token) {
    const token = process.env[settings.token.env];
    if (!token) {
      throw new DomainError(
        'invalid',
        `the Heroku token variable ${settings.token.env} is not set in this process`,
      );
    }
    return token;
  }
  return box().open(settings.token.sealed);
}

/** The Heroku account when known, otherwise a fingerprint of the token (never the token itself). */
export function budgetKey(settings: HerokuSettings, token: string): string {
  return `heroku:${settings.budgetKey ?? createHash('sha256').update(token).digest('hex').slice(0, 16)}`;
}

/** One alert per tenant and ten minutes however many requests gave up: the budget is shared. */
async function budgetExhausted(
  options: ConnectorFactoryOptions,
  tenantId: string,
  priority: RequestPriority,
): Promise<void> {
  const window = Math.floor(Date.now() / 600_000);
  await notify(options.database.db, {
    tenantId,
    type: 'platform.budget_exhausted',
    key: `platform.budget_exhausted:${window}`,
    summary: `Heroku kept answering 429 longer than a ${priority} request may wait: the rate budget is exhausted; work is retried with back-off`,
    data: { platform: 'heroku', priority },
  });
}

async function stopTenant(options: ConnectorFactoryOptions, tenantId: string, reason: string): Promise<void> {
  const why = `Heroku refused idsync's credentials: ${reason}`;
  await options.database.db.transaction(async (tx) => {
    const stopped = await tx.execute(sql`
      UPDATE tenants SET connector_status = 'stopped', connector_status_reason = ${why}, updated_at = now()
      WHERE id = ${tenantId} AND connector_status <> 'stopped' RETURNING id`);
    if (stopped.length === 0) return;
    await recordAudit(tx, {
      tenantId,
      actor: 'connector:heroku',
      action: 'platform.stopped',
      subjectType: 'tenant',
      subjectId: tenantId,
      after: { reason: why },
    });
    await notify(tx, {
      tenantId,
      type: 'platform.credential_refused',
      // One alert per stop: the UPDATE above succeeds once until an operator fixes the credential.
      key: `platform.credential_refused:${randomUUID()}`,
      summary: `${why}; idsync stopped calling Heroku for this tenant until \`idsync platform set\``,
      data: { platform: 'heroku', reason: why },
    });
  });
  // The alert: operators page on this line (level fatal, event platform.stopped).
  options.log.fatal(
    { tenantId, event: 'platform.stopped' },
    `ALERT: ${why}; idsync stopped calling Heroku for this tenant`,
  );
}
