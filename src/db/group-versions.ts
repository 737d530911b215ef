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
 * lastModified move with its members (RFC 7644 §3.14) and a stale If-Match no longer matches. The slots
 * are picked once, before any is bumped (MATERIALIZED). A group the statement itself created has no
 * slots yet (its trigger runs after the statement) and needs none: no one has seen an earlier version.
 * Nor, in the rare race, does one a concurrent login created after this statement's snapshot was taken.
 */
export const countMemberChanges = (changed: SQL) => sql`
  version_slots_picked AS MATERIALIZED (
    SELECT c.group_id, ${freeVersionSlot(sql`c.group_id`)} AS slot
    FROM (SELECT DISTINCT changed.group_id FROM (${changed}) AS changed) AS c
  ), member_changes_counted AS (
    UPDATE ${groupVersionSlots} v SET changes = v.changes + 1, changed_at = now()
    FROM version_slots_picked p WHERE v.group_id = p.group_id AND v.slot = p.slot
    RETURNING v.group_id
  )`;
