import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { AlertEvent } from './events.js';

/** The channel the dispatcher listens on; the NOTIFY is sent when the caller's transaction commits. */
export const WEBHOOK_CHANNEL = 'idsync_webhook';

export interface Alert {
  tenantId: string;
  type: AlertEvent;
  /**
   * Names the fact, not the call: announcing the same fact again (a retried job, a second request
   * joining a held change) adds nothing for an endpoint that already has it.
   */
  key: string;
  /** One line for a person (the Slack text); no secrets. */
  summary: string;
  data: Record<string, unknown>;
}

/**
 * The one way to raise an alert: one delivery row per live endpoint of the tenant that wants the event,
 * written with whatever `executor` is — the transaction that records the fact, where there is one — so
 * an alert is never lost between the fact and Redis. The dispatcher then moves the rows into the
 * webhook lane. Returns how many endpoints will be told.
 */
export async function notify(executor: Pick<Database, 'execute'>, alert: Alert): Promise<number> {
  const messageId = `msg_${randomUUID()}`;
  const [row] = await executor.execute<{ queued: number }>(sql`
    WITH inserted AS (
      INSERT INTO webhook_deliveries (tenant_id, endpoint_id, message_id, event_key, event_type, payload)
      SELECT e.tenant_id, e.id, ${messageId}, ${alert.key}, ${alert.type},
        jsonb_build_object(
          'type', ${alert.type}::text,
          'timestamp', to_json(now())#>>'{}',
          'data', ${JSON.stringify(alert.data)}::jsonb
            || jsonb_build_object('tenant', t.name, 'summary', ${alert.summary}::text))
      FROM webhook_endpoints e JOIN tenants t ON t.id = e.tenant_id
      WHERE e.tenant_id = ${alert.tenantId} AND e.disabled_at IS NULL AND ${alert.type} = ANY(e.events)
      ON CONFLICT (endpoint_id, event_key) DO NOTHING
      RETURNING id
    ), counted AS (SELECT count(*)::int AS queued FROM inserted)
    SELECT queued, CASE WHEN queued > 0 THEN pg_notify(${WEBHOOK_CHANNEL}, '') END AS notified FROM counted`);
  return row?.queued ?? 0;
}
