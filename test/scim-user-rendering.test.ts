import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { createGroup, createUser, ENTERPRISE, USER } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * Issue 17: PostgreSQL renders each User's JSON text and the server splices it into responses as is, so
 * a change to how the SQL builds it (fewer jsonb merges, skipping the groups lookup) could change the
 * bytes clients receive. These pin the exact text, member order and spacing included, on each path: read by
 * id, a list page (two users sharing a group, one in none), `userName eq`, a filter that can match many,
 * a tenant without groups, a create, and `excludedAttributes=groups`.
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
  // Dave is in no group; bob shares Zeta with alice, so a page renders one group for two users.
  const daveCreated = await server.request('POST', '/Users', {
    schemas: [USER],
    userName: 'dave@example.com',
  });
  expect(daveCreated.status).toBe(201);
  const dave = (await daveCreated.json()) as { id: string };
  const zeta = await createGroup(server, 'Zeta', [alice.id, bob.id]);
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
    WHERE user_name IN ('bob@example.com', 'carol@example.com', 'dave@example.com')`;
  // Dave after bob, in a page's order (created_at, then id).
  await server.database.sql`
    UPDATE users SET created_at = '2026-01-02T03:04:05.070Z' WHERE user_name = 'dave@example.com'`;

  // Members kept in columns first, compact, in a fixed order; then the stored attributes as PostgreSQL
  // prints jsonb (keys shorter first, a space after each colon and comma).
  const meta = (id: string) =>
    id === alice.id
      ? `"meta":{"resourceType":"User","created":"2026-01-02T03:04:05.006Z","lastModified":"2026-02-03T04:05:06.070Z","location":"${scim}/Users/${id}","version":"W/\\"1\\""}`
      : `"meta":{"resourceType":"User","created":"2026-01-02T03:04:05.0${id === dave.id ? 7 : 6}0Z","lastModified":"2026-02-03T04:05:06.000Z","location":"${scim}/Users/${id}","version":"W/\\"1\\""}`;
  const group = (id: string, display: string) =>
    `{"value":"${id}","$ref":"${scim}/Groups/${id}","display":"${display}","type":"direct"}`;
  const coreSchema = '"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]';
  const aliceText =
    `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],` +
    `"id":"${alice.id}","userName":"alice@example.com","externalId":"00u-alice","active":true,${meta(alice.id)},` +
    `"groups":[${group(alpha.id, 'Alpha \\"α\\"')},${group(zeta.id, 'Zeta')}],` +
    `"name": {"givenName": "Given", "familyName": "Family"}, ` +
    `"emails": [{"type": "work", "value": "alice@example.com", "primary": true}], "displayName": "Alice \\"Al\\" Ånström", ` +
    `"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "boss-1"}, "department": "Engineering", "employeeNumber": "42"}}`;
  const bobText = `{${coreSchema},"id":"${bob.id}","userName":"bob@example.com","active":true,${meta(bob.id)},"groups":[${group(zeta.id, 'Zeta')}]}`;
  const daveText = `{${coreSchema},"id":"${dave.id}","userName":"dave@example.com","active":true,${meta(dave.id)},"groups":null}`;
  const carolText = `{${coreSchema},"id":"${carol.id}","userName":"carol@example.com","externalId":"ext-carol","active":true,${meta(carol.id)},"groups":null}`;
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
    expect(await text(`/Users/${dave.id}`)).toBe(daveText);
  });

  it('splices the same texts into list pages and userName filters', async () => {
    expect(await text('/Users')).toBe(listText(3, [aliceText, bobText, daveText]));
    expect(await text('/Users?startIndex=2&count=1')).toBe(
      listText(3, [bobText]).replace('"startIndex":1', '"startIndex":2'),
    );
    // A filter that can match many users (its values written into the statement, not prepared).
    expect(await text(`/Users?filter=${encodeURIComponent('active eq true')}`)).toBe(
      listText(3, [aliceText, bobText, daveText]),
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
    const created = bobCreatedText.replace(/"(created|lastModified)":"[^"]+"/g, '"$1":"…"');
    expect(created).toBe(
      `{${coreSchema},"id":"${bob.id}","userName":"bob@example.com","active":true,"meta":{"resourceType":"User","created":"…","lastModified":"…","location":"${scim}/Users/${bob.id}","version":"W/\\"1\\""}}`,
    );
    const compact = (resource: string) => JSON.stringify(JSON.parse(resource));
    const withoutGroups = (resource: string) => {
      const { groups: _groups, ...rest } = JSON.parse(resource) as Record<string, unknown>;
      return JSON.stringify(rest);
    };
    expect(await text('/Users?excludedAttributes=groups')).toBe(
      listText(3, [withoutGroups(aliceText), withoutGroups(bobText), withoutGroups(daveText)]),
    );
    expect(compact(aliceText)).not.toBe(withoutGroups(aliceText));
  });
});

describe('a rendered User', async () => {
  const server = await startScimServer();

  it('escapes every string it renders, whatever a row holds', async () => {
    // Written past the SCIM edge (which refuses control characters), as an import or a future writer might.
    const odd = 'q"u\\o\te\n\u0001 ö 😀 </script>';
    const [user] = await server.database.sql<{ id: string }[]>`
      INSERT INTO users (tenant_id, user_name, external_id, origin, attributes)
      VALUES (${server.tenantId}, ${`${odd}@example.com`}, ${odd}, 'scim', ${JSON.stringify({ displayName: odd, title: odd })}::jsonb)
      RETURNING id::text`;
    const [group] = await server.database.sql<{ id: string }[]>`
      INSERT INTO groups (tenant_id, display_name) VALUES (${server.tenantId}, ${odd}) RETURNING id::text`;
    await server.database.sql`
      INSERT INTO group_members (tenant_id, group_id, user_id) VALUES (${server.tenantId}, ${group!.id}, ${user!.id})`;

    const response = await server.request('GET', `/Users/${user!.id}`);
    expect(response.status).toBe(200);
    const text = await response.text();
    // json (unlike jsonb) keeps every member as written: no name may come twice.
    const [names] = await server.database.sql<{ all: number; distinct: number }[]>`
      SELECT count(*)::int AS all, count(DISTINCT k)::int AS distinct FROM json_object_keys(${text}::json) k`;
    expect(names!.all).toBe(names!.distinct);
    const rendered = JSON.parse(text) as Record<string, unknown>;
    expect(rendered).toMatchObject({
      id: user!.id,
      userName: `${odd}@example.com`,
      externalId: odd,
      displayName: odd,
      title: odd,
      groups: [{ value: group!.id, display: odd, type: 'direct' }],
    });
  });

  it('cannot hold, in attributes, a member rendered from a column', async () => {
    for (const key of ['schemas', 'id', 'userName', 'externalId', 'active', 'meta', 'groups']) {
      await expect(
        server.database.sql`
          INSERT INTO users (tenant_id, user_name, origin, attributes)
          VALUES (${server.tenantId}, ${`${key}@example.com`}, 'scim', ${JSON.stringify({ [key]: 'x' })}::jsonb)`,
      ).rejects.toMatchObject({ code: '23514', constraint_name: 'users_attributes_beside_columns' });
    }
    await expect(
      server.database.sql`
        INSERT INTO users (tenant_id, user_name, origin, attributes)
        VALUES (${server.tenantId}, 'array@example.com', 'scim', '[]'::jsonb)`,
    ).rejects.toMatchObject({ code: '23514' });
  });

  it('keeps the stored rendering current through every write, whatever the writing session sets', async () => {
    const user = await createUser(server, 'kept@example.com', {
      schemas: [USER, ENTERPRISE],
      externalId: 'ext-kept',
      [ENTERPRISE]: { department: 'Sales' },
    });
    const patched = await server.request('PATCH', `/Users/${user.id}`, {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
      Operations: [
        { op: 'replace', path: 'userName', value: 'renamed@example.com' },
        { op: 'replace', path: 'active', value: false },
        { op: 'remove', path: 'externalId' },
        { op: 'remove', path: ENTERPRISE },
        { op: 'add', path: 'title', value: 'Auditor' },
      ],
    });
    expect(patched.status).toBe(200);
    // The stored columns are computed in the writer's session: a zone and a date style far from UTC and
    // ISO must not reach the text (scim_timestamp, migration 0029, is declared immutable).
    await server.database.sql.begin(async (tx) => {
      await tx.unsafe("SET LOCAL TimeZone = 'Pacific/Chatham'");
      await tx.unsafe("SET LOCAL DateStyle = 'SQL, DMY'");
      await tx`UPDATE users SET updated_at = '2026-03-04T05:06:07.089Z' WHERE id = ${user.id}`;
    });
    const read = await server.request('GET', `/Users/${user.id}`);
    const rendered = JSON.parse(await read.text()) as Record<string, unknown>;
    expect(rendered).toMatchObject({
      schemas: [USER],
      userName: 'renamed@example.com',
      active: false,
      title: 'Auditor',
      meta: { lastModified: '2026-03-04T05:06:07.089Z' },
    });
    expect(rendered).not.toHaveProperty('externalId');
    expect(rendered).not.toHaveProperty(ENTERPRISE);
  });

  // Last: it changes the database's settings for the server's connections from here on.
  it('is valid JSON where standard_conforming_strings is off (a backslash in a plain literal then escapes)', async () => {
    const sql = server.database.sql;
    await sql.unsafe(`DO $$ BEGIN
      EXECUTE format('ALTER DATABASE %I SET standard_conforming_strings = off', current_database()); END $$`);
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()`;
    const fresh = postgres(server.database.url, { max: 1, onnotice: () => {} });
    expect((await fresh`SHOW standard_conforming_strings`)[0]!.standard_conforming_strings).toBe('off');
    await fresh.end();
    const created = await server.request('POST', '/Users', { schemas: [USER], userName: 'scs@example.com' });
    expect(created.status).toBe(201);
    const user = JSON.parse(await created.text()) as { id: string; meta: { version: string } };
    expect(user.meta.version).toBe('W/"1"');
    const read = await server.request('GET', `/Users/${user.id}`);
    expect(JSON.parse(await read.text())).toMatchObject({ id: user.id, meta: { version: 'W/"1"' } });
    const page = await server.request('GET', '/Users?count=100');
    expect((JSON.parse(await page.text()) as { Resources: unknown[] }).Resources.length).toBeGreaterThan(0);
  });
});
