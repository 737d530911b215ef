import { describe, expect, it } from 'vitest';
import { BuiltinConnector } from '../src/platform/builtin.js';
import type { PlatformConnector } from '../src/platform/connector.js';
import { reconcileUser } from '../src/reconcile/reconciler.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/*
 * Issue 17: an event for a user no rule touches and who holds nothing costs one statement, without a
 * plan. The proof that the plan did not run: the connector (which every plan asks for) was never asked.
 * Everything that must be planned still is.
 */

const cause = { event: 'test', at: new Date().toISOString() };

async function setting() {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const t = tenant.id;
  await database.sql`INSERT INTO teams (tenant_id, name) VALUES (${t}, 'core')`;
  await database.sql`INSERT INTO groups (tenant_id, display_name) VALUES (${t}, 'engineering'), (${t}, 'Everyone'), (${t}, 'Straße')`;
  await database.sql`INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role)
    VALUES (${t}, 'ENGINEERING', 'team', 'core', 'member')`;
  let plans = 0;
  const connectorFor = async (): Promise<PlatformConnector> => {
    plans += 1;
    return new BuiltinConnector(database.db, t);
  };
  const user = async (userName: string, groups: string[], active = true) => {
    const [row] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${t}, ${userName}, 'scim', ${active}) RETURNING id::text`;
    const id = row!.id as string;
    await database.sql`INSERT INTO group_members (tenant_id, group_id, user_id)
      SELECT ${t}, id, ${id} FROM groups WHERE tenant_id = ${t} AND display_name = ANY(${groups})`;
    await database.sql`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id) VALUES (${t}, 'reconcile', 'user', ${id})`;
    return id;
  };
  const reconcile = async (id: string) => {
    const before = plans;
    const result = await reconcileUser({ database, connectorFor }, t, id, cause, 'reconcile');
    return { result, planned: plans > before };
  };
  return { database, tenantId: t, user, reconcile };
}

async function openRows(database: TestDatabase, id: string) {
  const [row] =
    await database.sql`SELECT count(*)::int AS n FROM outbox WHERE subject_id = ${id} AND completed_at IS NULL`;
  return row!.n as number;
}

async function edges(database: TestDatabase, account: string) {
  const [row] = await database.sql`
    SELECT (SELECT count(*) FROM platform_enterprise_members WHERE account = ${account})
         + (SELECT count(*) FROM platform_team_members WHERE account = ${account}) AS n`;
  return Number(row!.n);
}

describe('events for users no rule touches', () => {
  it('complete their outbox rows without a plan', async () => {
    const { database, user, reconcile } = await setting();
    const id = await user('nobody@example.com', ['Everyone']);
    const { result, planned } = await reconcile(id);
    expect(planned).toBe(false);
    expect(result.applied).toEqual([]);
    expect(await openRows(database, id)).toBe(0);
  });

  it('still plan a user a rule matches, whatever the case of the group name', async () => {
    const { database, user, reconcile } = await setting();
    const id = await user('Dev@Example.com', ['engineering', 'Everyone']);
    const { result, planned } = await reconcile(id);
    expect(planned).toBe(true);
    expect(result.applied.length).toBeGreaterThan(0);
    expect(await edges(database, 'dev@example.com')).toBe(2);
    expect(await openRows(database, id)).toBe(0);
    // Once granted, the user holds edges: the next event is planned again (and finds nothing to do).
    expect((await reconcile(id)).planned).toBe(true);
  });

  it('still plan a user with a direct assignment (a CSV import) and no granting group', async () => {
    const { database, tenantId, user, reconcile } = await setting();
    const id = await user('imported@example.com', ['Everyone']);
    await database.sql`INSERT INTO assignments (tenant_id, user_id, source, team_name, team_role)
      VALUES (${tenantId}, ${id}, 'import', 'core', 'member')`;
    expect((await reconcile(id)).planned).toBe(true);
    expect(await edges(database, 'imported@example.com')).toBe(2);
  });

  // In the reconcile lane (a late group.member_added, say): the deprovision lane always plans.
  it('never skip a deactivated user who holds edges, a live token, or an unfinished receipt', async () => {
    const { database, tenantId, user, reconcile } = await setting();
    const withEdges = await user('leaver@example.com', ['engineering']);
    await reconcile(withEdges);
    await database.sql`UPDATE users SET active = false WHERE id = ${withEdges}`;
    const offboarded = await reconcile(withEdges);
    expect(offboarded.planned).toBe(true);
    expect(offboarded.result.offboarding).toBe(true);
    expect(await edges(database, 'leaver@example.com')).toBe(0);

    const withToken = await user('token@example.com', ['Everyone'], false);
    await database.sql`INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash)
      VALUES (${tenantId}, ${withToken}, 'api', 'tok-1', 'h')`;
    expect((await reconcile(withToken)).planned).toBe(true);
    const [token] = await database.sql`SELECT revoked_at FROM tokens WHERE token_id = 'tok-1'`;
    expect(token!.revoked_at).not.toBeNull();

    const withReceipt = await user('receipt@example.com', ['Everyone'], false);
    await database.sql`INSERT INTO receipts (tenant_id, user_id, account, idp_event, idp_event_at)
      VALUES (${tenantId}, ${withReceipt}, 'receipt@example.com', 'user.deactivated', now())`;
    expect((await reconcile(withReceipt)).planned).toBe(true);
    const [receipt] = await database.sql`SELECT completed_at FROM receipts WHERE user_id = ${withReceipt}`;
    expect(receipt!.completed_at).not.toBeNull();
  });

  it('plan whenever a group name is not plain ASCII, where SQL and JavaScript lower-casing may differ', async () => {
    const { database, user, reconcile } = await setting();
    const inGroup = await user('plain@example.com', ['Straße']);
    expect((await reconcile(inGroup)).planned).toBe(true);
    expect(await openRows(database, inGroup)).toBe(0);
  });

  it('find the account by account_key(), as the sweeper does: any user name, any spelling on the platform', async () => {
    const { database, user, reconcile } = await setting();
    const accented = await user('zoë@example.com', ['Everyone']);
    expect((await reconcile(accented)).planned).toBe(false);
    // The platform spells "Straße" the way casefold() does: still their edge, so still planned.
    const folded = await user('Straße@example.com', ['Everyone']);
    const [owner] = await database.sql`SELECT tenant_id FROM users WHERE id = ${folded}`;
    await database.sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
      VALUES (${owner!.tenant_id}, 'strasse@example.com', '{view}')`;
    expect((await reconcile(folded)).planned).toBe(true);
  });

  it('wait for a reconcile of the same user in progress (they share its lock)', async () => {
    const { database, user, reconcile } = await setting();
    const id = await user('busy@example.com', ['Everyone']);
    const holder = await database.sql.reserve();
    await holder`SELECT pg_advisory_lock(hashtextextended(${`user:${id}`}, 0))`;
    let finished = false;
    const waiting = reconcile(id).then((outcome) => {
      finished = true;
      return outcome;
    });
    // Held until the lock is seen waited on in pg_locks (in this database: the view covers the whole
    // cluster the test files share): then the check is blocked, not done.
    for (;;) {
      const [row] = await database.sql`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'
        AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
      if (row!.n > 0) break;
    }
    expect(finished).toBe(false);
    await holder`SELECT pg_advisory_unlock(hashtextextended(${`user:${id}`}, 0))`;
    holder.release();
    expect((await waiting).planned).toBe(false);
  });
});
