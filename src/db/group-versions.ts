import { type SQL, sql } from 'drizzle-orm';
import { changeStamp } from './change-stamp.js';
import type { Database } from './client.js';
import { GROUP_VERSION_SLOTS, groups, groupVersionSlots } from './schema.js';

/**
 * A group's version, as its ETag shows it: its row's version (attribute changes, conditional writes)
 * plus the member changes counted in its version slots. `group` names the row's columns.
 */
export const groupVersion = (group: { version: SQL; id: SQL }) =>
  sql`(${group.version} + COALESCE((SELECT sum(s.changes) FROM ${groupVersionSlots} s WHERE s.group_id = ${group.id}), 0))::int`;

/**
 * A group's lastModified: its row's (attribute changes, conditional writes) or its latest member change
 * counted in a slot, whichever is later. What the group shows as meta.lastModified and what a
 * `meta.lastModified` filter compares.
 */
export const groupLastModified = sql`GREATEST(${groups.updatedAt}, (SELECT max(s.changed_at) FROM ${groupVersionSlots} s WHERE s.group_id = ${groups.id}))`;

/**
 * The version slot a member change of the group bumps: any slot no other open transaction holds (SKIP
 * LOCKED), starting from the session's own; only when all are held does the change wait, on its own.
 */
export const freeVersionSlot = (groupId: SQL) => sql`COALESCE((
  SELECT s.slot FROM ${groupVersionSlots} s WHERE s.group_id = ${groupId}
  ORDER BY (s.slot - pg_backend_pid() % ${GROUP_VERSION_SLOTS} + ${GROUP_VERSION_SLOTS}) % ${GROUP_VERSION_SLOTS}
  LIMIT 1 FOR UPDATE SKIP LOCKED), pg_backend_pid() % ${GROUP_VERSION_SLOTS})`;

/**
 * Counts one member change in the version of each group in `groupIds`, for a transaction that changed
 * memberships outside SCIM's group writes (a SAML login's groups, a user's deprovisioning), right after
 * those writes: the group's ETag and lastModified move with its members (RFC 7644 §3.14), so a stale
 * If-Match no longer matches. One statement, and none when nothing changed (a returning login).
 *
 * Each group is locked (`FOR KEY SHARE`, by id) before its slot is picked, as plain adds and conditional
 * writes lock the group before its slots: a PUT or If-Match write holding the group is waited for before
 * a slot is taken, so it never waits on a slot this transaction holds. Slots are picked once
 * (MATERIALIZED) and stamped when written (changeStamp).
 */
export async function countMemberChanges(tx: Pick<Database, 'execute'>, groupIds: string[]): Promise<void> {
  if (groupIds.length === 0) return;
  await tx.execute(sql`
    WITH locked AS MATERIALIZED (
      SELECT g.id FROM groups g WHERE g.id = ANY(${sql.param([...new Set(groupIds)])}::uuid[]) ORDER BY g.id FOR KEY SHARE
    ), picked AS MATERIALIZED (
      SELECT locked.id AS group_id, ${freeVersionSlot(sql`locked.id`)} AS slot FROM locked
    )
    UPDATE ${groupVersionSlots} v SET changes = v.changes + 1, changed_at = ${changeStamp}
    FROM picked WHERE v.group_id = picked.group_id AND v.slot = picked.slot`);
}
