import { describe, expect, it } from 'vitest';
import { Sweeper } from '../src/jobs/sweeper.js';
import { BuiltinConnector } from '../src/platform/builtin.js';
import { reconcileUser } from '../src/reconcile/reconciler.js';
import { completeIfUntouched } from '../src/reconcile/untouched.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

/*
 * The sweeper, seats and drift find a user's platform edges by account_key(); the reconciler must find
 * the same ones, or a leaver whose names fold differently (ß vs ss on PostgreSQL 18's casefold, which
 * JavaScript's toLowerCase does not do) keeps access while the sweeper re-queues them forever.
 */
describe('a platform account that differs from the SCIM userName only by folding', () => {
  it('is removed at deactivation, the receipt completes, and the sweeper then queues nothing', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const [user] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin, active, deactivated_at)
      VALUES (${tenant.id}, 'Straße@example.com', 'scim', false, now() - interval '1 hour')
      RETURNING id::text, user_name_key`;
    expect(user!.user_name_key).toBe('strasse@example.com');
    // The platform knows the person as "strasse@example.com": a name JavaScript lower-casing never yields.
    await database.sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
      VALUES (${tenant.id}, 'strasse@example.com', '{view}')`;
    await database.sql`
      WITH t AS (INSERT INTO teams (tenant_id, name) VALUES (${tenant.id}, 'core') RETURNING id)
      INSERT INTO platform_team_members (tenant_id, team_id, account, role)
      SELECT ${tenant.id}, t.id, 'strasse@example.com', 'member' FROM t`;
    await database.sql`
      WITH a AS (INSERT INTO apps (tenant_id, name) VALUES (${tenant.id}, 'api') RETURNING id)
      INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions)
      SELECT ${tenant.id}, a.id, 'strasse@example.com', '{view}' FROM a`;

    // The quiet path must not declare this user untouched: they hold edges.
    expect(await completeIfUntouched(database.sql, tenant.id, user!.id)).toBe(false);

    const deps = { database, connectorFor: async () => new BuiltinConnector(database.db, tenant.id) };
    const result = await reconcileUser(deps, tenant.id, user!.id, {
      event: 'user.deactivated',
      at: new Date().toISOString(),
    });
    expect(result.applied.map((a) => [a.operation.kind, a.outcome.status]).sort()).toEqual([
      ['remove-team-member', 'applied'],
      ['revoke-app-access', 'applied'],
      ['revoke-enterprise', 'applied'],
    ]);
    const [left] = await database.sql`
      SELECT (SELECT count(*) FROM platform_enterprise_members) + (SELECT count(*) FROM platform_team_members)
        + (SELECT count(*) FROM platform_app_collaborators) AS n`;
    expect(Number(left!.n)).toBe(0);
    const receipts = await database.sql`
      SELECT completed_at IS NOT NULL AS complete,
        (SELECT count(*)::int FROM receipt_edges e WHERE e.receipt_id = r.id) AS edges
      FROM receipts r WHERE r.user_id = ${user!.id}`;
    expect(receipts).toEqual([{ complete: true, edges: 3 }]);

    await database.sql`UPDATE outbox SET completed_at = now() - interval '1 hour', created_at = now() - interval '1 hour'`;
    const sweeper = new Sweeper({
      database,
      log: capturingLogger('silent').log,
      intervalMs: 0,
      graceMs: 1_000,
    });
    expect(await sweeper.sweepOnce()).toMatchObject({ swept: true, offboardingsQueued: 0 });
  });
});
