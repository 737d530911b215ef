import type { Sql } from '../db/client.js';

/** The advisory lock a user's reconcile holds; the quiet check below takes the same one. */
export const userLockKey = (userId: string) => `user:${userId}`;

/**
 * A user whom no rule can give access to and who holds nothing on the platform — most events of an
 * IdP's initial push: everyone in "Everyone", no rule touching them — needs no plan. This decides that
 * in ONE statement under the user's lock (a transaction-level lock on the key the full reconcile locks
 * as a session, so it waits for a reconcile in progress and sees what it left), and if so completes the
 * outbox rows announcing the user in the same statement: the rows and the state are read from one
 * snapshot, so every change they announce was seen. Returns false whenever the full plan must run:
 *  - a rule could match one of the user's groups or app roles, or the user has a direct assignment (a
 *    CSV import), while the user is active;
 *  - the account has an edge on the platform (Enterprise Account, team or app) — found by
 *    account_key(), as the sweeper and the full plan find it — or a live token;
 *  - an unfinished receipt (a cascade a killed worker left) — never skipped;
 *  - any group or app role name involved is not plain ASCII: the planner compares those with
 *    JavaScript's toLowerCase, which SQL's lower() matches exactly only on ASCII (lower under "C" folds
 *    A–Z and nothing else), so anything else takes the full path rather than risk a different answer.
 */
export async function completeIfUntouched(sql: Sql, tenantId: string, userId: string): Promise<boolean> {
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtextextended(${userLockKey(userId)}, 0))`;
    const [row] = await tx<{ quiet: boolean | null }[]>`
      WITH u AS (
        SELECT u.id, u.active AND u.deprovisioned_at IS NULL AS live,
          u.user_name_key AS account_key,
          ARRAY(SELECT lower(g.display_name COLLATE "C") FROM group_members gm JOIN groups g ON g.id = gm.group_id
                WHERE gm.user_id = u.id) AS groups,
          ARRAY(SELECT lower(r COLLATE "C") FROM jsonb_array_elements_text(
                  CASE WHEN jsonb_typeof(u.app_roles) = 'array' THEN u.app_roles ELSE '[]' END) r) AS roles
        FROM users u WHERE u.tenant_id = ${tenantId} AND u.id = ${userId}
      ), verdict AS (
        SELECT NOT EXISTS (SELECT 1 FROM unnest(u.groups || u.roles) n WHERE n !~ '^[ -~]*$')
          AND (NOT u.live OR (NOT EXISTS (
            SELECT 1 FROM assignment_rules r WHERE r.tenant_id = ${tenantId} AND (
              r.idp_group !~ '^[ -~]*$' OR r.idp_app_role !~ '^[ -~]*$'
              OR lower(r.idp_group COLLATE "C") = ANY(u.groups) OR lower(r.idp_app_role COLLATE "C") = ANY(u.roles)))
            AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.user_id = u.id)))
          AND NOT EXISTS (SELECT 1 FROM platform_enterprise_members m WHERE m.tenant_id = ${tenantId} AND account_key(m.account) = u.account_key)
          AND NOT EXISTS (SELECT 1 FROM platform_team_members m WHERE m.tenant_id = ${tenantId} AND account_key(m.account) = u.account_key)
          AND NOT EXISTS (SELECT 1 FROM platform_app_collaborators c WHERE c.tenant_id = ${tenantId} AND account_key(c.account) = u.account_key)
          AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL)
          AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.user_id = u.id AND r.completed_at IS NULL) AS quiet
        FROM u
      ), completed AS (
        UPDATE outbox SET completed_at = now(), relayed_at = COALESCE(relayed_at, now())
        WHERE tenant_id = ${tenantId} AND subject_type = 'user' AND subject_id = ${userId}
          AND completed_at IS NULL AND (SELECT quiet FROM verdict)
        RETURNING 1
      )
      SELECT (SELECT quiet FROM verdict) AS quiet, (SELECT count(*) FROM completed) AS completed`;
    return row?.quiet === true;
  });
}
