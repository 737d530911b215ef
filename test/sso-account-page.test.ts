import { describe, expect, it } from 'vitest';
import { completeAnnouncements, openAnnouncements } from '../src/jobs/outbox.js';
import { startSsoTest } from './support/sso-setup.js';

/*
 * Right after a JIT login the reconcile that grants the person's teams has not run yet (here it never
 * does: `serve` runs no worker). The account page must not tell them they have no teams.
 */
describe('the account page while access is being applied', async () => {
  const { database, tenant, publicUrl, browser, createIdp, trust } = await startSsoTest();
  const idp = await createIdp();
  await trust(idp);
  await database.sql`
    INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role)
    VALUES (${tenant.id}, 'Engineering', 'team', 'core', 'member')`;
  const page = (cookie: string) =>
    fetch(`${publicUrl}/sso/acme/me`, { headers: { Cookie: cookie } }).then((r) => r.text());

  it('says access is being applied, not "No teams.", until the reconcile has applied it', async () => {
    const response = await browser.post(
      await idp.respond({
        nameId: 'newcomer@example.com',
        inResponseTo: await browser.requestId(),
        attributes: { groups: ['Engineering'] },
      }),
    );
    expect(response.status).toBe(303);
    const cookie = response.headers.get('set-cookie')!.split(';')[0]!;
    const before = await page(cookie);
    expect(before).toContain('id="applying"');
    expect(before).toContain('<p id="teams">No teams yet.</p>');
    expect(before).not.toContain('No teams.');

    // What a worker does when its reconcile of the user is finished: the page stops saying it.
    const [user] = await database.sql`SELECT id::text FROM users WHERE user_name = 'newcomer@example.com'`;
    await completeAnnouncements(
      database.db,
      await openAnnouncements(database.db, tenant.id, 'user', user!.id),
    );
    const after = await page(cookie);
    expect(after).not.toContain('id="applying"');
    expect(after).toContain('<p id="teams">No teams.</p>');
  });
});
