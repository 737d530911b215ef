import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { isUuid } from '../db/uuid.js';
import { notFound } from '../errors.js';
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

/** Events whose removals the brake may hold: membership and rule changes, never deactivation. */
const HOLDABLE_EVENTS = new Set(['group.member_removed', 'group.renamed', 'rule.removed']);

export interface BrakeInput {
  tenantId: string;
  userId: string;
  cause: { event?: string; correlationId?: string; changeSize?: unknown };
  thresholdPercent: number;
  enterpriseSize: () => Promise<number>;
}

/** Holds the change if it is too large, and returns the pending changes that hold this user. */
export async function heldChangesFor(db: Database, input: BrakeInput): Promise<string[]> {
  const { cause } = input;
  const size = typeof cause.changeSize === 'number' ? cause.changeSize : 0;
  if (cause.event && HOLDABLE_EVENTS.has(cause.event) && cause.correlationId && size >= MIN_HELD_CHANGE) {
    const enterprise = await input.enterpriseSize();
    if (enterprise > 0 && size * 100 > input.thresholdPercent * enterprise) {
      await db.execute(sql`
        WITH change AS (
          INSERT INTO held_changes (id, tenant_id, event, affected_users, enterprise_size)
          VALUES (${cause.correlationId}, ${input.tenantId}, ${cause.event}, ${size}, ${enterprise})
          ON CONFLICT (tenant_id, id) DO UPDATE SET affected_users = held_changes.affected_users
          RETURNING status
        )
        INSERT INTO held_change_users (tenant_id, change_id, user_id)
        SELECT ${input.tenantId}, ${cause.correlationId}, ${input.userId} FROM change WHERE status = 'pending'
        ON CONFLICT DO NOTHING`);
    }
  }
  const rows = await db.execute<{ change_id: string }>(sql`
    SELECT hu.change_id FROM held_change_users hu
    JOIN held_changes h ON h.tenant_id = hu.tenant_id AND h.id = hu.change_id
    WHERE hu.user_id = ${input.userId} AND h.status = 'pending'`);
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
    if (isRemoval(operation) || operation.kind === 'revoke-tokens' || operation.kind === 'change-team-role') {
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
    const queued = await tx.execute(sql`
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      SELECT ${tenantId}, 'reconcile', 'user', user_id::text,
        ${JSON.stringify({ event: 'change.approved', changeId, actor, at: new Date().toISOString() })}::jsonb
      FROM held_change_users WHERE tenant_id = ${tenantId} AND change_id = ${changeId}`);
    await tx.execute(sql`
      INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, after)
      VALUES (${tenantId}, ${actor}, 'change.approved', 'tenant', ${tenantId}, ${JSON.stringify({ changeId, users: queued.count })}::jsonb)`);
    return queued.count;
  });
}
