import type { PendingQuery, Row, TransactionSql } from 'postgres';
import type { Sql } from '../db/client.js';

/** The advisory lock a user's reconcile holds; the quiet check below takes the same one. */
export const userLockKey = (userId: string) => `user:${userId}`;

/** An outbox row announcing a user, as the relay claimed it. */
export interface UserAnnouncement {
  outboxId: string;
  tenantId: string;
  userId: string;
}

type Fragment = PendingQuery<Row[]>;

/**
 * A user whom no rule can give access to and who holds nothing on the platform — most events of an
 * IdP's initial push: everyone in "Everyone", no rule touching them — needs no plan. One statement
 * decides that for a whole batch of announcements and completes the outbox rows of the quiet users: the
 * rows and the state are read from one snapshot, so every change they announce was seen (a
 * data-modifying WITH runs to completion whether or not the outer query reads it). A user counts
 * as quiet only under its reconcile lock, taken here without waiting (`pg_try_advisory_xact_lock`, the
 * key the full reconcile locks as a session): a user whose reconcile is running is left to its job.
 * A user is not quiet, and takes the full plan, whenever:
 *  - a rule could match one of the user's groups or app roles, or the user has a direct assignment (a
 *    CSV import), while the user is active;
 *  - the account has an edge on the platform (Enterprise Account, team or app) — found by
 *    account_key(), as the sweeper and the full plan find it — or a live token;
 *  - an unfinished receipt (a cascade a killed worker left) — never skipped;
 *  - any group or app role name involved is not plain ASCII: the planner compares those with
 *    JavaScript's toLowerCase, which SQL's lower() matches exactly only on ASCII (lower under "C" folds
 *    A–Z and nothing else), so anything else takes the full path rather than risk a different answer.
 * Returns the users found quiet.
 */
async function settleQuiet(
  tx: TransactionSql,
  /** (tenant_id, user_id): the users to judge. */
  candidates: Fragment,
  /** (outbox_id, user_id): the announcements to complete for those found quiet. */
  claimed: Fragment,
): Promise<Set<string>> {
  // Index probes, whatever the statistics say: right after a push they describe empty platform tables,
  // and a plan made for those scanned every platform row, keying each, for every user of a batch
  // (measured: 1.3 s for a batch of 500 in bench/backlog.ts, against 13 ms on fresh statistics).
  await tx`SET LOCAL enable_seqscan = off`;
  const rows = await tx<{ id: string }[]>`
    WITH claimed AS (${claimed}), locked AS MATERIALIZED (
      SELECT d.tenant_id, d.user_id FROM (${candidates}) d
      WHERE pg_try_advisory_xact_lock(hashtextextended('user:' || d.user_id::text, 0))
    ), u AS (
      SELECT u.id, u.tenant_id, u.active AND u.deprovisioned_at IS NULL AS live,
        u.user_name_key AS account_key,
        ARRAY(SELECT lower(g.display_name COLLATE "C") FROM group_members gm JOIN groups g ON g.id = gm.group_id
              WHERE gm.user_id = u.id) AS groups,
        ARRAY(SELECT lower(r COLLATE "C") FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(u.app_roles) = 'array' THEN u.app_roles ELSE '[]' END) r) AS roles
      FROM locked l JOIN users u ON u.id = l.user_id AND u.tenant_id = l.tenant_id
    ), quiet AS (
      SELECT u.id FROM u
      WHERE NOT EXISTS (SELECT 1 FROM unnest(u.groups || u.roles) n WHERE n !~ '^[ -~]*$')
        AND (NOT u.live OR (NOT EXISTS (
          SELECT 1 FROM assignment_rules r WHERE r.tenant_id = u.tenant_id AND (
            r.idp_group !~ '^[ -~]*$' OR r.idp_app_role !~ '^[ -~]*$'
            OR lower(r.idp_group COLLATE "C") = ANY(u.groups) OR lower(r.idp_app_role COLLATE "C") = ANY(u.roles)))
          AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.user_id = u.id)))
        AND NOT EXISTS (SELECT 1 FROM platform_enterprise_members m WHERE m.tenant_id = u.tenant_id AND account_key(m.account) = u.account_key)
        AND NOT EXISTS (SELECT 1 FROM platform_team_members m WHERE m.tenant_id = u.tenant_id AND account_key(m.account) = u.account_key)
        AND NOT EXISTS (SELECT 1 FROM platform_app_collaborators c WHERE c.tenant_id = u.tenant_id AND account_key(c.account) = u.account_key)
        AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL)
        AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.user_id = u.id AND r.completed_at IS NULL)
    ), completed AS (
      UPDATE outbox o SET completed_at = now(), relayed_at = COALESCE(o.relayed_at, now())
      FROM claimed c JOIN quiet q ON q.id = c.user_id
      WHERE o.id = c.outbox_id AND o.completed_at IS NULL
      RETURNING o.id
    )
    SELECT id::text FROM quiet`;
  return new Set(rows.map((r) => r.id));
}

/**
 * The relay's form, for a batch it claimed (reconcile-lane user rows): the quiet users' rows are
 * completed here and never become jobs; a user whose reconcile is running, or who needs a plan, is not.
 */
export async function settleAnnouncements(
  tx: TransactionSql,
  announcements: readonly UserAnnouncement[],
): Promise<Set<string>> {
  if (announcements.length === 0) return new Set();
  // The locks first, in a statement of their own: a statement reads from the snapshot taken when it
  // starts, so a verdict in the statement that takes the lock could miss what a reconcile committed
  // (a platform edge) between that snapshot and its unlock, and complete an event that needs a plan.
  // A tenant whose rules are changing right now (matching-lock.ts) is left to the jobs, which wait.
  const locked = await tx<{ tenant_id: string; user_id: string }[]>`
    SELECT d.tenant_id::text, d.user_id::text FROM (
      SELECT DISTINCT * FROM unnest(${announcements.map((a) => a.tenantId)}::uuid[], ${announcements.map((a) => a.userId)}::uuid[])
        AS d(tenant_id, user_id)) d
    WHERE rule_matching_idle(d.tenant_id) AND pg_try_advisory_xact_lock(hashtextextended('user:' || d.user_id::text, 0))`;
  if (locked.length === 0) return new Set();
  const claimed = tx`
    SELECT * FROM unnest(${announcements.map((a) => a.outboxId)}::bigint[], ${announcements.map((a) => a.userId)}::uuid[])
      AS c(outbox_id, user_id)`;
  const candidates = tx`
    SELECT * FROM unnest(${locked.map((l) => l.tenant_id)}::uuid[], ${locked.map((l) => l.user_id)}::uuid[])
      AS d(tenant_id, user_id)`;
  return settleQuiet(tx, candidates, claimed);
}

/**
 * The job's form, for one user: waits for a reconcile of the same user in progress (its lock), then
 * completes every open announcement of the user if the user is quiet. Returns false whenever the full
 * plan must run.
 */
export async function completeIfUntouched(sql: Sql, tenantId: string, userId: string): Promise<boolean> {
  return sql.begin(async (tx) => {
    // Left to right, in a statement before the verdict's: no rule change in progress (matching-lock.ts),
    // waited for before the user's lock is taken, then the user's lock.
    await tx`SELECT rule_matching_awaited(${tenantId}), pg_advisory_xact_lock(hashtextextended(${userLockKey(userId)}, 0))`;
    const claimed = tx`
      SELECT id AS outbox_id, ${userId}::uuid AS user_id FROM outbox
      WHERE tenant_id = ${tenantId} AND subject_type = 'user' AND subject_id = ${userId} AND completed_at IS NULL`;
    const candidates = tx`SELECT ${tenantId}::uuid AS tenant_id, ${userId}::uuid AS user_id`;
    return (await settleQuiet(tx, candidates, claimed)).has(userId);
  });
}
