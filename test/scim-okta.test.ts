import { describe, expect, it } from 'vitest';
import {
  createGroup,
  createUser,
  GROUP,
  json,
  memberIds,
  outboxFor,
  patch,
  USER,
} from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/** The request shapes Okta's SCIM client sends (Okta SCIM 2.0 provisioning guide). */
describe('Okta', async () => {
  const server = await startScimServer();

  it('checks existence with a userName filter and paging parameters', async () => {
    await createUser(server, 'existing@example.com');
    const found = await json(
      await server.request(
        'GET',
        `/Users?filter=${encodeURIComponent('userName eq "EXISTING@example.com"')}&startIndex=1&count=100`,
      ),
    );
    expect(found.totalResults).toBe(1);
    expect(found.Resources[0].userName).toBe('existing@example.com');
    const none = await json(
      await server.request(
        'GET',
        `/Users?filter=${encodeURIComponent('userName eq "nobody@example.com"')}&startIndex=1&count=100`,
      ),
    );
    expect(none).toMatchObject({ totalResults: 0, itemsPerPage: 0, startIndex: 1, Resources: [] });
  });

  it('creates with password and groups: [] and keeps neither', async () => {
    const created = await createUser(server, 'with.password@example.com', {
      password: 'hunter2!',
      groups: [],
    });
    expect(created.password).toBeUndefined();
    const [row] = await server.database.sql`SELECT attributes FROM users WHERE id = ${created.id}`;
    expect(JSON.stringify(row)).not.toContain('hunter2');
  });

  it('updates with a full PUT carrying id, meta, password and groups', async () => {
    const user = await createUser(server, 'put.me@example.com');
    const response = await server.request('PUT', `/Users/${user.id}`, {
      ...user,
      password: 'ignored',
      groups: [{ value: 'not-a-group' }],
      name: { givenName: 'New', familyName: 'Name' },
      title: 'Engineer',
    });
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(body).toMatchObject({
      id: user.id,
      name: { givenName: 'New', familyName: 'Name' },
      title: 'Engineer',
    });
    expect(body.meta.version).not.toBe(user.meta.version);
  });

  it('deactivates with a pathless replace {active:false}, queued in the deprovision lane', async () => {
    const user = await createUser(server, 'leaver@example.com');
    const response = await server.request(
      'PATCH',
      `/Users/${user.id}`,
      patch([{ op: 'replace', value: { active: false } }]),
    );
    expect(response.status).toBe(200);
    expect((await json(response)).active).toBe(false);
    const rows = await outboxFor(server, user.id);
    expect(rows.at(-1)).toMatchObject({
      lane: 'deprovision',
      cause: { event: 'user.deactivated', source: 'scim' },
    });
  });

  it('pushes a group: POST with members: [], then remove and add in one PATCH', async () => {
    const a = await createUser(server, 'push.a@example.com');
    const b = await createUser(server, 'push.b@example.com');
    const group = await createGroup(server, 'Okta Push', []);
    expect(group.members).toEqual([]);
    expect(
      (
        await server.request(
          'PATCH',
          `/Groups/${group.id}`,
          patch([{ op: 'add', path: 'members', value: [{ value: a.id }] }]),
        )
      ).status,
    ).toBe(204);
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([
        { op: 'remove', path: `members[value eq "${a.id}"]` },
        { op: 'add', path: 'members', value: [{ value: b.id, display: 'push.b@example.com' }] },
      ]),
    );
    expect(response.status).toBe(204);
    expect(await response.text()).toBe('');
    expect(await memberIds(server, group.id)).toEqual([b.id]);
    expect((await outboxFor(server, a.id)).at(-1)?.cause).toMatchObject({
      event: 'group.member_removed',
      groupId: group.id,
    });
  });

  it('replaces the member list wholesale with replace members (full push)', async () => {
    const users = await Promise.all(
      ['full.1', 'full.2', 'full.3'].map((n) => createUser(server, `${n}@example.com`)),
    );
    const group = await createGroup(server, 'Okta Full Push', [users[0]!.id, users[1]!.id]);
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([{ op: 'replace', path: 'members', value: [{ value: users[1]!.id }, { value: users[2]!.id }] }]),
    );
    expect(response.status).toBe(204);
    expect(await memberIds(server, group.id)).toEqual([users[1]!.id, users[2]!.id].sort());
  });

  it('renames a group with a pathless replace carrying id and displayName', async () => {
    const group = await createGroup(server, 'Old Okta Name');
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([{ op: 'replace', value: { id: group.id, displayName: 'New Okta Name' } }]),
    );
    expect(response.status).toBe(204);
    const fetched = await json(await server.request('GET', `/Groups/${group.id}`));
    expect(fetched.displayName).toBe('New Okta Name');
    expect((await outboxFor(server, group.id)).at(-1)).toMatchObject({
      subject_type: 'group',
      cause: { event: 'group.renamed', from: 'Old Okta Name', to: 'New Okta Name' },
    });
  });

  it('sends PUT /Groups/{id} with members (app-wizard apps)', async () => {
    const a = await createUser(server, 'wizard.a@example.com');
    const b = await createUser(server, 'wizard.b@example.com');
    const group = await createGroup(server, 'Wizard Group', [a.id]);
    const response = await server.request('PUT', `/Groups/${group.id}`, {
      schemas: [GROUP],
      id: group.id,
      displayName: 'Wizard Group',
      members: [{ value: b.id, display: 'wizard.b@example.com' }],
    });
    expect(response.status).toBe(200);
    expect((await json(response)).members).toEqual([
      { value: b.id, $ref: expect.stringContaining(b.id), type: 'User', display: 'wizard.b@example.com' },
    ]);
    expect(await memberIds(server, group.id)).toEqual([b.id]);
  });

  it('never sends a user DELETE, but re-activation with active:true is queued as a reconcile', async () => {
    const user = await createUser(server, 'returning@example.com');
    await server.request('PATCH', `/Users/${user.id}`, patch([{ op: 'replace', value: { active: false } }]));
    const response = await server.request('PUT', `/Users/${user.id}`, {
      schemas: [USER],
      userName: user.userName,
      active: true,
    });
    expect((await json(response)).active).toBe(true);
    expect((await outboxFor(server, user.id)).at(-1)).toMatchObject({
      lane: 'reconcile',
      cause: { event: 'user.reactivated' },
    });
  });
});
