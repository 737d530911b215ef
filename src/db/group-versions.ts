import { type SQL, sql } from 'drizzle-orm';
import { GROUP_VERSION_SLOTS, groupVersionSlots } from './schema.js';

/**
 * The version slot a member change of the group bumps: any slot no other open transaction holds (SKIP
 * LOCKED), starting from the session's own; only when all are held does the change wait, on its own.
 */
export const freeVersionSlot = (groupId: SQL) => sql`COALESCE((
  SELECT s.slot FROM ${groupVersionSlots} s WHERE s.group_id = ${groupId}
  ORDER BY (s.slot - pg_backend_pid() % ${GROUP_VERSION_SLOTS} + ${GROUP_VERSION_SLOTS}) % ${GROUP_VERSION_SLOTS}
  LIMIT 1 FOR UPDATE SKIP LOCKED), pg_backend_pid() % ${GROUP_VERSION_SLOTS})`;

/**
 * Two CTEs (`version_slots_picked`, `member_changes_counted`) for a statement that changes memberships
 * outside SCIM's group writes (a SAML login's groups, a user's deprovisioning): each group in `changed`
 * (a query of `group_id`, duplicates allowed) counts one member change in a free slot, so its ETag and
 * lastModified move with its members (RFC 7644 §3.14) and a stale If-Match no longer matches.
 *
 * Each changed group is locked (`FOR KEY SHARE`, by id) before its slot is picked, as plain adds and
 * conditional writes lock the group before its slots: a PUT or If-Match write holding the group is
 * waited for before a slot is taken, so it never waits on a slot this statement holds. The slots are
 * picked once (MATERIALIZED) and stamped when written (`clock_timestamp()`: a statement that waited on a
 * lock stamps after the write it waited for, so lastModified moves). A group the statement itself created
 * has no slots yet (its trigger runs after the statement) and needs none: no one has seen an earlier
 * version.
 */
export const countMemberChanges = (changed: SQL) => sql`
  version_slots_picked AS MATERIALIZED (
    SELECT c.id AS group_id, ${freeVersionSlot(sql`c.id`)} AS slot
    FROM (
      SELECT g.id FROM groups g WHERE g.id IN (SELECT changed.group_id FROM (${changed}) AS changed)
      ORDER BY g.id FOR KEY SHARE
    ) AS c
  ), member_changes_counted AS (
    UPDATE ${groupVersionSlots} v SET changes = v.changes + 1, changed_at = clock_timestamp()
    FROM version_slots_picked p WHERE v.group_id = p.group_id AND v.slot = p.slot
    RETURNING v.group_id
  )`;
