import { describe, expect, it } from 'vitest';
import {
  createGroup,
  createUser,
  ENTERPRISE,
  json,
  memberIds,
  outboxFor,
  patch,
} from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/** The request shapes Microsoft Entra ID's provisioning service sends. */
describe('Microsoft Entra ID', async () => {
  const server = await startScimServer();

  it('uses capitalised op names and "False" as a string to deactivate', async () => {
    const user = await createUser(server, 'entra.leaver@example.com');
    const response = await server.request(
      'PATCH',
      `/Users/${user.id}`,
      patch([{ op: 'Replace', path: 'active', value: 'False' }]),
    );
    expect(response.status).toBe(200);
    expect((await json(response)).active).toBe(false);
    expect((await outboxFor(server, user.id)).at(-1)).toMatchObject({ lane: 'deprovision' });
  });

  it('creates a user with "active": "True" and "primary": "True" as strings', async () => {
    const user = await createUser(server, 'entra.strings@example.com', {
      active: 'True',
      emails: [{ value: 'entra.strings@example.com', type: 'work', primary: 'True' }],
    });
    expect(user.active).toBe(true);
    expect(user.emails[0].primary).toBe(true);
  });

  it('replaces emails[type eq "work"].value and name.familyName by path', async () => {
    const user = await createUser(server, 'entra.paths@example.com');
    const response = await server.request(
      'PATCH',
      `/Users/${user.id}`,
      patch([
        { op: 'Replace', path: 'emails[type eq "work"].value', value: 'renamed@example.com' },
        { op: 'Replace', path: 'name.familyName', value: 'Newfamily' },
      ]),
    );
    const body = await json(response);
    expect(body.emails).toEqual([{ value: 'renamed@example.com', type: 'work', primary: true }]);
    expect(body.name).toEqual({ givenName: 'Given', familyName: 'Newfamily' });
  });

  it('adds a work e-mail by filtered path when the user has none yet', async () => {
    const user = await createUser(server, 'entra.noemail@example.com', { emails: [] });
    const body = await json(
      await server.request(
        'PATCH',
        `/Users/${user.id}`,
        patch([{ op: 'Add', path: 'emails[type eq "work"].value', value: 'first@example.com' }]),
      ),
    );
    expect(body.emails).toEqual([{ type: 'work', value: 'first@example.com' }]);
  });

  it('sends a pathless replace with dotted and URN-qualified keys', async () => {
    const user = await createUser(server, 'entra.dotted@example.com');
    const body = await json(
      await server.request(
        'PATCH',
        `/Users/${user.id}`,
        patch([
          {
            op: 'Replace',
            value: {
              'name.givenName': 'Dotted',
              [`${ENTERPRISE}:employeeNumber`]: '701984',
              [`${ENTERPRISE}:department`]: 'Tour Operations',
            },
          },
        ]),
      ),
    );
    expect(body.name.givenName).toBe('Dotted');
    expect(body[ENTERPRISE]).toEqual({ employeeNumber: '701984', department: 'Tour Operations' });
    expect(body.schemas).toContain(ENTERPRISE);
  });

  it('sets the enterprise manager with a bare id string and clears it with ""', async () => {
    const manager = await createUser(server, 'entra.manager@example.com');
    const user = await createUser(server, 'entra.report@example.com');
    const set = await json(
      await server.request(
        'PATCH',
        `/Users/${user.id}`,
        patch([{ op: 'Add', path: `${ENTERPRISE}:manager`, value: manager.id }]),
      ),
    );
    expect(set[ENTERPRISE].manager).toEqual({ value: manager.id });
    const filtered = await json(
      await server.request(
        'GET',
        `/Users?filter=${encodeURIComponent(`${ENTERPRISE}:manager.value eq "${manager.id}"`)}`,
      ),
    );
    expect(filtered.Resources.map((r: { id: string }) => r.id)).toEqual([user.id]);
    const cleared = await json(
      await server.request(
        'PATCH',
        `/Users/${user.id}`,
        patch([{ op: 'Replace', path: `${ENTERPRISE}:manager`, value: '' }]),
      ),
    );
    expect(cleared[ENTERPRISE]?.manager).toBeUndefined();
  });

  it('removes a member with path "members" and a value list', async () => {
    const a = await createUser(server, 'entra.member.a@example.com');
    const b = await createUser(server, 'entra.member.b@example.com');
    const group = await createGroup(server, 'Entra Members', [a.id, b.id]);
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([{ op: 'Remove', path: 'members', value: [{ value: a.id }] }]),
    );
    expect(response.status).toBe(204);
    expect(await memberIds(server, group.id)).toEqual([b.id]);
  });

  it('looks groups up with excludedAttributes=members and a displayName filter', async () => {
    const a = await createUser(server, 'entra.lookup@example.com');
    const group = await createGroup(server, 'Entra Lookup', [a.id]);
    const body = await json(
      await server.request(
        'GET',
        `/Groups?excludedAttributes=members&filter=${encodeURIComponent('displayName eq "entra lookup"')}`,
      ),
    );
    expect(body.totalResults).toBe(1);
    expect(body.Resources[0].id).toBe(group.id);
    expect(body.Resources[0].members).toBeUndefined();
  });

  it('filters on externalId without quotes', async () => {
    const user = await createUser(server, 'jyoung@example.com', { externalId: 'jyoung' });
    const body = await json(
      await server.request('GET', `/Users?filter=${encodeURIComponent('externalId eq jyoung')}`),
    );
    expect(body.Resources.map((r: { id: string }) => r.id)).toEqual([user.id]);
  });

  it('gets 204 for a group rename', async () => {
    const group = await createGroup(server, 'Entra Before');
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([{ op: 'Replace', path: 'displayName', value: 'Entra After' }]),
    );
    expect(response.status).toBe(204);
  });

  it('creates a user with an app role (SingleAppRoleAssignment) and keeps it as sent', async () => {
    const roles = [{ primary: true, type: 'WindowsAzureActiveDirectoryRole', value: 'ADMIN' }];
    const user = await createUser(server, 'entra.approle@example.com', { roles });
    expect(user.roles).toEqual(roles);
    expect((await json(await server.request('GET', `/Users/${user.id}`))).roles).toEqual(roles);
  });

  it('adds app roles with PATCH Add, "True" as a string, and x509Certificates of any type', async () => {
    const user = await createUser(server, 'entra.addrole@example.com');
    const response = await server.request(
      'PATCH',
      `/Users/${user.id}`,
      patch([
        {
          op: 'Add',
          path: 'roles',
          value: [{ primary: 'True', type: 'WindowsAzureActiveDirectoryRole', value: 'Reader' }],
        },
        { op: 'Add', path: 'entitlements', value: [{ type: 'license', value: 'E5' }] },
        { op: 'Add', path: 'x509Certificates', value: [{ type: 'signing', value: 'TUlJQ2lqQ0NBWE' }] },
      ]),
    );
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(body.roles).toEqual([{ primary: true, type: 'WindowsAzureActiveDirectoryRole', value: 'Reader' }]);
    expect(body.entitlements).toEqual([{ type: 'license', value: 'E5' }]);
    expect(body.x509Certificates).toEqual([{ type: 'signing', value: 'TUlJQ2lqQ0NBWE' }]);
  });

  it('sustains well over 25 requests per second', async () => {
    // Measured on a shared machine: the best of up to three rounds, so a moment when other work had the
    // CPU does not count against the server; a server too slow is too slow in every round.
    let best = 0;
    for (let round = 0; round < 3 && best <= 25; round++) {
      const started = performance.now();
      const requests = Array.from({ length: 100 }, (_, i) =>
        server.request('GET', `/Users?filter=${encodeURIComponent(`userName eq "rate.${i}@example.com"`)}`),
      );
      const statuses = (await Promise.all(requests)).map((r) => r.status);
      expect(statuses.every((s) => s === 200)).toBe(true);
      best = Math.max(best, 100 / ((performance.now() - started) / 1000));
    }
    expect(best).toBeGreaterThan(25);
  });
});
