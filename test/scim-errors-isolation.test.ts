import { describe, expect, it } from 'vitest';
import { rotateScimToken } from '../src/tenants/tenants.js';
import { createGroup, createUser, json, memberIds, patch, USER } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

const SCIM_ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';

async function expectScimError(response: Response, status: number, scimType?: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toContain('application/scim+json');
  const body = await json(response);
  expect(body.schemas).toEqual([SCIM_ERROR]);
  expect(body.status).toBe(String(status));
  expect(typeof body.detail).toBe('string');
  expect(body.detail.length).toBeGreaterThan(0);
  if (scimType) expect(body.scimType).toBe(scimType);
  return body;
}

describe('SCIM authentication and tenant isolation', async () => {
  const server = await startScimServer();

  it('answers a missing or wrong token with 401 in SCIM error format', async () => {
    await expectScimError(await fetch(`${server.baseUrl}/Users`), 401);
    await expectScimError(
      await fetch(`${server.baseUrl}/Users`, { headers: { Authorization: `Bearer ${server.token}x` } }),
      401,
    );
    await expectScimError(
      await fetch(`${server.baseUrl}/Users`, { headers: { Authorization: 'Basic abc' } }),
      401,
    );
  });

  it('checks the secret on every request, and a rotated token stops working at once', async () => {
    const token = await server.createTenantToken('rotating');
    const call = (bearer: string) =>
      fetch(`${server.baseUrl}/Users`, { headers: { Authorization: `Bearer ${bearer}` } });
    expect((await call(token)).status).toBe(200);
    const last = token.at(-1) === 'A' ? 'B' : 'A';
    await expectScimError(await call(`${token.slice(0, -1)}${last}`), 401);
    const rotated = await rotateScimToken(server.database.db, 'rotating', 'test');
    // The NOTIFY reaches the server's cache in milliseconds, but on a loaded machine maybe not in 500 ms;
    // 2 s still ends well before the cache's 5 s TTL would drop the old token by itself.
    await expect.poll(async () => (await call(token)).status, { timeout: 2_000, interval: 20 }).toBe(401);
    expect((await call(rotated.scimToken)).status).toBe(200);
  });

  it('never lets one tenant see or change another tenant’s users and groups', async () => {
    const mine = await createUser(server, 'isolated@example.com');
    const group = await createGroup(server, 'Isolated Group', [mine.id]);
    const otherToken = await server.createTenantToken('other-tenant');
    const other = (method: string, path: string, body?: unknown) =>
      fetch(`${server.baseUrl}${path}`, {
        method,
        headers: { Authorization: `Bearer ${otherToken}`, 'Content-Type': 'application/scim+json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });

    expect((await json(await other('GET', '/Users'))).totalResults).toBe(0);
    expect(
      (
        await json(
          await other('GET', `/Users?filter=${encodeURIComponent('userName eq "isolated@example.com"')}`),
        )
      ).totalResults,
    ).toBe(0);
    await expectScimError(await other('GET', `/Users/${mine.id}`), 404);
    await expectScimError(
      await other('PUT', `/Users/${mine.id}`, { schemas: [USER], userName: 'stolen' }),
      404,
    );
    await expectScimError(
      await other('PATCH', `/Users/${mine.id}`, patch([{ op: 'replace', value: { active: false } }])),
      404,
    );
    await expectScimError(await other('DELETE', `/Users/${mine.id}`), 404);
    await expectScimError(await other('GET', `/Groups/${group.id}`), 404);
    await expectScimError(await other('DELETE', `/Groups/${group.id}`), 404);

    // The other tenant's own group cannot take in this tenant's user either.
    const theirs = await json(
      await other('POST', '/Groups', {
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
        displayName: 'Theirs',
      }),
    );
    await expectScimError(
      await other(
        'PATCH',
        `/Groups/${theirs.id}`,
        patch([{ op: 'add', path: 'members', value: [{ value: mine.id }] }]),
      ),
      400,
      'invalidValue',
    );
    // The same userName may exist in both tenants.
    expect(
      (await other('POST', '/Users', { schemas: [USER], userName: 'isolated@example.com' })).status,
    ).toBe(201);

    const still = await json(await server.request('GET', `/Users/${mine.id}`));
    expect(still).toMatchObject({ userName: 'isolated@example.com', active: true });
    expect(await memberIds(server, group.id)).toEqual([mine.id]);
  });
});

describe('bad input gets a precise SCIM error and changes nothing', async () => {
  const server = await startScimServer();
  const countUsers = async () =>
    Number((await server.database.sql`SELECT count(*)::int AS n FROM users`)[0]!.n);
  const countOutbox = async () =>
    Number((await server.database.sql`SELECT count(*)::int AS n FROM outbox`)[0]!.n);

  it('malformed JSON → 400 invalidSyntax', async () => {
    const before = await countUsers();
    await expectScimError(await server.request('POST', '/Users', '{"userName": "x",'), 400, 'invalidSyntax');
    expect(await countUsers()).toBe(before);
  });

  it('wrong schemas → 400 invalidSyntax', async () => {
    await expectScimError(
      await server.request('POST', '/Users', {
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
        userName: 'x',
      }),
      400,
      'invalidSyntax',
    );
  });

  it('missing userName and wrong value types → 400 invalidValue', async () => {
    await expectScimError(
      await server.request('POST', '/Users', { schemas: [USER], active: true }),
      400,
      'invalidValue',
    );
    await expectScimError(
      await server.request('POST', '/Users', { schemas: [USER], userName: 'typed', active: 'maybe' }),
      400,
      'invalidValue',
    );
    await expectScimError(
      await server.request('POST', '/Users', { schemas: [USER], userName: 'typed', emails: 'not-a-list' }),
      400,
      'invalidValue',
    );
  });

  it('duplicate userName in another case → 409 uniqueness', async () => {
    await createUser(server, 'unique.person@example.com');
    const before = await countOutbox();
    await expectScimError(
      await server.request('POST', '/Users', { schemas: [USER], userName: 'UNIQUE.person@example.com' }),
      409,
      'uniqueness',
    );
    expect(await countOutbox()).toBe(before);
  });

  it('invalid filters → 400 invalidFilter', async () => {
    for (const filter of [
      'userName eq',
      'userName xx "a"',
      'userName eq "a" or',
      '(userName eq "a"',
      'nosuch eq "a"',
      'meta.created gt "yesterday"',
    ]) {
      await expectScimError(
        await server.request('GET', `/Users?filter=${encodeURIComponent(filter)}`),
        400,
        'invalidFilter',
      );
    }
  });

  it('invalid PATCH paths → 400 invalidPath; a pathless remove → 400 noTarget; no change is half-written', async () => {
    const user = await createUser(server, 'patch.target@example.com');
    await expectScimError(
      await server.request(
        'PATCH',
        `/Users/${user.id}`,
        patch([
          { op: 'replace', path: 'displayName', value: 'Should Not Stick' },
          { op: 'replace', path: 'nosuchattribute', value: 'x' },
        ]),
      ),
      400,
      'invalidPath',
    );
    await expectScimError(
      await server.request('PATCH', `/Users/${user.id}`, patch([{ op: 'remove' }])),
      400,
      'noTarget',
    );
    await expectScimError(
      await server.request(
        'PATCH',
        `/Users/${user.id}`,
        patch([{ op: 'jump', path: 'active', value: true }]),
      ),
      400,
      'invalidSyntax',
    );
    const after = await json(await server.request('GET', `/Users/${user.id}`));
    expect(after.displayName).toBeUndefined();
    expect(after.meta.version).toBe(user.meta.version);
  });

  it('a body over 1 MiB → 413 in SCIM format', async () => {
    const huge = { schemas: [USER], userName: 'big', title: 'x'.repeat(1_100_000) };
    await expectScimError(await server.request('POST', '/Users', huge), 413);
  });

  it('If-Match with a stale version → 412, and the current one succeeds', async () => {
    const user = await createUser(server, 'etag@example.com');
    await server.request(
      'PATCH',
      `/Users/${user.id}`,
      patch([{ op: 'replace', path: 'title', value: 'First' }]),
    );
    await expectScimError(
      await server.request(
        'PATCH',
        `/Users/${user.id}`,
        patch([{ op: 'replace', path: 'title', value: 'Lost update' }]),
        {
          'If-Match': user.meta.version,
        },
      ),
      412,
    );
    const current = await json(await server.request('GET', `/Users/${user.id}`));
    const ok = await server.request(
      'PATCH',
      `/Users/${user.id}`,
      patch([{ op: 'replace', path: 'title', value: 'Second' }]),
      {
        'If-Match': current.meta.version,
      },
    );
    expect(ok.status).toBe(200);
    expect(ok.headers.get('etag')).not.toBe(current.meta.version);
  });

  it('DELETE leaves a tombstone: 404 afterwards, the audit keeps the history, the userName is free again', async () => {
    const user = await createUser(server, 'deleted.person@example.com');
    expect((await server.request('DELETE', `/Users/${user.id}`)).status).toBe(204);
    await expectScimError(await server.request('GET', `/Users/${user.id}`), 404);
    await expectScimError(await server.request('DELETE', `/Users/${user.id}`), 404);
    const audit = await server.database
      .sql`SELECT action FROM audit_log WHERE subject_id = ${user.id} ORDER BY id`;
    expect(audit.map((a) => a.action)).toEqual(['scim.user.created', 'scim.user.deleted']);
    const [tombstone] = await server.database.sql`SELECT deprovisioned_at FROM users WHERE id = ${user.id}`;
    expect(tombstone!.deprovisioned_at).not.toBeNull();
    expect(
      (await server.request('POST', '/Users', { schemas: [USER], userName: 'deleted.person@example.com' }))
        .status,
    ).toBe(201);
  });

  it('unknown attributes on PUT are ignored; resource names route case-insensitively', async () => {
    const user = await createUser(server, 'case.routes@example.com');
    const put = await server.request('PUT', `/users/${user.id}`, {
      schemas: [USER],
      userName: user.userName,
      favouriteColour: 'teal',
    });
    expect(put.status).toBe(200);
    expect((await json(put)).favouriteColour).toBeUndefined();
    expect((await server.request('GET', '/GROUPS')).status).toBe(200);
    expect((await server.request('GET', '/serviceproviderconfig')).status).toBe(200);
  });

  it('accepts application/json request bodies and answers application/scim+json', async () => {
    const response = await fetch(`${server.baseUrl}/Users`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ schemas: [USER], userName: 'plain.json@example.com' }),
    });
    expect(response.status).toBe(201);
    expect(response.headers.get('content-type')).toContain('application/scim+json');
    expect(response.headers.get('location')).toContain('/Users/');
  });
});
