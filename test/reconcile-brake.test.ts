import { describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { startReconcileTest } from './support/reconcile-setup.js';
import { patch } from './support/scim-fixtures.js';

describe('the mass-change brake', async () => {
  const { database, tenant, scim, admin, seedGroup } = await startReconcileTest();
  const members = async () =>
    Number(
      (
        await database.sql`SELECT count(*) AS n FROM platform_enterprise_members WHERE tenant_id = ${tenant.id}`
      )[0]!.n,
    );

  const { userIds: ids, groupId } = await seedGroup(
    'Everyone',
    Array.from({ length: 20 }, (_, i) => `p${i}@example.com`),
    [{ target: 'enterprise', idpGroup: 'Everyone', permissions: ['view'] }],
  );

  it('applies a change under the threshold (2 of 20 = 10 %, not more than 10 %)', async () => {
    await expect.poll(members, { timeout: 10_000 }).toBe(20);
    await scim(
      'PATCH',
      `/Groups/${groupId}`,
      patch([{ op: 'remove', path: `members[value eq "${ids[0]}" or value eq "${ids[1]}"]` }]),
    );
    await expect.poll(members, { timeout: 10_000 }).toBe(18);
  });

  it('holds a change that would remove more than 10 % of the Enterprise Account, until approved', async () => {
    const response = await scim(
      'PATCH',
      `/Groups/${groupId}`,
      patch([{ op: 'replace', path: 'members', value: [] }]),
    );
    expect(response.status).toBe(204);
    await expect
      .poll(async () => (await admin('GET', '/tenants/acme/changes')).body.changes, {
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
    await scim('PATCH', `/Users/${ids[5]}`, patch([{ op: 'replace', value: { active: false } }]));
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
