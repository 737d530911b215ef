import { afterEach, describe, expect, it } from 'vitest';
import { BuiltinConnector } from '../src/platform/builtin.js';
import { reconcileUser } from '../src/reconcile/reconciler.js';
import { addRule } from '../src/reconcile/rules.js';
import { settleAnnouncements } from '../src/reconcile/untouched.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/*
 * A rule added at the moment a user joins its group: the rule's transaction lists the group's members
 * before the join commits, and the joiner's verdict reads the rules before the rule commits. Each must
 * not miss the other (src/reconcile/matching-lock.ts). The test holds addRule open after it has listed
 * the members (its audit row waits on a table lock held here), commits the join in that window, and
 * then asks the relay's quiet check and a reconcile job for a verdict.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Waits in this test's database only: pg_locks covers the whole cluster the test files share. */
async function waitingLocks(database: TestDatabase, kind: 'relation' | 'advisory'): Promise<number> {
  const [row] = await database.sql`
    SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype = ${kind}
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
  return row!.n;
}

/** A tenant with group Engineering and an active user not yet in it; addRule held before its commit. */
async function ruleHeldOpenWhileUserJoins() {
  const database = await createTestDatabase();
  cleanups.push(() => database.close());
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const [group] = await database.sql`
    INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'Engineering') RETURNING id::text`;
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'joiner@example.com', 'scim', true)
    RETURNING id::text`;

  const blocker = await database.sql.reserve();
  await blocker`BEGIN`;
  await blocker`LOCK TABLE audit_log IN SHARE MODE`;
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await blocker`COMMIT`;
    blocker.release();
  };
  cleanups.push(release);

  const ruleAdded = addRule(
    database.db,
    tenant.id,
    { target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' },
    'test',
  );
  // addRule has listed the group's members (nobody yet) and waits to write its audit row.
  await expect.poll(() => waitingLocks(database, 'relation'), { timeout: 10_000 }).toBe(1);

  // The join commits now, as a SCIM member add would: the membership and its outbox row.
  await database.sql`INSERT INTO group_members (tenant_id, group_id, user_id) VALUES (${tenant.id}, ${group!.id}, ${user!.id})`;
  const [announcement] = await database.sql`
    INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
    VALUES (${tenant.id}, 'reconcile', 'user', ${user!.id}, '{"event":"group.member_added"}')
    RETURNING id::text`;
  return {
    database,
    tenantId: tenant.id,
    userId: user!.id,
    outboxId: announcement!.id,
    ruleAdded,
    release,
  };
}

const inTeamCore = async (database: TestDatabase, tenantId: string) =>
  (
    await database.sql`
      SELECT count(*)::int AS n FROM platform_team_members m JOIN teams t ON t.id = m.team_id
      WHERE m.tenant_id = ${tenantId} AND t.name = 'core' AND m.account = 'joiner@example.com'`
  )[0]!.n;

describe('a rule added while a user joins its group', () => {
  it('the relay does not settle the joiner as untouched while the rule is uncommitted', async () => {
    const { database, tenantId, userId, outboxId, ruleAdded, release } = await ruleHeldOpenWhileUserJoins();

    const settled = await database.sql.begin((tx) =>
      settleAnnouncements(tx, [{ outboxId, tenantId, userId }]),
    );
    expect([...settled]).toEqual([]);
    const [row] = await database.sql`SELECT completed_at FROM outbox WHERE id = ${outboxId}`;
    expect(row!.completed_at).toBeNull();

    await release();
    await ruleAdded;
    // Once the rule has committed the joiner is judged to need a plan, and the event stays for a job.
    const after = await database.sql.begin((tx) => settleAnnouncements(tx, [{ outboxId, tenantId, userId }]));
    expect([...after]).toEqual([]);
  });

  it("the joiner's reconcile waits for the rule and grants what it gives", async () => {
    const { database, tenantId, userId, ruleAdded, release } = await ruleHeldOpenWhileUserJoins();
    const deps = { database, connectorFor: async () => new BuiltinConnector(database.db, tenantId) };

    let finished = false;
    const reconciled = reconcileUser(
      deps,
      tenantId,
      userId,
      { event: 'group.member_added' },
      'reconcile',
    ).then((result) => {
      finished = true;
      return result;
    });
    // It waits on the rule-matching lock instead of judging the user by the rules before the change.
    await expect.poll(() => waitingLocks(database, 'advisory'), { timeout: 10_000 }).toBe(1);
    expect(finished).toBe(false);

    await release();
    await ruleAdded;
    const result = await reconciled;
    expect(result.applied.map((a) => a.operation.kind)).toContain('add-team-member');
    expect(await inTeamCore(database, tenantId)).toBe(1);
  });

  it('a deprovision does not wait behind a rule change that a reconcile of the same user waits for', async () => {
    const database = await createTestDatabase();
    cleanups.push(() => database.close());
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const [user] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'leaver@example.com', 'scim', true)
      RETURNING id::text`;
    await database.sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
      VALUES (${tenant.id}, 'leaver@example.com', '{view}')`;
    const deps = { database, connectorFor: async () => new BuiltinConnector(database.db, tenant.id) };

    // A rule change in progress: it holds the tenant's rule-matching lock until it commits.
    const change = await database.sql.reserve();
    await change`BEGIN`;
    await change`SELECT pg_advisory_xact_lock(hashtextextended(${`rule-matching:${tenant.id}`}, 0))`;
    cleanups.push(async () => {
      await change`ROLLBACK`;
      change.release();
    });
    const reconciled = reconcileUser(deps, tenant.id, user!.id, { event: 'group.member_added' }, 'reconcile');
    await expect.poll(() => waitingLocks(database, 'advisory'), { timeout: 10_000 }).toBe(1);

    await database.sql`UPDATE users SET active = false WHERE id = ${user!.id}`;
    const deprovisioned = await reconcileUser(deps, tenant.id, user!.id, { event: 'user.deactivated' });
    expect(deprovisioned.offboarding).toBe(true);
    const [left] = await database.sql`
      SELECT count(*)::int AS n FROM platform_enterprise_members WHERE tenant_id = ${tenant.id}`;
    expect(left!.n).toBe(0);

    await change`COMMIT`;
    const after = await reconciled;
    expect(after.applied).toEqual([]);
  });

  it('a rule change does not wait for a relay batch that judged the tenant and is still open', async () => {
    const database = await createTestDatabase();
    cleanups.push(() => database.close());
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const [user] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'quiet@example.com', 'scim', true)
      RETURNING id::text`;
    const [announcement] = await database.sql`
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      VALUES (${tenant.id}, 'reconcile', 'user', ${user!.id}, '{"event":"user.created"}') RETURNING id::text`;

    const relay = await database.sql.reserve();
    cleanups.push(async () => relay.release());
    await relay`BEGIN`;
    // The relay's statements, then (as while it hands the rest of its batch to Redis) no commit yet.
    const settled = await settleAnnouncements(relay as never, [
      { outboxId: announcement!.id, tenantId: tenant.id, userId: user!.id },
    ]);
    expect([...settled]).toEqual([user!.id]);

    const rule = await addRule(
      database.db,
      tenant.id,
      { target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' },
      'test',
    );
    expect(rule.id).toBeTruthy();
    await relay`COMMIT`;
  });
});
