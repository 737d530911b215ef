import { type Job, Worker } from 'bullmq';
import { sql } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { type Dispatcher, fetch } from 'undici';
import type { Database } from '../db/client.js';
import { createRedisConnection } from '../jobs/connection.js';
import { settlesWithin } from '../jobs/settles-within.js';
import type { Logger } from '../log.js';
import type { SecretBox } from '../security/secret-box.js';
import { WEBHOOK_ATTEMPTS, WEBHOOK_QUEUE, type WebhookJob } from './dispatcher.js';
import { guardedDispatcher, literalAddress, RefusedAddressError, refusedAddressRange } from './egress.js';
import type { WebhookFormat } from './endpoints.js';
import { UNSEALED_PREFIX } from './shown-url.js';

export interface WebhookWorkerOptions {
  db: Database;
  redisUrl: string;
  prefix: string;
  log: Logger;
  /** Opens the endpoints' sealed secrets; undefined when this process has no key (nothing can be signed). */
  secretBox: SecretBox | undefined;
  /** How long a receiver may take to answer one attempt. */
  timeoutMs?: number;
  concurrency?: number;
  /** idsync's public URL: the Slack text links to the tenant's console there. */
  publicUrl: string;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: receivers on loopback/private/link-local addresses may be reached. */
  allowPrivateNetworks: boolean;
}

interface Payload {
  type: string;
  timestamp: string;
  data: { tenant?: string; summary?: string } & Record<string, unknown>;
}

/**
 * What is POSTed: the Standard Webhooks payload, or Slack's incoming-webhook `{"text": …}`. The standard
 * payload goes, signed, to the tenant's own receiver and carries what it needs to act (user ids and
 * platform accounts, which are e-mail addresses). A Slack channel is often read more widely than the
 * console, so the Slack text is the summary (counts, never an e-mail address) and a link to the
 * tenant's console, where a signed-in admin sees who.
 */
export function webhookBody(format: WebhookFormat, payload: Payload, publicUrl: string): string {
  if (format === 'slack') {
    const tenant = String(payload.data.tenant ?? '');
    const console = `${publicUrl}/console/${encodeURIComponent(tenant)}`;
    return JSON.stringify({
      text: `:rotating_light: idsync ${payload.type} (${tenant}): ${payload.data.summary} <${console}|Open the idsync console>`,
    });
  }
  return JSON.stringify(payload);
}

type Outcome =
  | { kind: 'delivered'; status: number }
  | { kind: 'gone'; status: 410 }
  | { kind: 'failed'; status: number | null; error: string };

/** A stored webhook URL: sealed, or (made before migration 0022, not yet sealed) `plain:<url>`. */
const openUrl = (box: SecretBox, stored: string) =>
  stored.startsWith(UNSEALED_PREFIX) ? stored.slice(UNSEALED_PREFIX.length) : box.open(stored);

/** Seals the URLs migration 0022 could not (SQL has no key); a handful at most, once. */
export async function sealLegacyUrls(db: Database, box: SecretBox, log: Logger): Promise<void> {
  const rows = await db.execute<{ id: string; url_sealed: string }>(sql`
    SELECT id::text, url_sealed FROM webhook_endpoints WHERE url_sealed LIKE ${`${UNSEALED_PREFIX}%`}`);
  for (const row of rows) {
    await db.execute(sql`UPDATE webhook_endpoints SET url_sealed = ${box.seal(openUrl(box, row.url_sealed))}
      WHERE id = ${row.id} AND url_sealed = ${row.url_sealed}`);
  }
  if (rows.length > 0)
    log.info({ endpoints: rows.length }, 'sealed webhook URLs stored before migration 0022');
}

/** An attempt idsync could not make for a reason of its own set-up; its message is safe to show a tenant. */
export class AttemptNotMadeError extends Error {
  override name = 'AttemptNotMadeError';
}

/**
 * Marks a delivery whose job failed every attempt before any attempt was recorded: `failed`, with the
 * reason as its last attempt's error. Only a pending row changes, so an attempt that did record its
 * outcome keeps it. Other errors (a database failure…) are shown generically; the log has them.
 */
export async function failUnattempted(db: Database, deliveryId: number, error: Error): Promise<void> {
  const reason =
    error instanceof AttemptNotMadeError || error.name === 'AttemptNotMadeError'
      ? `not sent: ${error.message}`
      : 'not sent: idsync could not make the attempt (see the operator log)';
  await db.execute(sql`
    WITH failed AS (
      UPDATE webhook_deliveries SET status = 'failed', finished_at = now(), attempts = attempts + 1
      WHERE id = ${deliveryId} AND status = 'pending' RETURNING id, attempts)
    INSERT INTO webhook_delivery_attempts (delivery_id, attempt, response_status, error, duration_ms)
    SELECT id, attempts, NULL, ${reason}, 0 FROM failed
    ON CONFLICT DO NOTHING`);
}

/**
 * What a tenant may learn of a failed connection: whether it timed out, was refused by idsync's address
 * policy, or failed somewhere in the network. Never the cause code (ECONNREFUSED vs ENOTFOUND vs a
 * reset): told apart, those turn the deliveries list into a port scanner of idsync's network.
 */
export function coarseNetworkError(error: unknown, timeoutMs: number): string {
  const cause = (error as { cause?: unknown }).cause;
  if (error instanceof RefusedAddressError || cause instanceof RefusedAddressError) {
    return 'refused: private address (WEBHOOK_ALLOW_PRIVATE_NETWORKS is off)';
  }
  if ((error as Error).name === 'TimeoutError') return `timeout: no answer within ${timeoutMs} ms`;
  return 'network error: the receiver could not be reached';
}

/**
 * Delivers one webhook attempt: signs the body with the endpoint's secret (Standard Webhooks:
 * webhook-id, webhook-timestamp, webhook-signature), POSTs it without following redirects (a redirect
 * could point anywhere inside the network), and records the attempt. A 2xx is delivered; 410 Gone
 * disables the endpoint (the receiver said it is not coming back); anything else, or no answer within
 * the timeout, is retried by BullMQ with exponential back-off until WEBHOOK_ATTEMPTS, then failed.
 */
export async function startWebhookWorker(
  options: WebhookWorkerOptions,
): Promise<{ close(timeoutMs?: number): Promise<void> }> {
  const { db, log } = options;
  const connection = createRedisConnection(options.redisUrl, 'worker');
  const timeoutMs = options.timeoutMs ?? 10_000;
  // Undefined: undici's default dispatcher, for an operator who allows private receivers.
  const dispatcher: Dispatcher | undefined = options.allowPrivateNetworks ? undefined : guardedDispatcher();

  const attemptOnce = async (job: Job<WebhookJob>): Promise<void> => {
    const { deliveryId } = job.data;
    const [row] = await db.execute<{
      status: string;
      attempts: number;
      message_id: string;
      payload: Payload;
      endpoint_id: string;
      url_sealed: string;
      format: WebhookFormat;
      secret_sealed: string;
      disabled: boolean;
    }>(sql`
      SELECT d.status, d.attempts, d.message_id, d.payload, e.id::text AS endpoint_id, e.url_sealed, e.format, e.secret_sealed,
        e.disabled_at IS NOT NULL AS disabled
      FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = ${deliveryId}`);
    if (row?.status !== 'pending') return;
    if (row.disabled) {
      await db.execute(sql`
        UPDATE webhook_deliveries SET status = 'cancelled', finished_at = now() WHERE id = ${deliveryId}`);
      return;
    }
    if (!options.secretBox) {
      throw new AttemptNotMadeError(
        'this worker has no IDSYNC_SECRET_KEY to open the webhook secret; set it in every process',
      );
    }
    // Counted on the row, not the job: a re-queued job starts again at 0 and must not overwrite attempts.
    const attempt = row.attempts + 1;
    const url = openUrl(options.secretBox, row.url_sealed);
    const body = webhookBody(row.format, row.payload, options.publicUrl);
    const sentAt = new Date();
    const signature = new Webhook(options.secretBox.open(row.secret_sealed)).sign(
      row.message_id,
      sentAt,
      body,
    );
    const started = performance.now();
    let outcome: Outcome;
    try {
      // An IP literal is not looked up by the socket, so the guarded dispatcher never sees it: check here.
      const literal = literalAddress(url);
      const literalRange = literal === undefined ? undefined : refusedAddressRange(literal);
      if (!options.allowPrivateNetworks && literalRange !== undefined)
        throw new RefusedAddressError(literalRange);
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': 'idsync-webhooks',
          'webhook-id': row.message_id,
          'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
        ...(dispatcher ? { dispatcher } : {}),
      });
      await response.body?.cancel();
      outcome =
        response.status >= 200 && response.status < 300
          ? { kind: 'delivered', status: response.status }
          : response.status === 410
            ? { kind: 'gone', status: 410 }
            : { kind: 'failed', status: response.status, error: `the receiver answered ${response.status}` };
    } catch (error) {
      outcome = { kind: 'failed', status: null, error: coarseNetworkError(error, timeoutMs) };
      // The precise cause is for the operator's log only: shown to tenants it maps their network.
      log.debug(
        { deliveryId, code: (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name },
        'webhook attempt: network failure',
      );
    }
    const durationMs = Math.round(performance.now() - started);
    const final =
      outcome.kind !== 'failed' || job.attemptsMade + 1 >= (job.opts.attempts ?? WEBHOOK_ATTEMPTS);
    const status =
      outcome.kind === 'delivered'
        ? 'delivered'
        : outcome.kind === 'gone'
          ? 'gone'
          : final
            ? 'failed'
            : 'pending';
    await db.transaction(async (tx) => {
      await tx.execute(sql`
        INSERT INTO webhook_delivery_attempts (delivery_id, attempt, response_status, error, duration_ms)
        VALUES (${deliveryId}, ${attempt}, ${outcome.status}, ${outcome.kind === 'failed' ? outcome.error : null},
          ${durationMs})
        ON CONFLICT DO NOTHING`);
      await tx.execute(sql`
        UPDATE webhook_deliveries SET attempts = ${attempt}, status = ${status},
          finished_at = CASE WHEN ${status} = 'pending' THEN NULL ELSE now() END
        WHERE id = ${deliveryId}`);
      if (outcome.kind === 'gone') {
        await tx.execute(sql`
          UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = 'the receiver answered 410 Gone'
          WHERE id = ${row.endpoint_id} AND disabled_at IS NULL`);
      }
    });
    const logged = { deliveryId, endpointId: row.endpoint_id, attempt, status: outcome.status };
    if (outcome.kind === 'gone') log.warn(logged, 'webhook endpoint answered 410 Gone: disabled');
    if (outcome.kind === 'failed') {
      log.warn(
        { ...logged, err: { message: outcome.error } },
        final ? 'webhook delivery failed for good' : 'webhook delivery failed; retrying',
      );
      // BullMQ retries a job that throws, with the job's exponential back-off.
      if (!final) throw new Error(outcome.error);
    }
  };

  const worker = new Worker<WebhookJob>(WEBHOOK_QUEUE, attemptOnce, {
    connection,
    prefix: options.prefix,
    concurrency: options.concurrency ?? 4,
  });
  worker.on('error', (error) => log.warn({ err: error }, 'webhook worker error'));
  // An error before an attempt is recorded (no key, a wrong key, the database) fails the job without
  // touching its row; after the last attempt the row must not stay pending for ever.
  worker.on('failed', (job, error) => {
    if (!job || job.attemptsMade < (job.opts.attempts ?? WEBHOOK_ATTEMPTS)) return;
    failUnattempted(db, job.data.deliveryId, error).catch((writeError: unknown) =>
      log.warn(
        { err: writeError, deliveryId: job.data.deliveryId },
        'could not mark a webhook delivery failed; the dispatcher queues it again later',
      ),
    );
  });
  await worker.waitUntilReady();
  if (options.secretBox) await sealLegacyUrls(db, options.secretBox, log);
  return {
    // Bounded like the job workers: a delivery is retried by the next worker, so it may be cut short.
    close: async (timeoutMs = Number.POSITIVE_INFINITY) => {
      if (!(await settlesWithin(worker.close(), timeoutMs))) await settlesWithin(worker.close(true), 2_000);
      await settlesWithin(dispatcher?.close() ?? Promise.resolve(), 2_000);
      connection.disconnect();
    },
  };
}
