import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { desiredAccess } from '../reconcile/desired.js';
import {
  appRoleValues,
  assignmentsOf,
  directAssignments,
  loadRuleBook,
  type StoredAssignment,
} from '../reconcile/state.js';
import type { DesiredIndex } from './compare.js';

const PAGE = 10_000;

/**
 * What the IdP wants for every user of the tenant, by edge and by account key (users.user_name_key;
 * the scan folds platform accounts the same way, see account-keys.ts), computed with the reconciler's own
 * `desiredAccess` (one definition of "desired"). Users are read in keyset pages by id (the primary key
 * index), each with its groups and app roles; the pages are limited before the groups are gathered.
 */
export async function buildDesiredIndex(db: Database, tenantId: string): Promise<DesiredIndex> {
  const book = await loadRuleBook(db, tenantId);
  const index: DesiredIndex = { users: new Map(), enterprise: new Map(), teams: new Map(), apps: new Map() };
  let afterId = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const rows = await db.execute<{
      id: string;
      account: string;
      active: boolean;
      deprovisioned: boolean;
      groups: string[] | null;
      app_roles: unknown;
      assignments: StoredAssignment[] | null;
    }>(sql`
      WITH page AS (
        SELECT id, user_name_key, active, deprovisioned_at, app_roles FROM users
        WHERE tenant_id = ${tenantId} AND id > ${afterId}::uuid ORDER BY id LIMIT ${PAGE}
      )
      SELECT u.id::text, u.user_name_key AS account, u.active, u.deprovisioned_at IS NOT NULL AS deprovisioned,
        array_agg(g.display_name) FILTER (WHERE g.id IS NOT NULL) AS groups, u.app_roles,
        ${assignmentsOf(sql`u.id`)} AS assignments
      FROM page u LEFT JOIN group_members gm ON gm.user_id = u.id LEFT JOIN groups g ON g.id = gm.group_id
      GROUP BY u.id, u.user_name_key, u.active, u.deprovisioned_at, u.app_roles ORDER BY u.id`);
    for (const row of rows) {
      const offboarded = !row.active || row.deprovisioned;
      const known = index.users.get(row.account);
      // A deleted user's tombstone and a live user may share a userName: the live one speaks.
      if (known && !known.offboarded) continue;
      index.users.set(row.account, { userId: row.id, offboarded });
      const access = desiredAccess(
        {
          active: row.active,
          deprovisioned: row.deprovisioned,
          groups: row.groups ?? [],
          appRoles: appRoleValues(row.app_roles),
          assignments: directAssignments(row.assignments),
        },
        book,
      );
      if (access.enterprise) index.enterprise.set(row.account, access.enterprise.join(','));
      for (const [team, role] of access.teams) entryOf(index.teams, team).set(row.account, role);
      for (const [app, permissions] of access.apps) {
        entryOf(index.apps, app).set(row.account, permissions.join(','));
      }
    }
    if (rows.length < PAGE) return index;
    afterId = rows[rows.length - 1]!.id;
  }
}

function entryOf<V>(map: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let inner = map.get(key);
  if (!inner) {
    inner = new Map<string, V>();
    map.set(key, inner);
  }
  return inner;
}
