import { describe, expect, it } from 'vitest';
import { startHerokuTest } from './support/heroku-setup.js';
import { GROUP, patch, USER } from './support/scim-fixtures.js';

/*
 * "Enterprise admins everywhere" on a simulated Heroku: an every-team rule makes its group's members
 * admins of every team Heroku lists, and of a team created on Heroku later, once a scan has read it.
 */
describe('every-team rules on the Heroku simulator', async () => {
  const { simulator, scim, scan } = await startHerokuTest({
    platform: (heroku) => {
      heroku.addTeam('alpha', [['keeper@example.com', 'admin']]);
      heroku.addTeam('beta', [['keeper@example.com', 'admin']]);
    },
    rules: [{ target: 'all-teams', idpGroup: 'EA Admins', role: 'admin' }],
  });
  const teamsOn = (email: string) =>
    simulator
      .grantsOf(email)
      .filter((g) => g.startsWith('team '))
      .sort();

  it('covers the teams a scan lists, and a team created on Heroku later after the next scan', async () => {
    await scan();
    const user = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'boss@example.com',
      active: true,
    });
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'EA Admins' });
    await scim(
      'PATCH',
      `/Groups/${group.body.id}`,
      patch([{ op: 'add', path: 'members', value: [{ value: user.body.id }] }]),
    );
    await expect
      .poll(() => teamsOn('boss@example.com'), { timeout: 30_000 })
      .toEqual(['team alpha', 'team beta']);

    simulator.addTeam('gamma', [['keeper@example.com', 'admin']]);
    await scan();
    await expect
      .poll(() => teamsOn('boss@example.com'), { timeout: 30_000 })
      .toEqual(['team alpha', 'team beta', 'team gamma']);
    expect(simulator.team('gamma')!.members.get(simulator.user('boss@example.com')!.id)?.role).toBe('admin');
    expect(simulator.violations).toEqual([]);
  });
});
