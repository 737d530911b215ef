import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../db/client.js';
import { invalid } from '../errors.js';
import type { AccountActivity } from './connector.js';

/**
 * Records what platform accounts did, in one statement per batch. Keyed by `account_key()`, the normal
 * form `users.user_name_key` holds, and only ever moved forward: a late or repeated read (an overlapping
 * audit-trail poll, an older release) never makes an account look less recently active.
 */
export async function recordActivity(
  db: Pick<Database, 'execute'>,
  tenantId: string,
  activity: readonly AccountActivity[],
): Promise<void> {
  if (activity.length === 0) return;
  const rows = JSON.stringify(
    activity.map((a) => ({ account: a.account, kind: a.kind, app: a.app, at: a.at.toISOString() })),
  );
  await db.execute(sql`
    INSERT INTO platform_activity (tenant_id, account_key, kind, app, at)
    SELECT DISTINCT ON (account_key(r.account)) ${tenantId}::uuid, account_key(r.account), r.kind, r.app, r.at
    FROM jsonb_to_recordset(${rows}::jsonb) AS r(account text, kind text, app text, at timestamptz)
    WHERE account_key(r.account) IS NOT NULL
    ORDER BY account_key(r.account), r.at DESC
    ON CONFLICT (tenant_id, account_key) DO UPDATE SET kind = EXCLUDED.kind, app = EXCLUDED.app, at = EXCLUDED.at
    WHERE EXCLUDED.at > platform_activity.at`);
}

/** Most activity records one request may carry. */
export const ACTIVITY_BATCH_MAX = 1_000;

export const activityInputSchema = z.object({
  activity: z
    .array(
      z.strictObject({
        account: z.string().trim().min(1, 'account must not be empty').max(256),
        kind: z
          .string()
          .regex(
            /^[a-z][a-z0-9_.-]{0,63}$/,
            'kind must be a short lower-case word such as deploy or release',
          ),
        app: z.string().trim().min(1).max(256).nullable().optional(),
        at: z.iso.datetime({ offset: true, error: 'at must be an ISO 8601 date-time' }).optional(),
      }),
    )
    .min(1, 'activity must list at least one record')
    .max(ACTIVITY_BATCH_MAX, `activity takes at most ${ACTIVITY_BATCH_MAX} records per request`),
});

/**
 * The body of `POST /api/tenants/:t/activity`: what a platform service reports its users did (the
 * built-in platform has no audit trail of its own). A time in the future is refused: it would make a
 * seat look active for ever under GREATEST.
 */
export function readActivityInput(body: unknown, now = new Date()): AccountActivity[] {
  const result = activityInputSchema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.join('.');
    throw invalid(where ? `${where}: ${issue.message}` : issue.message);
  }
  return result.data.activity.map((a, i) => {
    const at = a.at ? new Date(a.at) : now;
    if (at.getTime() > now.getTime() + 5 * 60_000) throw invalid(`activity.${i}.at: is in the future`);
    return { account: a.account, kind: a.kind, app: a.app ?? null, at };
  });
}
