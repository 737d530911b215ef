import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { desiredAccess, RuleBook } from '../reconcile/desired.js';
import { loadRules } from '../reconcile/state.js';
import type { DesiredIndex } from './compare.js';

const PAGE = 10_000;

/**
 * What the IdP wants for every user of the tenant, by edge, computed with the reconciler's own
 * `desiredAccess` (one definition of "desired"). Users are read in keyset pages, each with its groups.
 */
export async function buildDesiredIndex(db: Database, tenantId: string): Promise<DesiredIndex> {
  const book = new RuleBook(await loadRules(db, tenantId));
  const index: DesiredIndex = { users: new Map(), enterprise: new Map(), teams: new Map(), apps: new Map() };
  let after = '';
  let afterId = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const rows = await db.execute<{
      id: string;
      account: string;
      active: boolean;
      deprovisioned: boolean;
      groups: string[] | null;
    }>(sql`
      SELECT u.id::text, lower(u.user_name) AS account, u.active, u.deprovisioned_at IS NOT NULL AS deprovisioned,
        (SELECT array_agg(g.display_name) FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = u.id) AS groups
      FROM users u
      WHERE u.tenant_id = ${tenantId} AND (lower(u.user_name), u.id) > (${after}, ${afterId}::uuid)
      ORDER BY lower(u.user_name), u.id LIMIT ${PAGE}`);
    for (const row of rows) {
      const offboarded = !row.active || row.deprovisioned;
      const known = index.users.get(row.account);
      // A deleted user's tombstone and a live user may share a userName: the live one speaks.
      if (known && !known.offboarded) continue;
      index.users.set(row.account, { userId: row.id, offboarded });
      const access = desiredAccess(
        { active: row.active, deprovisioned: row.deprovisioned, groups: row.groups ?? [] },
        book,
      );
      if (access.enterprise) index.enterprise.set(row.account, access.enterprise.join(','));
      for (const [team, role] of access.teams) entryOf(index.teams, team).set(row.account, role);
      for (const [app, permissions] of access.apps) {
        entryOf(index.apps, app).set(row.account, permissions.join(','));
      }
    }
    if (rows.length < PAGE) return index;
    after = rows[rows.length - 1]!.account;
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
