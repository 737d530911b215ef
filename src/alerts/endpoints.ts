import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { isUuid } from '../db/uuid.js';
import { conflict, invalid, isUniqueViolation, notFound } from '../errors.js';
import type { SecretBox } from '../security/secret-box.js';
import { refusedLiteralHost } from './egress.js';
import { ALERT_EVENTS, alertEventSchema } from './events.js';
import { shownUrl, urlDigest } from './shown-url.js';

export const WEBHOOK_FORMATS = ['standard', 'slack'] as const;
export type WebhookFormat = (typeof WEBHOOK_FORMATS)[number];

/**
 * A webhook endpoint as an admin gives it (API body, CLI flags). Only http(s) URLs: idsync POSTs from
 * inside the operator's network, so a `file:` or `gopher:` URL, or credentials in the URL, are refused.
 * Which addresses may be reached is checked by `addWebhook` (a literal private address) and again at
 * each connection (`egress.ts`, README "Webhooks").
 */
export const webhookInputSchema = z.object({
  url: z
    .url({ protocol: /^https?$/, error: 'url must be an http:// or https:// URL' })
    .max(2048)
    .refine((u) => {
      // Not a URL at all: the check above says so (zod runs this too); throwing here was a 500 whose log
      // showed the secret URL.
      if (!URL.canParse(u)) return true;
      const parsed = new URL(u);
      return parsed.username === '' && parsed.password === '';
    }, 'url must not carry credentials (user:password@); put a secret path segment or rely on the signature'),
  events: z
    .array(z.enum(ALERT_EVENTS, { error: `events must be among ${ALERT_EVENTS.join(', ')}` }), {
      error: `events must be a list among ${ALERT_EVENTS.join(', ')}`,
    })
    .min(1, 'events: give at least one event')
    .transform((events) => [...new Set(events)]),
  format: z
    .enum(WEBHOOK_FORMATS, { error: `format must be one of ${WEBHOOK_FORMATS.join(', ')}` })
    .default('standard'),
});
export type WebhookInput = z.infer<typeof webhookInputSchema>;

export const webhookEndpointSchema = z.object({
  id: z.uuid(),
  /** Scheme and host plus a short hash of the path (`https://hooks.slack.com/…#3f2a1c`): the full URL is shown once, at creation. */
  url: z.string(),
  events: z.array(alertEventSchema),
  format: z.enum(WEBHOOK_FORMATS),
  createdBy: z.string(),
  createdAt: z.string(),
  disabledAt: z.string().nullable(),
  disabledReason: z.string().nullable(),
});
export type WebhookEndpoint = z.infer<typeof webhookEndpointSchema>;

export const createdWebhookSchema = webhookEndpointSchema.extend({
  /** The full URL, shown only in this response. */
  url: z.string(),
  /** The Standard Webhooks signing secret: shown once, stored sealed, never logged. */
  secret: z.string().startsWith('whsec_'),
});

export const webhookDeliverySchema = z.object({
  id: z.number().int(),
  endpointId: z.uuid(),
  url: z.string(),
  messageId: z.string(),
  event: z.string(),
  status: z.enum(['pending', 'delivered', 'failed', 'gone', 'cancelled']),
  attempts: z.number().int(),
  lastResponseStatus: z.number().int().nullable(),
  lastError: z.string().nullable(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
});
export type WebhookDelivery = z.infer<typeof webhookDeliverySchema>;

/** A Standard Webhooks secret: `whsec_` and 32 random bytes, base64. */
const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

type EndpointRow = {
  id: string;
  url: string;
  events: string[];
  format: WebhookFormat;
  created_by: string;
  created_at: string;
  disabled_at: string | null;
  disabled_reason: string | null;
};

const ENDPOINT_COLUMNS = sql`id::text, url_shown AS url, events, format, created_by,
  to_json(created_at)#>>'{}' AS created_at, to_json(disabled_at)#>>'{}' AS disabled_at, disabled_reason`;

const iso = (value: string) => new Date(value).toISOString();

const endpointView = (row: EndpointRow): WebhookEndpoint => ({
  id: row.id,
  url: row.url,
  events: row.events.filter((e) => alertEventSchema.safeParse(e).success) as WebhookEndpoint['events'],
  format: row.format,
  createdBy: row.created_by,
  createdAt: iso(row.created_at),
  disabledAt: row.disabled_at ? iso(row.disabled_at) : null,
  disabledReason: row.disabled_reason,
});

export async function addWebhook(
  db: Database,
  box: SecretBox,
  tenantId: string,
  input: WebhookInput,
  actor: string,
  policy: { allowPrivateNetworks: boolean },
): Promise<WebhookEndpoint & { secret: string }> {
  // A host name is judged at each delivery (it may resolve elsewhere later); a literal can be now.
  const refused = policy.allowPrivateNetworks ? undefined : refusedLiteralHost(input.url);
  if (refused) throw invalid(refused);
  const secret = newSecret();
  try {
    return await db.transaction(async (tx) => {
      const [row] = await tx.execute<EndpointRow>(sql`
        INSERT INTO webhook_endpoints
          (tenant_id, url_sealed, url_shown, url_digest, events, format, secret_sealed, created_by)
        VALUES (${tenantId}, ${box.seal(input.url)}, ${shownUrl(input.url)}, ${urlDigest(input.url)},
          ${sql.param(input.events)}::text[], ${input.format}, ${box.seal(secret)}, ${actor})
        RETURNING ${ENDPOINT_COLUMNS}`);
      const endpoint = endpointView(row!);
      await recordAudit(tx, {
        tenantId,
        actor,
        action: 'webhook.added',
        subjectType: 'tenant',
        subjectId: tenantId,
        after: { id: endpoint.id, url: endpoint.url, events: endpoint.events, format: endpoint.format },
      });
      // The one place the full URL is shown: to whoever just gave it.
      return { ...endpoint, url: input.url, secret };
    });
  } catch (error) {
    if (isUniqueViolation(error))
      throw conflict(`a webhook for ${shownUrl(input.url)} exists already in this tenant`);
    throw error;
  }
}

/** The tenant's endpoints, live first; disabled ones stay listed so an operator sees why (410 Gone). */
export async function listWebhooks(db: Database, tenantId: string): Promise<WebhookEndpoint[]> {
  const rows = await db.execute<EndpointRow>(sql`
    SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ${tenantId}
    ORDER BY disabled_at IS NOT NULL, created_at`);
  return rows.map(endpointView);
}

/** Disables an endpoint (kept for its deliveries' history); deliveries not yet made are cancelled. */
export async function removeWebhook(
  db: Database,
  tenantId: string,
  id: string,
  actor: string,
): Promise<void> {
  if (!isUuid(id)) throw notFound(`no webhook ${id}`);
  await db.transaction(async (tx) => {
    const [row] = await tx.execute<{ url: string }>(sql`
      UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = ${`removed by ${actor}`}
      WHERE tenant_id = ${tenantId} AND id = ${id} AND disabled_at IS NULL RETURNING url_shown AS url`);
    if (!row) throw notFound(`no webhook ${id}`);
    await tx.execute(sql`
      UPDATE webhook_deliveries SET status = 'cancelled', finished_at = now()
      WHERE endpoint_id = ${id} AND status = 'pending'`);
    await recordAudit(tx, {
      tenantId,
      actor,
      action: 'webhook.removed',
      subjectType: 'tenant',
      subjectId: tenantId,
      after: { id, url: row.url },
    });
  });
}

/** Recent deliveries of a tenant, newest first, with the last attempt's outcome. */
export async function recentDeliveries(
  db: Database,
  tenantId: string,
  limit = 50,
): Promise<WebhookDelivery[]> {
  const rows = await db.execute<{
    id: string;
    endpoint_id: string;
    url: string;
    message_id: string;
    event_type: string;
    status: WebhookDelivery['status'];
    attempts: number;
    response_status: number | null;
    error: string | null;
    created_at: string;
    finished_at: string | null;
  }>(sql`
    SELECT d.id::text, d.endpoint_id::text, e.url_shown AS url, d.message_id, d.event_type, d.status, d.attempts,
      a.response_status, a.error, to_json(d.created_at)#>>'{}' AS created_at,
      to_json(d.finished_at)#>>'{}' AS finished_at
    FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
    LEFT JOIN LATERAL (
      SELECT response_status, error FROM webhook_delivery_attempts
      WHERE delivery_id = d.id ORDER BY attempt DESC LIMIT 1) a ON true
    WHERE d.tenant_id = ${tenantId}
    ORDER BY d.id DESC LIMIT ${Math.min(Math.max(limit, 1), 500)}`);
  return rows.map((r) => ({
    id: Number(r.id),
    endpointId: r.endpoint_id,
    url: r.url,
    messageId: r.message_id,
    event: r.event_type,
    status: r.status,
    attempts: r.attempts,
    lastResponseStatus: r.response_status,
    lastError: r.error,
    createdAt: iso(r.created_at),
    finishedAt: r.finished_at ? iso(r.finished_at) : null,
  }));
}
