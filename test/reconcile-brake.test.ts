import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { GROUP, patch, USER } from './support/scim-fixtures.js';

const ADMIN = randomBytes(24).toString('hex');

describe('the mass-change brake', async () => {
  const database = await createTestDatabase();
  const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
  const { log } = capturingLogger('silent');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { adminToken: ADMIN }),
    log,
  });
  afterAll(() => daemon.stop());
  const base = `http://127.0.0.1:${daemon.port}`;
  const call = async (path: string, method: string, token: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return {
      status: response.status,
      body: response.status === 204 ? undefined : ((await response.json()) as any),
    };
  };
  const members = async () =>
    Number(
      (
        await database.sql`SELECT count(*) AS n FROM platform_enterprise_members WHERE tenant_id = ${tenant.id}`
      )[0]!.n,
    );

  await call('/api/tenants/acme/rules', 'POST', ADMIN, {
    target: 'enterprise',
    idpGroup: 'Everyone',
    permissions: ['view'],
  });
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    ids.push(
      (await call('/scim/v2/Users', 'POST', scimToken, { schemas: [USER], userName: `p${i}@example.com` }))
        .body.id,
    );
  }
  const group = await call('/scim/v2/Groups', 'POST', scimToken, {
    schemas: [GROUP],
    displayName: 'Everyone',
    members: ids.map((value) => ({ value })),
  });

  it('applies a change under the threshold (2 of 20 = 10 %, not more than 10 %)', async () => {
    await expect.poll(members, { timeout: 10_000 }).toBe(20);
    await call(
      `/scim/v2/Groups/${group.body.id}`,
      'PATCH',
      scimToken,
      patch([{ op: 'remove', path: `members[value eq "${ids[0]}" or value eq "${ids[1]}"]` }]),
    );
    await expect.poll(members, { timeout: 10_000 }).toBe(18);
  });

  it('holds a change that would remove more than 10 % of the Enterprise Account, until approved', async () => {
    const response = await call(
      `/scim/v2/Groups/${group.body.id}`,
      'PATCH',
      scimToken,
      patch([{ op: 'replace', path: 'members', value: [] }]),
    );
    expect(response.status).toBe(204);
    await expect
      .poll(async () => (await call('/api/tenants/acme/changes', 'GET', ADMIN)).body.changes, {
        timeout: 10_000,
      })
      .toEqual([
        expect.objectContaining({
          status: 'pending',
          event: 'group.member_removed',
          affectedUsers: 18,
          enterpriseSize: 18,
        }),
      ]);
    // Give the workers time to have processed all 18 jobs: nobody was removed.
    await expect
      .poll(async () => Number((await database.sql`SELECT count(*) AS n FROM held_change_users`)[0]!.n), {
        timeout: 10_000,
      })
      .toBe(18);
    expect(await members()).toBe(18);

    // An individual deactivation is never held.
    await call(
      `/scim/v2/Users/${ids[5]}`,
      'PATCH',
      scimToken,
      patch([{ op: 'replace', value: { active: false } }]),
    );
    await expect.poll(members, { timeout: 10_000 }).toBe(17);

    const changes = await runCli(['changes', '--tenant', 'acme'], { DATABASE_URL: database.url });
    const changeId = changes.stdout.split('\t')[0]!;
    expect(changes.stdout).toContain('pending\tgroup.member_removed\t18 of 18 Enterprise Account members');
    const approved = await runCli(['approve', changeId, '--tenant', 'acme'], { DATABASE_URL: database.url });
    expect(approved.stdout).toBe(`approved ${changeId}: 18 users queued for reconcile\n`);
    await expect.poll(members, { timeout: 10_000 }).toBe(0);
    const again = await runCli(['approve', changeId, '--tenant', 'acme'], { DATABASE_URL: database.url });
    expect(again.code).toBe(65);
  });
});
