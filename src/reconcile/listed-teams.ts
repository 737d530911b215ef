import { type SQL, sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { recordForReconcileEach } from '../jobs/outbox.js';
import { lockRuleMatchingForChange } from './matching-lock.js';

export interface ListedTeams {
  /** Teams listed now that were not listed before: every "every team" rule's users were queued. */
  appeared: string[];
  /** Teams the platform no longer lists (only for a complete listing). */
  gone: string[];
}

/**
 * Records that the platform lists these teams (by idsync's name for them), and is the one place where a
 * team the platform gained reaches the "every team" rules: when a team is listed for the first time, or
 * again after it was gone, every user such a rule matches is queued for a reconcile, durably through the
 * outbox. Called by a drift scan with the complete list (`complete`: a team no longer listed stops being
 * covered), and by any reader that learns of one team at a time (the audit trail) with `complete: false`.
 */
export async function recordListedTeams(
  db: Pick<Database, 'transaction'>,
  tenantId: string,
  names: readonly string[],
  options: { complete: boolean; cause?: Record<string, unknown> },
): Promise<ListedTeams> {
  return db.transaction(async (tx) => {
    // Before the listing is read: a user joining an "every team" rule's group meanwhile is either
    // queued below or planned against the teams this transaction lists.
    await lockRuleMatchingForChange(tx, tenantId);
    const listed = sql.param([...new Set(names)]);
    const appeared = await tx.execute<{ name: string }>(sql`
      WITH wanted AS (SELECT unnest(${listed}::text[]) AS name),
      inserted AS (
        INSERT INTO teams (tenant_id, name, listed_at) SELECT ${tenantId}, name, now() FROM wanted
        ON CONFLICT (tenant_id, name) DO NOTHING RETURNING name
      ),
      relisted AS (
        UPDATE teams SET listed_at = now()
        WHERE tenant_id = ${tenantId} AND listed_at IS NULL AND name IN (SELECT name FROM wanted) RETURNING name
      )
      SELECT name FROM inserted UNION SELECT name FROM relisted ORDER BY name`);
    const gone = options.complete
      ? await tx.execute<{ name: string }>(sql`
          UPDATE teams SET listed_at = NULL
          WHERE tenant_id = ${tenantId} AND listed_at IS NOT NULL AND NOT (name = ANY(${listed}::text[]))
          RETURNING name`)
      : [];
    if (appeared.length > 0) {
      await recordForReconcileEach(
        tx,
        {
          lane: 'reconcile',
          subjectType: 'user',
          cause: {
            event: 'teams.appeared',
            teams: appeared.slice(0, 20).map((r) => r.name),
            source: 'platform',
            at: new Date().toISOString(),
            ...options.cause,
          },
        },
        usersOfEveryTeamRules(tenantId),
      );
    }
    return { appeared: appeared.map((r) => r.name), gone: gone.map((r) => r.name) };
  });
}

/** (tenant id, user id) of every user an "every team" rule matches, by IdP group or by app role. */
export function usersOfEveryTeamRules(tenantId: string): SQL {
  return sql`
    SELECT gm.tenant_id, gm.user_id FROM assignment_rules r
    JOIN groups g ON g.tenant_id = r.tenant_id AND lower(g.display_name) = lower(r.idp_group)
    JOIN group_members gm ON gm.group_id = g.id
    WHERE r.tenant_id = ${tenantId} AND r.target = 'all-teams'
    UNION
    SELECT u.tenant_id, u.id FROM assignment_rules r
    JOIN users u ON u.tenant_id = r.tenant_id AND u.app_roles @> jsonb_build_array(lower(r.idp_app_role))
    WHERE r.tenant_id = ${tenantId} AND r.target = 'all-teams' AND r.idp_app_role IS NOT NULL`;
}
