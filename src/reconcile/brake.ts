import { type SQL, sql } from 'drizzle-orm';
import { notify } from '../alerts/notify.js';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { isUuid } from '../db/uuid.js';
import { notFound } from '../errors.js';
import { recordForReconcileEach } from '../jobs/outbox.js';
import type { Blocked, Operation } from './model.js';
import { isRemoval } from './model.js';

/*
 * The mass-change brake. One IdP change (a SCIM request that empties a group, a removed rule) that would
 * remove more than the tenant's threshold of the Enterprise Account's members is held: its removals wait
 * for `idsync approve <change>`. A user the IdP deactivates or deletes is never held — individual
 * offboarding always goes through.
 */

/**
 * A change touching fewer users than this is never held, whatever the percentage: in a five-person
 * account every single removal is 20 %, and holding each one would make the brake a nuisance.
 */
export const MIN_HELD_CHANGE = 5;

/** The IdP or admin changes the brake may hold: membership, group and rule changes, never deactivation. */
export type HoldableEvent =
  | 'group.member_removed'
  | 'group.renamed'
  | 'group.deleted'
  | 'rule.removed'
  | 'import.replaced'
  | 'import.downgraded';

export interface BrakeInput {
  tenantId: string;
  /** The change's id (the SCIM request's correlation id, `rule:<id>`): what `idsync approve` names. */
  changeId: string;
  event: HoldableEvent;
  /** A query yielding (tenant id, user id) of every user the change may affect. */
  affectedUsers: SQL;
  /**
   * A query yielding the user ids the change lowers a role or permissions of (an import): each counts
   * as losing a grant, as a removal would, whatever the platform has.
   */
  downgradedUsers?: SQL;
}

/**
 * Decides, inside the transaction that makes the change and after it, whether the change is too large:
 * it counts the affected users who would lose a grant — their actual platform access (the built-in
 * tables, or the mirror of a remote platform) against what the rules give their groups now — and, if
 * that is at least MIN_HELD_CHANGE users and more than the tenant's threshold of the Enterprise
 * Account, holds their removals. Decided from stored state, once per change, so it does not depend on
 * which job runs first or which events BullMQ deduplicated. Returns how many users it held.
 */
export async function brakeChange(tx: Pick<Database, 'execute'>, input: BrakeInput): Promise<number> {
  const { tenantId } = input;
  const [row] = await tx.execute<{ held: number }>(sql`
    WITH affected AS (
      SELECT DISTINCT u.id, u.user_name_key AS account_key FROM users u
      WHERE u.tenant_id = ${tenantId} AND u.active AND u.deprovisioned_at IS NULL
        AND u.id IN (SELECT a.user_id::uuid FROM (${input.affectedUsers}) AS a(tenant_id, user_id))
    ), granted AS (
      SELECT a.id, r.target, r.team_name, r.app_name FROM affected a
      JOIN group_members gm ON gm.user_id = a.id
      JOIN groups g ON g.id = gm.group_id
      JOIN assignment_rules r ON r.tenant_id = ${tenantId} AND lower(r.idp_group) = lower(g.display_name)
      UNION ALL
      SELECT a.id, r.target, r.team_name, r.app_name FROM affected a
      JOIN users u ON u.id = a.id
      JOIN assignment_rules r ON r.tenant_id = ${tenantId} AND r.idp_app_role IS NOT NULL
        AND u.app_roles @> jsonb_build_array(lower(r.idp_app_role))
      UNION ALL
      SELECT a.id, CASE WHEN d.team_name IS NOT NULL THEN 'team' ELSE 'app' END::rule_target, d.team_name, d.app_name
      FROM affected a JOIN assignments d ON d.user_id = a.id
    ), losing AS (
      SELECT a.id FROM affected a
      WHERE EXISTS (
          SELECT 1 FROM platform_team_members m JOIN teams t ON t.id = m.team_id
          WHERE m.tenant_id = ${tenantId} AND account_key(m.account) = a.account_key
            AND NOT EXISTS (SELECT 1 FROM granted gr WHERE gr.id = a.id AND ((gr.target = 'team' AND gr.team_name = t.name)
              OR (gr.target = 'all-teams' AND t.listed_at IS NOT NULL))))
        OR EXISTS (
          SELECT 1 FROM platform_app_collaborators c JOIN apps p ON p.id = c.app_id
          WHERE c.tenant_id = ${tenantId} AND account_key(c.account) = a.account_key
            AND NOT EXISTS (SELECT 1 FROM granted gr WHERE gr.id = a.id AND gr.target = 'app' AND gr.app_name = p.name))
        OR (EXISTS (SELECT 1 FROM platform_enterprise_members e WHERE e.tenant_id = ${tenantId} AND account_key(e.account) = a.account_key)
          AND NOT EXISTS (SELECT 1 FROM granted gr WHERE gr.id = a.id))
        ${input.downgradedUsers ? sql`OR a.id IN (SELECT d.user_id::uuid FROM (${input.downgradedUsers}) AS d(user_id))` : sql``}
    ), sizes AS (
      SELECT (SELECT count(*) FROM losing)::int AS losing,
        (SELECT count(*) FROM platform_enterprise_members WHERE tenant_id = ${tenantId})::int AS enterprise,
        (SELECT mass_change_threshold_percent FROM tenants WHERE id = ${tenantId}) AS threshold
    ), change AS (
      INSERT INTO held_changes (id, tenant_id, event, affected_users, enterprise_size)
      SELECT ${input.changeId}, ${tenantId}, ${input.event}, sizes.losing, sizes.enterprise FROM sizes
      WHERE sizes.losing >= ${MIN_HELD_CHANGE} AND sizes.enterprise > 0
        AND sizes.losing * 100 > sizes.threshold * sizes.enterprise
      ON CONFLICT (tenant_id, id) DO UPDATE SET affected_users = held_changes.affected_users + EXCLUDED.affected_users
      RETURNING id
    ), held AS (
      INSERT INTO held_change_users (tenant_id, change_id, user_id)
      SELECT ${tenantId}, change.id, losing.id FROM change CROSS JOIN losing
      ON CONFLICT DO NOTHING RETURNING user_id
    )
    SELECT count(*)::int AS held FROM held`);
  const held = row?.held ?? 0;
  if (held > 0) {
    // In the change's own transaction: the alert exists exactly when the hold does. Keyed by the
    // change, so the requests that add users to one held change raise one alert.
    await notify(tx, {
      tenantId,
      type: 'brake.held',
      key: `brake.held:${input.changeId}`,
      summary: `an IdP change (${input.event}) would remove access from too much of the Enterprise Account: its removals are held until \`idsync approve ${input.changeId}\``,
      data: { changeId: input.changeId, event: input.event, usersHeld: held },
    });
  }
  return held;
}

/** The pending changes that hold this user's removals. */
export async function pendingHoldsOf(db: Pick<Database, 'execute'>, userId: string): Promise<string[]> {
  const rows = await db.execute<{ change_id: string }>(sql`
    SELECT hu.change_id FROM held_change_users hu
    JOIN held_changes h ON h.tenant_id = hu.tenant_id AND h.id = hu.change_id
    WHERE hu.user_id = ${userId} AND h.status = 'pending'`);
  return rows.map((r) => r.change_id);
}

/** Takes the removals (and token revocation) out of a plan while a change holds the user. */
export function holdRemovals(
  operations: Operation[],
  changeId: string,
): { kept: Operation[]; held: Blocked[] } {
  const kept: Operation[] = [];
  const held: Blocked[] = [];
  for (const operation of operations) {
    if (
      isRemoval(operation) ||
      operation.kind === 'revoke-tokens' ||
      operation.kind === 'change-team-role' ||
      operation.kind === 'change-app-access'
    ) {
      held.push({ reason: 'mass-change-held', changeId, operation });
    } else {
      kept.push(operation);
    }
  }
  return { kept, held };
}

export interface HeldChange {
  id: string;
  status: 'pending' | 'approved';
  event: string;
  affectedUsers: number;
  enterpriseSize: number;
  createdAt: string;
}

export async function listHeldChanges(db: Database, tenantId: string): Promise<HeldChange[]> {
  const rows = await db.execute<{
    id: string;
    status: 'pending' | 'approved';
    event: string;
    affected_users: number;
    enterprise_size: number;
    created_at: string;
  }>(sql`
    SELECT id, status, event, affected_users, enterprise_size, to_json(created_at)#>>'{}' AS created_at
    FROM held_changes WHERE tenant_id = ${tenantId} ORDER BY created_at DESC`);
  return rows.map((r) => ({
    id: r.id,
    status: r.status,
    event: r.event,
    affectedUsers: r.affected_users,
    enterpriseSize: r.enterprise_size,
    createdAt: new Date(r.created_at).toISOString(),
  }));
}

/** Approves a held change and queues every user it held, in one transaction. */
export async function approveChange(
  db: Database,
  tenantId: string,
  changeId: string,
  actor: string,
): Promise<number> {
  if (!isUuid(changeId)) throw notFound(`no pending change ${changeId}`);
  return db.transaction(async (tx) => {
    const [change] = await tx.execute<{ id: string }>(sql`
      UPDATE held_changes SET status = 'approved', approved_at = now(), approved_by = ${actor}
      WHERE tenant_id = ${tenantId} AND id = ${changeId} AND status = 'pending' RETURNING id`);
    if (!change) throw notFound(`no pending change ${changeId}`);
    const queued = await recordForReconcileEach(
      tx,
      {
        lane: 'reconcile',
        subjectType: 'user',
        cause: { event: 'change.approved', changeId, actor, at: new Date().toISOString() },
      },
      sql`SELECT tenant_id, user_id FROM held_change_users WHERE tenant_id = ${tenantId} AND change_id = ${changeId}`,
    );
    await recordAudit(tx, {
      tenantId,
      actor,
      action: 'change.approved',
      subjectType: 'tenant',
      subjectId: tenantId,
      after: { changeId, users: queued },
    });
    return queued;
  });
}
