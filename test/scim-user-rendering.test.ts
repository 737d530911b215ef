import { describe, expect, it } from 'vitest';
import { createGroup, createUser, ENTERPRISE, USER } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * Issue 17: PostgreSQL renders each User's JSON text and the server splices it into responses as is, so
 * a change to how the SQL builds it (fewer jsonb merges, skipping the groups lookup) could change the
 * bytes clients receive. These pin the exact text, key order and spacing included, on each path: read by
 * id, a list page, `userName eq`, a tenant without groups, a create, and `excludedAttributes=groups`.
 * A user in no group has `"groups": null` (what the SQL has always rendered); a create has no `groups`.
 */
describe('the exact JSON text of a rendered User', async () => {
  const server = await startScimServer();
  const scim = 'http://127.0.0.1/scim/v2'; // the configured public URL: what `location` and `$ref` use

  const alice = await createUser(server, 'alice@example.com', {
    schemas: [USER, ENTERPRISE],
    externalId: '00u-alice',
    displayName: 'Alice "Al" Ånström',
    [ENTERPRISE]: { employeeNumber: '42', department: 'Engineering', manager: { value: 'boss-1' } },
  });
  const bobCreated = await server.request('POST', '/Users', { schemas: [USER], userName: 'bob@example.com' });
  expect(bobCreated.status).toBe(201);
  const bobCreatedText = await bobCreated.text();
  const bob = JSON.parse(bobCreatedText) as { id: string };
  const zeta = await createGroup(server, 'Zeta', [alice.id]);
  const alpha = await createGroup(server, 'Alpha "α"', [alice.id]);

  // A second tenant that has no group at all.
  const otherToken = await server.createTenantToken('no-groups');
  const asOther = (method: string, path: string, body?: unknown) =>
    fetch(`${server.baseUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${otherToken}`, 'Content-Type': 'application/scim+json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const carolCreated = await asOther('POST', '/Users', {
    schemas: [USER],
    userName: 'carol@example.com',
    externalId: 'ext-carol',
  });
  expect(carolCreated.status).toBe(201);
  const carol = (await carolCreated.json()) as { id: string };

  // Fixed timestamps, so the whole text is known (their format is part of what is pinned); alice first.
  await server.database.sql`
    UPDATE users SET created_at = '2026-01-02T03:04:05.006Z', updated_at = '2026-02-03T04:05:06.070Z'
    WHERE user_name = 'alice@example.com'`;
  await server.database.sql`
    UPDATE users SET created_at = '2026-01-02T03:04:05.060Z', updated_at = '2026-02-03T04:05:06Z'
    WHERE user_name IN ('bob@example.com', 'carol@example.com')`;

  const meta = (id: string) =>
    id === alice.id
      ? `"meta": {"created": "2026-01-02T03:04:05.006Z", "version": "W/\\"1\\"", "location": "${scim}/Users/${id}", "lastModified": "2026-02-03T04:05:06.070Z", "resourceType": "User"}`
      : `"meta": {"created": "2026-01-02T03:04:05.060Z", "version": "W/\\"1\\"", "location": "${scim}/Users/${id}", "lastModified": "2026-02-03T04:05:06.000Z", "resourceType": "User"}`;
  const group = (id: string, display: string) =>
    `{"$ref": "${scim}/Groups/${id}", "type": "direct", "value": "${id}", "display": "${display}"}`;
  const aliceText =
    `{"id": "${alice.id}", ${meta(alice.id)}, "name": {"givenName": "Given", "familyName": "Family"}, "active": true, ` +
    `"emails": [{"type": "work", "value": "alice@example.com", "primary": true}], ` +
    `"groups": [${group(alpha.id, 'Alpha \\"α\\"')}, ${group(zeta.id, 'Zeta')}], ` +
    `"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"], ` +
    `"userName": "alice@example.com", "externalId": "00u-alice", "displayName": "Alice \\"Al\\" Ånström", ` +
    `"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "boss-1"}, "department": "Engineering", "employeeNumber": "42"}}`;
  const bobText = `{"id": "${bob.id}", ${meta(bob.id)}, "active": true, "groups": null, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob@example.com"}`;
  const carolText = `{"id": "${carol.id}", ${meta(carol.id)}, "active": true, "groups": null, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "carol@example.com", "externalId": "ext-carol"}`;
  const listText = (total: number, resources: string[]) =>
    `{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":${total},"itemsPerPage":${resources.length},"startIndex":1,"Resources":[${resources.join(',')}]}`;
  const text = async (path: string) => {
    const response = await server.request('GET', path);
    expect(response.status).toBe(200);
    return response.text();
  };

  it('renders a user read by id, with externalId, the enterprise extension and groups, and without', async () => {
    expect(await text(`/Users/${alice.id}`)).toBe(aliceText);
    expect(await text(`/Users/${bob.id}`)).toBe(bobText);
  });

  it('splices the same texts into list pages and userName filters', async () => {
    expect(await text('/Users')).toBe(listText(2, [aliceText, bobText]));
    expect(await text('/Users?startIndex=2&count=1')).toBe(
      listText(2, [bobText]).replace('"startIndex":1', '"startIndex":2'),
    );
    expect(await text(`/Users?filter=${encodeURIComponent('userName eq "alice@example.com"')}`)).toBe(
      listText(1, [aliceText]),
    );
  });

  it('renders "groups": null in a tenant that has no group', async () => {
    const page = await asOther('GET', '/Users');
    expect(await page.text()).toBe(listText(1, [carolText]));
    expect(await (await asOther('GET', `/Users/${carol.id}`)).text()).toBe(carolText);
  });

  it('answers a create without groups, and a projection without groups re-serialised compactly', async () => {
    const created = bobCreatedText.replace(/"(created|lastModified)": "[^"]+"/g, '"$1": "…"');
    expect(created).toBe(
      `{"id": "${bob.id}", "meta": {"created": "…", "version": "W/\\"1\\"", "location": "${scim}/Users/${bob.id}", "lastModified": "…", "resourceType": "User"}, "active": true, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob@example.com"}`,
    );
    const compact = (resource: string) => JSON.stringify(JSON.parse(resource));
    const withoutGroups = (resource: string) => {
      const { groups: _groups, ...rest } = JSON.parse(resource) as Record<string, unknown>;
      return JSON.stringify(rest);
    };
    expect(await text('/Users?excludedAttributes=groups')).toBe(
      listText(2, [withoutGroups(aliceText), withoutGroups(bobText)]),
    );
    expect(compact(aliceText)).not.toBe(withoutGroups(aliceText));
  });
});
