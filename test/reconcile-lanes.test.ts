import { afterAll, describe, expect, it } from 'vitest';
import { addRule } from '../src/reconcile/rules.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { PATCH } from './support/scim-fixtures.js';

/*
 * Issue 17: a deprovision never waits behind a reconcile backlog. 600 users a rule grants access to are
 * queued for reconciling (full plans, on a worker of concurrency 2); a veteran deactivated after them is
 * offboarded while most of that backlog is still open.
 */

const { log } = capturingLogger('silent');

describe('lanes', () => {
  it('a deprovision sent behind a reconcile backlog is applied before the backlog drains', async () => {
    const database = await createTestDatabase();
    const { sql } = database;
    const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
    const t = tenant.id;
    await addRule(database.db, t, { target: 'team', idpGroup: 'Staff', team: 'core', role: 'member' }, 't');
    await sql`INSERT INTO teams (tenant_id, name) VALUES (${t}, 'core') ON CONFLICT DO NOTHING`;
    const [group] =
      await sql`INSERT INTO groups (tenant_id, display_name) VALUES (${t}, 'Staff') RETURNING id`;
    const [veteran] = await sql`
      INSERT INTO users (tenant_id, user_name, origin) VALUES (${t}, 'veteran@example.com', 'scim') RETURNING id::text`;
    await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions) VALUES (${t}, 'veteran@example.com', '{view}')`;
    await sql`INSERT INTO users (tenant_id, user_name, origin)
      SELECT ${t}, 'staff' || n || '@example.com', 'scim' FROM generate_series(1, 600) n`;
    await sql`INSERT INTO group_members (tenant_id, group_id, user_id)
      SELECT ${t}, ${group!.id}, id FROM users WHERE tenant_id = ${t} AND user_name LIKE 'staff%'`;
    await sql`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id)
      SELECT ${t}, 'reconcile', 'user', id::text FROM users WHERE tenant_id = ${t} AND user_name LIKE 'staff%'`;

    const prefix = uniquePrefix('lanes');
    const config = testConfig(database.url, { workerConcurrency: 2 });
    const worker = await startTestDaemon({ mode: 'worker', config, log, queuePrefix: prefix });
    const api = await startTestDaemon({ mode: 'serve', config, log, queuePrefix: prefix });
    afterAll(async () => {
      await api.stop();
      await worker.stop();
    });
    const openReconciles = async () =>
      Number(
        (
          await sql`SELECT count(*)::int AS n FROM outbox WHERE lane = 'reconcile' AND completed_at IS NULL`
        )[0]!.n,
      );
    // The backlog is being worked on before the deprovision arrives.
    await expect.poll(openReconciles, { timeout: 20_000 }).toBeLessThan(600);

    const response = await fetch(`http://127.0.0.1:${api.port}/scim/v2/Users/${veteran!.id}`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
      body: JSON.stringify({ schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] }),
    });
    expect(response.status).toBe(200);
    await expect
      .poll(
        async () =>
          Number(
            (
              await sql`SELECT count(*)::int AS n FROM platform_enterprise_members WHERE account = 'veteran@example.com'`
            )[0]!.n,
          ),
        { timeout: 20_000, interval: 20 },
      )
      .toBe(0);
    const left = await openReconciles();
    expect(left).toBeGreaterThan(300);
  }, 90_000);
});
