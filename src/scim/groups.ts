import { and, asc, count, eq, getTableColumns, type SQL, sql } from 'drizzle-orm';
import { recordAudit } from '../audit/audit-log.js';
import { changeStamp } from '../db/change-stamp.js';
import type { Database } from '../db/client.js';
import { againAfterDeadlock } from '../db/deadlocks.js';
import { freeVersionSlot, groupLastModified, groupVersion } from '../db/group-versions.js';
import { groups, groupVersionSlots } from '../db/schema.js';
import { preparedStatement } from '../db/statement.js';
import { KeyedStatementBatchers, StatementBatcher } from '../db/statement-batcher.js';
import {
  isForeignKeyViolation,
  isStatementRolledBack,
  isUniqueViolation,
  violatedConstraint,
} from '../errors.js';
import { type OutboxEntry, recordForReconcile } from '../jobs/outbox.js';
import { brakeChange } from '../reconcile/brake.js';
import {
  normaliseLegacySchemaUrns,
  normaliseMemberValues,
  type PatchOperation,
  unknownSchemaError,
} from './dialects.js';
import { ScimError } from './errors.js';
import type { FilterNode } from './filter.js';
import { filterToSql, groupMapping } from './filter-sql.js';
import { checkLength } from './limits.js';
import { parsePatchPath } from './patch.js';
import { GROUP_SCHEMA } from './schemas.js';
import { checkIfMatch, etagOf, isUuid, type RequestContext } from './users.js';

/*
 * Groups keep their members in group_members and every membership change is a delta in SQL: adding one
 * member to a group of 10,000 touches one row, never the other 9,999 (scimmy's PatchOp would re-coerce
 * the whole group on every request).
 */

export type GroupRow = typeof groups.$inferSelect;
type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];
type Document = Record<string, unknown>;

/** Largest number of member values one request may carry; advertised in /ServiceProviderConfig. */
export const MAX_MEMBERS_PER_REQUEST = 1000;

export interface MemberRef {
  id: string;
  display: string | undefined;
}

export interface GroupInput {
  displayName: string;
  externalId: string | null;
  /** Undefined: the body did not mention members (PUT then leaves them as they are). */
  members: MemberRef[] | undefined;
}

export function readGroupInput(body: unknown): GroupInput {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new ScimError(400, 'invalidSyntax', 'request body must be a Group object');
  }
  const document = normaliseLegacySchemaUrns(body as Document, GROUP_SCHEMA);
  const field = (name: string) => {
    const key = Object.keys(document).find((k) => k.toLowerCase() === name.toLowerCase());
    return key === undefined ? undefined : document[key];
  };
  const schemas = field('schemas');
  if (schemas !== undefined && (!Array.isArray(schemas) || !schemas.includes(GROUP_SCHEMA))) {
    throw unknownSchemaError(schemas, GROUP_SCHEMA, []);
  }
  const displayName = field('displayName');
  if (typeof displayName !== 'string' || displayName.trim() === '') {
    throw new ScimError(400, 'invalidValue', 'displayName is required and must be a non-empty string');
  }
  const externalId = field('externalId');
  if (externalId !== undefined && externalId !== null && typeof externalId !== 'string') {
    throw new ScimError(400, 'invalidValue', 'externalId must be a string');
  }
  checkLength('displayName', displayName.trim());
  if (typeof externalId === 'string') checkLength('externalId', externalId);
  const members = field('members');
  const memberRefs = members === undefined ? undefined : normaliseMemberValues(members);
  if (memberRefs && memberRefs.length > MAX_MEMBERS_PER_REQUEST) tooManyMembers();
  return {
    displayName: displayName.trim(),
    externalId: typeof externalId === 'string' && externalId !== '' ? externalId : null,
    members: memberRefs,
  };
}

function tooManyMembers(): never {
  throw new ScimError(
    413,
    undefined,
    `a request may add, remove or set at most ${MAX_MEMBERS_PER_REQUEST} members; split it into several PATCH requests`,
  );
}

function uniquenessError(error: unknown, displayName: string, externalId: string | null): ScimError {
  if (violatedConstraint(error) === 'groups_tenant_external_id_key') {
    return new ScimError(409, 'uniqueness', `a group with externalId "${externalId}" already exists`);
  }
  return new ScimError(409, 'uniqueness', `a group named "${displayName}" already exists`);
}

function invalidMembers(ids: string[]): ScimError {
  const shown = ids.slice(0, 5).join(', ');
  return new ScimError(
    400,
    'invalidValue',
    `member${ids.length > 1 ? 's' : ''} ${shown}${ids.length > 5 ? ` and ${ids.length - 5} more` : ''} ${ids.length > 1 ? 'are' : 'is'} not a user of this tenant`,
  );
}

/** What a write did to membership, to announce to the reconciler and the audit log. */
interface MembershipDelta {
  added: string[];
  removed: string[];
}

/**
 * The body of a `known` CTE: those rows of `wanted` (a CTE of id, display and whatever else) whose id is
 * a live user of the tenant, each looked up by its primary key. LATERAL with LIMIT 1 keeps PostgreSQL
 * from planning this as a join from table statistics, and the inner lookup can use no index but the
 * primary key (its tenant condition is written `IS TRUE`, which no index matches): right after an IdP's
 * initial push the statistics still say `users` is empty, and the plain join's generic plan hashed
 * `wanted` and walked every user of the tenant (measured in the peers' sitting: 10,000 rows and ~2.5 ms
 * of PostgreSQL CPU per single-member add). test/scim-plans.test.ts checks that the generic plan reads
 * one user, by `users_pkey` alone.
 *
 * Each user of the tenant is locked (FOR KEY SHARE: the lock a new membership's foreign-key check takes
 * anyway, an extra one for a member already there) before any membership is written. A user's DELETE
 * (lockUser, then its memberships deleted and the user deprovisioned) that commits while the add waits
 * is then seen, and the user is no member of anything, not a member the DELETE could not see to delete;
 * a SAML login holding the user likewise goes first. The tenant condition is inside, so another
 * tenant's user a request names is never locked (it would hold up that tenant's writes of the user).
 */
const liveUsersWanted = (tenantId: SQL) => sql`
      SELECT wanted.* FROM wanted CROSS JOIN LATERAL (
        SELECT users.deprovisioned_at FROM users
        WHERE users.id = wanted.id AND (users.tenant_id = ${tenantId}) IS TRUE LIMIT 1
        FOR KEY SHARE
      ) u
      WHERE u.deprovisioned_at IS NULL`;

async function addMembers(
  tx: Transaction,
  tenantId: string,
  groupId: string,
  members: MemberRef[],
): Promise<string[]> {
  if (members.length === 0) return [];
  const notIds = members.filter((m) => !isUuid(m.id)).map((m) => m.id);
  if (notIds.length > 0) throw invalidMembers(notIds);
  const unique = new Map(members.map((m) => [m.id.toLowerCase(), m]));
  const ids = [...unique.keys()];
  const displays = [...unique.values()].map((m) => m.display ?? null);
  // One statement: insert the members that are live users of this tenant, skip existing memberships,
  // and report both what was added and which ids named no such user.
  const rows = await tx.execute<{ user_id: string | null; wanted: string; added: boolean }>(sql`
    WITH wanted AS (
      SELECT w.id, w.display FROM unnest(${sql.param(ids)}::uuid[], ${sql.param(displays)}::text[]) AS w(id, display)
    ), known AS (${liveUsersWanted(sql`${tenantId}`)}
    ), inserted AS (
      INSERT INTO group_members (tenant_id, group_id, user_id, display, source)
      SELECT ${tenantId}, ${groupId}, known.id, known.display, 'scim' FROM known
      -- A membership a SAML login added becomes SCIM's: from now on only SCIM removes it.
      ON CONFLICT (group_id, user_id) DO UPDATE SET source = 'scim' WHERE group_members.source = 'saml'
      RETURNING user_id, (xmax = 0) AS fresh
    )
    SELECT wanted.id::text AS wanted, known.id::text AS user_id, coalesce(inserted.fresh, false) AS added
    FROM wanted LEFT JOIN known ON known.id = wanted.id LEFT JOIN inserted ON inserted.user_id = wanted.id`);
  const unknown = rows.filter((r) => r.user_id === null).map((r) => r.wanted);
  if (unknown.length > 0) throw invalidMembers(unknown);
  return rows.filter((r) => r.added).map((r) => r.wanted);
}

async function removeMembers(tx: Transaction, groupId: string, ids: string[]): Promise<string[]> {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  const rows = await tx.execute<{ user_id: string }>(sql`
    DELETE FROM group_members WHERE group_id = ${groupId} AND user_id = ANY(${sql.param(valid)}::uuid[]) RETURNING user_id::text`);
  return rows.map((r) => r.user_id);
}

async function removeAllMembers(tx: Transaction, groupId: string): Promise<string[]> {
  const rows = await tx.execute<{ user_id: string }>(sql`
    DELETE FROM group_members WHERE group_id = ${groupId} RETURNING user_id::text`);
  return rows.map((r) => r.user_id);
}

async function replaceMembers(
  tx: Transaction,
  tenantId: string,
  groupId: string,
  members: MemberRef[],
): Promise<MembershipDelta> {
  const keep = members.map((m) => m.id).filter(isUuid);
  const removedRows = await tx.execute<{ user_id: string }>(sql`
    DELETE FROM group_members WHERE group_id = ${groupId} AND NOT (user_id = ANY(${sql.param(keep)}::uuid[]))
    RETURNING user_id::text`);
  const added = await addMembers(tx, tenantId, groupId, members);
  return { added, removed: removedRows.map((r) => r.user_id) };
}

async function announce(
  tx: Transaction,
  tenantId: string,
  group: GroupRow,
  delta: MembershipDelta,
  renamed: { from: string; to: string } | undefined,
  action: string,
  context: RequestContext,
): Promise<void> {
  const at = new Date().toISOString();
  const entries: OutboxEntry[] = [
    ...delta.added.map((userId) => ({
      tenantId,
      lane: 'reconcile' as const,
      subjectType: 'user' as const,
      subjectId: userId,
      cause: {
        event: 'group.member_added',
        groupId: group.id,
        source: 'scim',
        at,
        correlationId: context.correlationId,
      },
    })),
    ...delta.removed.map((userId) => ({
      tenantId,
      lane: 'reconcile' as const,
      subjectType: 'user' as const,
      subjectId: userId,
      cause: {
        event: 'group.member_removed',
        groupId: group.id,
        source: 'scim',
        at,
        correlationId: context.correlationId,
      },
    })),
  ];
  // Rules name groups by display name, so a rename can change what every member is granted.
  if (renamed) {
    entries.push({
      tenantId,
      lane: 'reconcile',
      subjectType: 'group',
      subjectId: group.id,
      cause: { event: 'group.renamed', ...renamed, source: 'scim', at, correlationId: context.correlationId },
    });
  }
  // The mass-change brake decides now, in this transaction, from what every affected user would lose.
  // A rename changes what every member is granted; a removal, what the removed are.
  if (delta.removed.length > 0 || renamed) {
    await brakeChange(tx, {
      tenantId,
      changeId: context.correlationId ?? `group:${group.id}:${at}`,
      event:
        action === 'scim.group.deleted'
          ? 'group.deleted'
          : renamed
            ? 'group.renamed'
            : 'group.member_removed',
      affectedUsers: sql`
        SELECT ${tenantId}::uuid, unnest(${sql.param(delta.removed)}::uuid[])
        UNION ALL SELECT tenant_id, user_id FROM group_members WHERE ${renamed !== undefined} AND group_id = ${group.id}`,
    });
  }
  await recordForReconcile(tx, entries);
  await recordAudit(tx, {
    tenantId,
    actor: context.actor,
    action,
    subjectType: 'group',
    subjectId: group.id,
    before: renamed ? { displayName: renamed.from } : null,
    after: {
      displayName: group.displayName,
      ...(delta.added.length ? { membersAdded: delta.added } : {}),
      ...(delta.removed.length ? { membersRemoved: delta.removed } : {}),
    },
    correlationId: context.correlationId,
  });
}

export async function createGroup(
  db: Database,
  tenantId: string,
  input: GroupInput,
  context: RequestContext,
) {
  try {
    return await db.transaction(async (tx) => {
      const [group] = await tx
        .insert(groups)
        .values({ tenantId, displayName: input.displayName, externalId: input.externalId })
        .returning();
      const added = await addMembers(tx, tenantId, group!.id, input.members ?? []);
      await announce(tx, tenantId, group!, { added, removed: [] }, undefined, 'scim.group.created', context);
      return group!;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw uniquenessError(error, input.displayName, input.externalId);
    throw error;
  }
}

/**
 * A group as SCIM shows it: its version counts attribute changes (the row) and member changes (its
 * slots, see groupVersionSlots), and it was last modified by whichever came last.
 */
const groupColumns = {
  ...getTableColumns(groups),
  version: groupVersion({ version: sql`${groups.version}`, id: sql`${groups.id}` }).mapWith(Number),
  // Wrapped: mapWith sets the decoder on the SQL it is called on, and groupLastModified is shared.
  updatedAt: sql<Date>`${groupLastModified}`.mapWith(groups.updatedAt),
};

export async function findGroup(db: Database | Transaction, tenantId: string, id: string): Promise<GroupRow> {
  if (!isUuid(id)) throw new ScimError(404, undefined, `Group ${id} not found`);
  const [row] = await db
    .select(groupColumns)
    .from(groups)
    .where(and(eq(groups.tenantId, tenantId), eq(groups.id, id)));
  if (!row) throw new ScimError(404, undefined, `Group ${id} not found`);
  return row;
}

/*
 * A write to a group in a transaction of several statements (PUT, DELETE, a PATCH other than a plain
 * add) takes memberships in the request's order, while others take them in theirs: plain adds by user
 * id (addMembersSql; a PATCH without If-Match is the one that can run beside them, the others hold the
 * group), SAML logins and user deprovisioning (which hold the user, then count the change in a slot),
 * another such write. Orders that can meet in a deadlock: such writes run in againAfterDeadlock.
 */

/**
 * For writes that replace or delete the group, or are conditional on its version: locks the row and
 * then every version slot, so no change can land between the If-Match check and the commit. A plain add
 * statement takes the row first too (FOR KEY SHARE), then a slot: the two wait for each other in one
 * order, never in a cycle.
 */
async function lockGroup(tx: Transaction, tenantId: string, id: string): Promise<GroupRow> {
  if (!isUuid(id)) throw new ScimError(404, undefined, `Group ${id} not found`);
  const [locked] = await tx
    .select({ id: groups.id })
    .from(groups)
    .where(and(eq(groups.tenantId, tenantId), eq(groups.id, id)))
    .for('update');
  if (!locked) throw new ScimError(404, undefined, `Group ${id} not found`);
  await tx
    .select({ slot: groupVersionSlots.slot })
    .from(groupVersionSlots)
    .where(eq(groupVersionSlots.groupId, id))
    .for('update');
  return findGroup(tx, tenantId, id);
}

const isConditional = (ifMatch: string | undefined) =>
  ifMatch !== undefined && !ifMatch.split(',').some((t) => t.trim() === '*');

/**
 * Counts one change as the last statement of a write. Attribute changes, and conditional writes (which
 * hold every lock already), bump the group row; a plain member change bumps one version slot no other
 * transaction holds, so concurrent member changes to one group do not wait for each other.
 */
async function touch(
  tx: Transaction,
  group: GroupRow,
  changes: Partial<GroupRow>,
  conditional: boolean,
): Promise<GroupRow> {
  if (conditional || Object.keys(changes).length > 0) {
    await tx
      .update(groups)
      .set({ ...changes, version: sql`${groups.version} + 1`, updatedAt: changeStamp })
      .where(eq(groups.id, group.id));
    return findGroup(tx, group.tenantId, group.id);
  }
  const [bumped] = await tx
    .update(groupVersionSlots)
    .set({ changes: sql`${groupVersionSlots.changes} + 1`, changedAt: changeStamp })
    .where(
      and(
        eq(groupVersionSlots.groupId, group.id),
        eq(groupVersionSlots.slot, freeVersionSlot(sql`${group.id}`)),
      ),
    )
    .returning({ changedAt: groupVersionSlots.changedAt });
  // The version this write makes, without reading it back: if other member changes committed since
  // `group` was read, the group's version is already higher, and this ETag can only fail an If-Match
  // (never match a state that lacks this change).
  return { ...group, version: group.version + 1, updatedAt: bumped?.changedAt ?? group.updatedAt };
}

export async function replaceGroup(
  db: Database,
  tenantId: string,
  id: string,
  input: GroupInput,
  ifMatch: string | undefined,
  context: RequestContext,
): Promise<GroupRow> {
  try {
    return await againAfterDeadlock(() =>
      db.transaction(async (tx) => {
        const current = await lockGroup(tx, tenantId, id);
        checkIfMatch(ifMatch, current.version);
        // A PUT that leaves out members keeps them: dropping every member because a client omitted the
        // attribute would offboard the whole group.
        const delta = input.members
          ? await replaceMembers(tx, tenantId, id, input.members)
          : { added: [], removed: [] };
        const updated = await touch(
          tx,
          current,
          {
            displayName: input.displayName,
            externalId: input.externalId,
          },
          true,
        );
        const renamed =
          current.displayName !== updated.displayName
            ? { from: current.displayName, to: updated.displayName }
            : undefined;
        await announce(tx, tenantId, updated, delta, renamed, 'scim.group.replaced', context);
        return updated;
      }),
    );
  } catch (error) {
    if (isUniqueViolation(error)) throw uniquenessError(error, input.displayName, input.externalId);
    throw error;
  }
}

/** Member ids named by `members[value eq "a" or value eq "b"]`. */
function memberIdsOf(filter: FilterNode): string[] {
  if (filter.kind === 'or') return [...memberIdsOf(filter.left), ...memberIdsOf(filter.right)];
  if (
    filter.kind === 'compare' &&
    filter.operator === 'eq' &&
    filter.path.names.length === 1 &&
    filter.path.names[0]!.toLowerCase() === 'value' &&
    typeof filter.value === 'string'
  ) {
    return [filter.value];
  }
  throw new ScimError(
    400,
    'invalidPath',
    'member filters must select members by value, e.g. members[value eq "id"]',
  );
}

export async function patchGroup(
  db: Database,
  tenantId: string,
  id: string,
  operations: PatchOperation[],
  ifMatch: string | undefined,
  context: RequestContext,
  /** Set on the one re-run after a member or the group was deleted under the request (see below). */
  rerun = false,
): Promise<GroupRow> {
  const memberValues = operations.reduce(
    (total, op) => total + (Array.isArray(op.value) ? op.value.length : op.value === undefined ? 0 : 1),
    0,
  );
  if (memberValues > MAX_MEMBERS_PER_REQUEST) tooManyMembers();
  const onlyAdd = plainMemberAdd(operations, ifMatch);
  if (onlyAdd) return addMembersAtOnce(db, tenantId, id, onlyAdd, context);
  try {
    return await againAfterDeadlock(() =>
      db.transaction(async (tx) => {
        const conditional = isConditional(ifMatch);
        const current = conditional ? await lockGroup(tx, tenantId, id) : await findGroup(tx, tenantId, id);
        checkIfMatch(ifMatch, current.version);
        const added = new Set<string>();
        const removed = new Set<string>();
        const changes: Partial<GroupRow> = {};
        // Net effect per user: removed then re-added in one request is no change to announce.
        const noteAdded = (ids: string[]) => {
          for (const u of ids) if (!removed.delete(u)) added.add(u);
        };
        const noteRemoved = (ids: string[]) => {
          for (const u of ids) if (!added.delete(u)) removed.add(u);
        };

        for (const operation of operations) {
          const path = parsePatchPath(operation.path!, GROUP_SCHEMA);
          const attribute = path.attribute?.toLowerCase();
          if (attribute === 'members') {
            if (path.sub)
              throw new ScimError(
                400,
                'invalidPath',
                `"${operation.path}": member sub-attributes are read-only`,
              );
            if (operation.op === 'remove') {
              if (path.filter) noteRemoved(await removeMembers(tx, id, memberIdsOf(path.filter)));
              else if (operation.value !== undefined) {
                // Entra: {"op":"Remove","path":"members","value":[{"value":"id"}]} removes just those.
                noteRemoved(
                  await removeMembers(
                    tx,
                    id,
                    normaliseMemberValues(operation.value).map((m) => m.id),
                  ),
                );
              } else noteRemoved(await removeAllMembers(tx, id));
            } else if (operation.op === 'add') {
              if (path.filter) throw new ScimError(400, 'invalidPath', 'add to members takes no filter');
              noteAdded(await addMembers(tx, tenantId, id, normaliseMemberValues(operation.value)));
            } else {
              // Okta's full push: replace the member list with exactly this one.
              const delta = await replaceMembers(tx, tenantId, id, normaliseMemberValues(operation.value));
              noteRemoved(delta.removed);
              noteAdded(delta.added);
            }
          } else if (attribute === 'displayname') {
            if (operation.op === 'remove')
              throw new ScimError(400, 'mutability', 'displayName is required and cannot be removed');
            if (typeof operation.value !== 'string' || operation.value.trim() === '') {
              throw new ScimError(400, 'invalidValue', 'displayName must be a non-empty string');
            }
            checkLength('displayName', operation.value.trim());
            changes.displayName = operation.value.trim();
          } else if (attribute === 'externalid') {
            if (operation.op === 'remove') changes.externalId = null;
            else if (typeof operation.value === 'string') {
              checkLength('externalId', operation.value);
              changes.externalId = operation.value || null;
            } else throw new ScimError(400, 'invalidValue', 'externalId must be a string');
          } else if (attribute === 'id' || attribute === 'schemas' || attribute === 'meta') {
            // Okta's rename carries the group's id in the value; read-only attributes are ignored.
          } else {
            throw new ScimError(400, 'invalidPath', `"${operation.path}" is not an attribute of a Group`);
          }
        }
        const updated = await touch(tx, current, changes, conditional);
        const renamed =
          current.displayName !== updated.displayName
            ? { from: current.displayName, to: updated.displayName }
            : undefined;
        await announce(
          tx,
          tenantId,
          updated,
          { added: [...added], removed: [...removed] },
          renamed,
          'scim.group.patched',
          context,
        );
        return updated;
      }),
    );
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new ScimError(409, 'uniqueness', 'another group already has that displayName or externalId');
    }
    // The group or a member was deleted (committed) while an insert waited for it: run once more, and
    // the fresh reads answer 404 or 400 instead of the foreign key's 500.
    if (isForeignKeyViolation(error) && !rerun)
      return patchGroup(db, tenantId, id, operations, ifMatch, context, true);
    throw error;
  }
}

/**
 * The members of a request that only adds members, unconditionally (no If-Match): what an IdP sends
 * for every assignment (Okta: one PATCH per user added to a pushed group). Anything else takes the
 * general path.
 */
function plainMemberAdd(operations: PatchOperation[], ifMatch: string | undefined): MemberRef[] | undefined {
  if (operations.length !== 1 || isConditional(ifMatch)) return undefined;
  const [operation] = operations;
  if (operation!.op !== 'add' || operation!.path === undefined) return undefined;
  const path = parsePatchPath(operation!.path, GROUP_SCHEMA);
  if (path.attribute?.toLowerCase() !== 'members' || path.sub || path.filter) return undefined;
  return normaliseMemberValues(operation!.value);
}

/**
 * The general path's add, in ONE statement (atomic without BEGIN/COMMIT): the group read, the members
 * inserted, a free version slot bumped, an outbox row per member added and the audit row — or nothing at
 * all when the group is not there or a member is not a live user of the tenant. Seven round trips
 * became one; single-member adds to one hot group were the phase furthest behind the peers. The same
 * rows as the general path write (`announce`), checked by test/scim-group-versions.test.ts.
 *
 * Concurrent adds to one group share that statement (a StatementBatcher per group and process, as
 * creates do per tenant): each add is still its own PATCH with its own audit row, version and answer,
 * but the statement, its plan, its foreign-key checks of the group row and its commit are paid once for
 * all of them.
 */
async function addMembersAtOnce(
  db: Database,
  tenantId: string,
  requestedId: string,
  members: MemberRef[],
  context: RequestContext,
): Promise<GroupRow> {
  if (!isUuid(requestedId)) throw new ScimError(404, undefined, `Group ${requestedId} not found`);
  // As PostgreSQL writes it: one batcher per group however a client spells its id, and the outbox's cause
  // names it as the general path's does.
  const groupId = requestedId.toLowerCase();
  const notIds = members.filter((m) => !isUuid(m.id)).map((m) => m.id);
  if (notIds.length > 0) throw invalidMembers(notIds);
  const unique = new Map(members.map((m) => [m.id.toLowerCase(), m]));
  const cause = {
    event: 'group.member_added',
    groupId,
    source: 'scim',
    at: new Date().toISOString(),
    correlationId: context.correlationId,
  };
  const add: MemberAdd = {
    ids: [...unique.keys()],
    displays: [...unique.values()].map((m) => m.display ?? null),
    cause: JSON.stringify(cause),
    actor: context.actor,
    correlationId: context.correlationId ?? null,
  };
  // No foreign-key retry, unlike the general path: the statement locks the group and the users before
  // it writes a membership, so a DELETE of either that commits meanwhile is seen (404, 400). A deadlock
  // with a write of several statements (see againAfterDeadlock) can abort this add's statement instead
  // of that write: it wrote nothing, and goes again.
  const outcome = await againAfterDeadlock(() => submitMemberAdd(db, tenantId, groupId, add));
  if (outcome.kind === 'groupMissing') throw new ScimError(404, undefined, `Group ${groupId} not found`);
  if (outcome.kind === 'unknownMembers') throw invalidMembers(outcome.ids);
  return outcome.group;
}

/** One PATCH's plain member add, as the batch statement takes it. */
interface MemberAdd {
  ids: string[];
  displays: (string | null)[];
  cause: string;
  actor: string;
  correlationId: string | null;
}

type MemberAddOutcome =
  /** The group as this add left it (its version as `touch` answers: the version it made, not read back). */
  | { kind: 'added'; group: GroupRow }
  | { kind: 'groupMissing' }
  /** Ids that name no live user of the tenant: the add wrote nothing. */
  | { kind: 'unknownMembers'; ids: string[] };

interface AddedRow extends Record<string, unknown> {
  /** The add's number in the statement. */
  n: number;
  id: string | null;
  tenant_id: string;
  display_name: string;
  external_id: string | null;
  /** The group's version after this add: the version read plus the adds of the statement up to it. */
  version: number;
  /** Text: drizzle's postgres.js client leaves timestamps unparsed. */
  created_at: string;
  /** When the statement counted its adds in the group's version; null for an add it did not write. */
  changed_at: string | null;
  unknown: string[] | null;
}

/**
 * Per group and process: at most this many add statements at once, and adds and members per statement
 * (an add of more members than that goes alone). The adds behind a running statement wait for it however
 * long it runs (no slow flights, unlike creates). A long wait is nearly always on the group itself: a
 * write of several statements (PUT, DELETE, If-Match) holds its row, or every version slot is held, and
 * each statement behind would wait there too, one more on its own pooled connection every slow period.
 * The price: a statement held up by one of its users instead (a PUT, DELETE or SAML login holding the
 * user's row, or a membership another transaction is changing) holds up the group's other adds as well,
 * until it goes on or its statement timeout. And each statement starts after the one before it
 * committed, so it reads the version that one left: the ETags its adds answer follow, not repeat, the
 * previous ones' (README, "Concurrent member adds", says when an ETag can still be answered twice).
 */
const MEMBER_ADD_FLIGHTS = 1;
const ADDS_PER_STATEMENT = 64;
const MEMBERS_PER_ADD_STATEMENT = MAX_MEMBERS_PER_REQUEST;

/** The batchers of groups with adds running or waiting, per database handle. */
const memberAdders = new WeakMap<Database, KeyedStatementBatchers<MemberAdd, MemberAddOutcome>>();

function submitMemberAdd(
  db: Database,
  tenantId: string,
  groupId: string,
  add: MemberAdd,
): Promise<MemberAddOutcome> {
  let adders = memberAdders.get(db);
  if (!adders) {
    adders = new KeyedStatementBatchers((key, onIdle) => {
      const [keyTenant, keyGroup] = key.split(':') as [string, string];
      return new StatementBatcher<MemberAdd, MemberAddOutcome>(
        (adds) => writeMemberAdds(db, keyTenant, keyGroup, adds),
        {
          flights: MEMBER_ADD_FLIGHTS,
          maxBatch: ADDS_PER_STATEMENT,
          maxWeight: MEMBERS_PER_ADD_STATEMENT,
          weigh: (add) => add.ids.length,
          isRolledBack: isStatementRolledBack,
          onIdle,
        },
      );
    });
    memberAdders.set(db, adders);
  }
  // Both are UUIDs (checked before): the key splits back into them.
  return adders.submit(`${tenantId}:${groupId}`, add);
}

async function writeMemberAdds(
  db: Database,
  tenantId: string,
  groupId: string,
  adds: MemberAdd[],
): Promise<MemberAddOutcome[]> {
  const rows = await addMembersStatement<AddedRow>(db, {
    tenantId,
    groupId,
    addOf: adds.flatMap((add, i) => add.ids.map(() => i + 1)),
    ids: adds.flatMap((add) => add.ids),
    displays: adds.flatMap((add) => add.displays),
    causes: adds.map((add) => add.cause),
    actors: adds.map((add) => add.actor),
    correlationIds: adds.map((add) => add.correlationId),
  });
  return adds.map((_, i): MemberAddOutcome => {
    const row = rows.find((r) => Number(r.n) === i + 1);
    if (!row?.id) return { kind: 'groupMissing' };
    if (row.unknown) return { kind: 'unknownMembers', ids: row.unknown };
    const group: GroupRow = {
      id: row.id,
      tenantId: row.tenant_id,
      displayName: row.display_name,
      externalId: row.external_id,
      version: row.version,
      createdAt: new Date(row.created_at),
      updatedAt: new Date(row.changed_at!),
    };
    return { kind: 'added', group };
  });
}

/**
 * The single statement of plain member adds to one group, one or many (a batch); its values are the
 * placeholders AddMembersValues names, the adds numbered from 1 in `causes`' order. An add naming an id
 * that is no live user of the tenant writes nothing; the others of the statement are written. Members go
 * in by user id (two statements adding the same users cannot deadlock), a user two adds of the statement
 * name counts as added by the first, and the group's version rises by one per add written.
 */
export function addMembersSql(): SQL {
  const p = sql.placeholder;
  return sql`
    WITH g AS (
      SELECT g.id, g.tenant_id, g.display_name, g.external_id, g.created_at,
        ${groupVersion({ version: sql`g.version`, id: sql`g.id` })} AS version
      FROM groups g WHERE g.tenant_id = ${p('tenantId')} AND g.id = ${p('groupId')}
      -- Locked first: a write holding the group (PUT, DELETE, If-Match) goes first, and once it commits
      -- its row is read (its attribute version, or no group). Member changes counted in the slots are
      -- still read as of the statement's start.
      FOR KEY SHARE
    ), adds AS (
      SELECT a.n::int AS n, a.cause, a.actor, a.correlation_id
      FROM unnest(${p('causes')}::text[], ${p('actors')}::text[], ${p('correlationIds')}::text[])
        WITH ORDINALITY AS a(cause, actor, correlation_id, n)
    ), wanted AS (
      SELECT w.n, w.id, w.display, w.k FROM unnest(${p('addOf')}::int[], ${p('ids')}::uuid[], ${p('displays')}::text[])
        WITH ORDINALITY AS w(n, id, display, k)
    ), known AS (${liveUsersWanted(sql`${p('tenantId')}`)}
    ), unknown AS (
      SELECT wanted.n, wanted.id FROM wanted WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.n = wanted.n AND known.id = wanted.id)
    ), go AS (
      SELECT adds.*, count(*) OVER (ORDER BY adds.n) AS rank FROM adds, g
      WHERE NOT EXISTS (SELECT 1 FROM unknown WHERE unknown.n = adds.n)
    ), candidates AS (
      SELECT DISTINCT ON (known.id) known.n, known.k, known.id, known.display FROM known JOIN go ON go.n = known.n
      ORDER BY known.id, known.n
    ), inserted AS (
      INSERT INTO group_members (tenant_id, group_id, user_id, display, source)
      SELECT g.tenant_id, g.id, candidates.id, candidates.display, 'scim' FROM g, candidates ORDER BY candidates.id
      -- A membership a SAML login added becomes SCIM's: from now on only SCIM removes it.
      ON CONFLICT (group_id, user_id) DO UPDATE SET source = 'scim' WHERE group_members.source = 'saml'
      RETURNING user_id, (xmax = 0) AS fresh
    ), added AS (
      SELECT candidates.n, candidates.k, inserted.user_id FROM inserted JOIN candidates ON candidates.id = inserted.user_id
      WHERE inserted.fresh
    ), bumped AS (
      UPDATE group_version_slots SET changes = changes + (SELECT count(*) FROM go), changed_at = ${changeStamp}
      WHERE group_id = (SELECT id FROM g) AND EXISTS (SELECT 1 FROM go)
        AND slot = ${freeVersionSlot(sql`(SELECT id FROM g)`)}
      RETURNING changed_at
    ), queued AS (
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      SELECT g.tenant_id, 'reconcile', 'user', added.user_id::text, go.cause::jsonb
      FROM g, added JOIN go ON go.n = added.n ORDER BY added.k
    ), audited AS (
      INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, before, after, correlation_id)
      SELECT g.tenant_id, go.actor, 'scim.group.patched', 'group', g.id::text, NULL,
        jsonb_build_object('displayName', g.display_name)
          || COALESCE((SELECT jsonb_build_object('membersAdded', jsonb_agg(added.user_id::text ORDER BY added.k)) FROM added
                       WHERE added.n = go.n HAVING count(*) > 0), '{}'::jsonb),
        go.correlation_id
      FROM g, go ORDER BY go.n
    )
    SELECT adds.n, g.id::text, g.tenant_id::text, g.display_name, g.external_id, g.created_at,
      (g.version + COALESCE((SELECT go.rank FROM go WHERE go.n = adds.n), 0))::int AS version,
      (SELECT bumped.changed_at FROM bumped) AS changed_at,
      (SELECT array_agg(unknown.id::text) FROM unknown WHERE unknown.n = adds.n) AS unknown
    FROM adds LEFT JOIN g ON true ORDER BY adds.n`;
}

type AddMembersValues = {
  tenantId: string;
  groupId: string;
  /** For each id: the number of the add (1-based) that names it. */
  addOf: number[];
  ids: string[];
  displays: (string | null)[];
  causes: string[];
  actors: string[];
  correlationIds: (string | null)[];
};
const addMembersStatement = preparedStatement<AddMembersValues>(addMembersSql);

export async function deleteGroup(
  db: Database,
  tenantId: string,
  id: string,
  ifMatch: string | undefined,
  context: RequestContext,
): Promise<void> {
  await againAfterDeadlock(() =>
    db.transaction(async (tx) => {
      const current = await lockGroup(tx, tenantId, id);
      checkIfMatch(ifMatch, current.version);
      const removed = await removeAllMembers(tx, id);
      await tx.delete(groups).where(eq(groups.id, id));
      await announce(tx, tenantId, current, { added: [], removed }, undefined, 'scim.group.deleted', context);
    }),
  );
}

export async function listGroups(
  db: Database,
  tenantId: string,
  options: { filter: FilterNode | undefined; startIndex: number; count: number },
): Promise<{ total: number; rows: GroupRow[] }> {
  const conditions: SQL[] = [eq(groups.tenantId, tenantId)];
  if (options.filter) conditions.push(filterToSql(options.filter, groupMapping));
  const where = and(...conditions);
  const [totals, rows] = await Promise.all([
    db.select({ total: count() }).from(groups).where(where),
    options.count === 0
      ? Promise.resolve([] as GroupRow[])
      : db
          .select(groupColumns)
          .from(groups)
          .where(where)
          .orderBy(asc(groups.createdAt), asc(groups.id))
          .limit(options.count)
          .offset(options.startIndex - 1),
  ]);
  return { total: totals[0]?.total ?? 0, rows };
}

/** Members of each given group, in one query (only when the response includes members). */
export async function membersOfGroups(db: Database, groupIds: string[]): Promise<Map<string, MemberRef[]>> {
  const result = new Map<string, MemberRef[]>(groupIds.map((id) => [id, []]));
  if (groupIds.length === 0) return result;
  const rows = await db.execute<{ group_id: string; user_id: string; display: string | null }>(sql`
    SELECT group_id::text, user_id::text, display FROM group_members
    WHERE group_id = ANY(${sql.param(groupIds)}::uuid[]) ORDER BY group_id, created_at, user_id`);
  for (const row of rows)
    result.get(row.group_id)?.push({ id: row.user_id, display: row.display ?? undefined });
  return result;
}

export function renderGroup(row: GroupRow, members: MemberRef[] | undefined, baseUrl: string): Document {
  return {
    schemas: [GROUP_SCHEMA],
    id: row.id,
    ...(row.externalId ? { externalId: row.externalId } : {}),
    displayName: row.displayName,
    ...(members
      ? {
          members: members.map((m) => ({
            value: m.id,
            $ref: `${baseUrl}/Users/${m.id}`,
            type: 'User',
            ...(m.display ? { display: m.display } : {}),
          })),
        }
      : {}),
    meta: {
      resourceType: 'Group',
      created: row.createdAt.toISOString(),
      lastModified: row.updatedAt.toISOString(),
      location: `${baseUrl}/Groups/${row.id}`,
      version: etagOf(row.version),
    },
  };
}
