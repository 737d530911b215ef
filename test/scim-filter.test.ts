import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { ScimError } from '../src/scim/errors.js';
import { parseFilter } from '../src/scim/filter.js';
import { createGroup, createUser, ENTERPRISE, json } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

describe('filter parser', () => {
  it('keeps and/or/not as written, with not binding a whole group', () => {
    expect(parseFilter('userName eq "a" and not (title eq "b" or title eq "c")')).toEqual({
      kind: 'and',
      left: { kind: 'compare', path: { schema: undefined, names: ['userName'] }, operator: 'eq', value: 'a' },
      right: {
        kind: 'not',
        operand: {
          kind: 'or',
          left: {
            kind: 'compare',
            path: { schema: undefined, names: ['title'] },
            operator: 'eq',
            value: 'b',
          },
          right: {
            kind: 'compare',
            path: { schema: undefined, names: ['title'] },
            operator: 'eq',
            value: 'c',
          },
        },
      },
    });
  });

  it('gives and precedence over or', () => {
    const node = parseFilter('a eq 1 or b eq 2 and c eq 3');
    expect(node.kind).toBe('or');
    expect(node.kind === 'or' && node.right.kind).toBe('and');
  });

  it('reads value paths, URN-qualified names, unquoted values and case-insensitive operators', () => {
    expect(parseFilter('emails[type eq "work" and value co "@x.com"]').kind).toBe('valuePath');
    expect(parseFilter('emails[type eq "work"].value co "x"')).toMatchObject({
      kind: 'valuePath',
      filter: { kind: 'and', right: { kind: 'compare', operator: 'co', value: 'x' } },
    });
    expect(parseFilter(`${ENTERPRISE}:employeeNumber eq "7"`)).toMatchObject({
      path: { schema: ENTERPRISE, names: ['employeeNumber'] },
    });
    expect(parseFilter('meta.Created GT 2015-10-10T14:38:21.8617979-07:00')).toMatchObject({
      operator: 'gt',
      value: '2015-10-10T14:38:21.8617979-07:00',
    });
    expect(parseFilter('active eq True')).toMatchObject({ value: true });
    expect(parseFilter('title pr')).toMatchObject({ kind: 'present' });
    expect(parseFilter('displayName eq "Group (one) \\"quoted\\""')).toMatchObject({
      value: 'Group (one) "quoted"',
    });
  });

  it.each([
    '',
    'userName',
    'userName eq',
    'userName eq "a" or',
    'userName xx "a"',
    '(userName eq "a"',
    'not userName eq "a"',
    'userName eq "open',
    'a.b.c eq 1',
    'emails[type eq "work"',
  ])('rejects %j as invalidFilter', (text) => {
    try {
      parseFilter(text);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ScimError);
      expect((error as ScimError).scimType).toBe('invalidFilter');
    }
  });
});

describe('filters run in SQL with SCIM semantics', async () => {
  const server = await startScimServer();
  const ada = await createUser(server, 'Ada@Example.com', {
    title: 'Engineer',
    emails: [
      { value: 'ada@work.example', type: 'work', primary: true },
      { value: 'ada@home.example', type: 'home' },
    ],
    [ENTERPRISE]: { department: 'R&D', employeeNumber: '100' },
  });
  const bob = await createUser(server, 'bob@example.com', {
    title: 'Manager',
    emails: [{ value: 'bob@home.example', type: 'home' }],
  });
  const cy = await createUser(server, 'cy_100%@example.com', { active: false });

  const ids = async (filter: string) => {
    const body = await json(await server.request('GET', `/Users?filter=${encodeURIComponent(filter)}`));
    expect(typeof body.totalResults).toBe('number');
    return body.Resources.map((r: { id: string }) => r.id).sort();
  };
  const sorted = (...list: Record<string, any>[]) => list.map((u) => u.id).sort();

  it('matches userName case-insensitively and externalId case-exactly', async () => {
    expect(await ids('userName eq "ada@example.COM"')).toEqual(sorted(ada));
    expect(await ids('USERNAME sw "ADA"')).toEqual(sorted(ada));
  });

  it('applies not over a group correctly (De Morgan)', async () => {
    expect(await ids('not (title eq "Engineer" or title eq "Manager")')).toEqual(sorted(cy));
    expect(await ids('userName pr and not (title eq "engineer")')).toEqual(sorted(bob, cy));
  });

  it('requires both conditions of a value path to hold on the same element', async () => {
    expect(await ids('emails[type eq "work" and value co "home"]')).toEqual([]);
    expect(await ids('emails[type eq "home" and value co "bob"]')).toEqual(sorted(bob));
    expect(await ids('emails[type eq "work"].value co "ada@"')).toEqual(sorted(ada));
    expect(await ids('emails co "home.example"')).toEqual(sorted(ada, bob));
  });

  it('compares booleans, presence, enterprise attributes and timestamps', async () => {
    expect(await ids('active eq false')).toEqual(sorted(cy));
    expect(await ids('title pr')).toEqual(sorted(ada, bob));
    expect(await ids(`${ENTERPRISE}:department eq "r&d"`)).toEqual(sorted(ada));
    expect(await ids('meta.created gt "2000-01-01T00:00:00Z"')).toEqual(sorted(ada, bob, cy));
    expect(await ids('meta.lastModified lt "2000-01-01T00:00:00Z"')).toEqual([]);
  });

  it('matches meta.resourceType as shown, and refuses meta attributes it cannot compare', async () => {
    expect(await ids('meta.resourceType eq "User"')).toEqual(sorted(ada, bob, cy));
    expect(await ids('meta.resourceType eq "User" and title eq "Engineer"')).toEqual(sorted(ada));
    expect(await ids('meta.resourceType eq "user"')).toEqual([]); // caseExact (RFC 7643 §3.1)
    expect(await ids('meta.resourceType eq "Group"')).toEqual([]);
    const groups = await json(
      await server.request('GET', `/Groups?filter=${encodeURIComponent('meta.resourceType eq "Group"')}`),
    );
    expect(typeof groups.totalResults).toBe('number');
    for (const filter of ['meta.version eq "W/\\"1\\""', 'meta.location co "Users"', 'meta pr']) {
      for (const resource of ['Users', 'Groups']) {
        const response = await server.request('GET', `/${resource}?filter=${encodeURIComponent(filter)}`);
        expect(response.status, `${resource} ${filter}`).toBe(400);
        expect((await json(response)).scimType).toBe('invalidFilter');
      }
    }
  });

  it('compares meta.lastModified as it is shown, to the millisecond', async () => {
    // Stored to the microsecond, shown to the millisecond: ada and bob both show …07.123Z.
    const at = (id: string, stamp: string) =>
      server.database.db.execute(
        sql`UPDATE users SET updated_at = ${stamp}::timestamptz WHERE id = ${id}::uuid`,
      );
    await at(ada.id, '2026-03-04T05:06:07.123456Z');
    await at(bob.id, '2026-03-04T05:06:07.123999Z');
    await at(cy.id, '2026-03-04T05:06:07.124000Z');
    const shown = await json(await server.request('GET', `/Users/${ada.id}`));
    expect(shown.meta.lastModified).toBe('2026-03-04T05:06:07.123Z');
    const listed = await json(
      await server.request('GET', `/Users?filter=${encodeURIComponent(`id eq "${bob.id}"`)}`),
    );
    expect(listed.Resources[0].meta.lastModified).toBe('2026-03-04T05:06:07.123Z');

    const when = (operator: string, value: string) => ids(`meta.lastModified ${operator} "${value}"`);
    // A client that asks what changed after the value it was shown does not get the same users back.
    expect(await when('gt', shown.meta.lastModified)).toEqual(sorted(cy));
    expect(await when('eq', shown.meta.lastModified)).toEqual(sorted(ada, bob));
    expect(await when('ne', shown.meta.lastModified)).toEqual(sorted(cy));
    expect(await when('ge', shown.meta.lastModified)).toEqual(sorted(ada, bob, cy));
    expect(await when('le', shown.meta.lastModified)).toEqual(sorted(ada, bob));
    expect(await when('lt', '2026-03-04T05:06:07.124Z')).toEqual(sorted(ada, bob));
    expect(await when('le', '2026-03-04T07:06:07.123+02:00')).toEqual(sorted(ada, bob));
    // A value inside a millisecond: no shown value equals it, and it falls between …123 and …124.
    expect(await when('eq', '2026-03-04T05:06:07.1235Z')).toEqual([]);
    expect(await when('ne', '2026-03-04T05:06:07.1235Z')).toEqual(sorted(ada, bob, cy));
    expect(await when('gt', '2026-03-04T05:06:07.1235Z')).toEqual(sorted(cy));
    expect(await when('ge', '2026-03-04T05:06:07.1235Z')).toEqual(sorted(cy));
    expect(await when('lt', '2026-03-04T05:06:07.1235Z')).toEqual(sorted(ada, bob));
    expect(await when('le', '2026-03-04T05:06:07.1235Z')).toEqual(sorted(ada, bob));
    expect(await when('eq', '2026-03-04T05:06:07.123000Z')).toEqual(sorted(ada, bob));
    // The last millisecond a dateTime can name: the next one is past year 9999.
    expect(await when('le', '9999-12-31T23:59:59.999Z')).toEqual(sorted(ada, bob, cy));
    expect(await when('gt', '9999-12-31T23:59:59.999Z')).toEqual([]);
    expect(await when('ne', '9999-12-31T23:59:59.999Z')).toEqual(sorted(ada, bob, cy));
    // A time without an offset is UTC, whatever the server's time zone (the daemon runs in this process).
    const zone = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      expect(await when('eq', '2026-03-04T05:06:07.123')).toEqual(sorted(ada, bob));
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
  });

  it("compares a group's meta.lastModified as it is shown, to the millisecond", async () => {
    const group = await createGroup(server, 'Shown to the millisecond', [ada.id]);
    // A member change counted in a version slot is the group's latest change.
    await server.database.db.execute(
      sql`UPDATE groups SET updated_at = '2026-03-04T05:06:07.000001Z' WHERE id = ${group.id}::uuid`,
    );
    await server.database.db.execute(
      sql`UPDATE group_version_slots SET changed_at = '2026-03-04T05:06:08.500700Z' WHERE group_id = ${group.id}::uuid AND slot = 3`,
    );
    const shown = await json(await server.request('GET', `/Groups/${group.id}`));
    expect(shown.meta.lastModified).toBe('2026-03-04T05:06:08.500Z');
    const groupIds = async (filter: string) => {
      const body = await json(
        await server.request('GET', `/Groups?filter=${encodeURIComponent(filter)}&attributes=id`),
      );
      return (body.Resources ?? []).map((g: { id: string }) => g.id);
    };
    expect(await groupIds(`meta.lastModified eq "${shown.meta.lastModified}"`)).toEqual([group.id]);
    expect(await groupIds(`meta.lastModified gt "${shown.meta.lastModified}"`)).toEqual([]);
    expect(await groupIds(`meta.lastModified ge "${shown.meta.lastModified}"`)).toEqual([group.id]);
  });

  it('treats LIKE metacharacters in values literally', async () => {
    expect(await ids('userName co "_100%"')).toEqual(sorted(cy));
    expect(await ids('userName co "%"')).toEqual(sorted(cy));
  });

  it('pages in a stable order with integer totals', async () => {
    const first = await json(await server.request('GET', '/Users?startIndex=1&count=2'));
    const second = await json(await server.request('GET', '/Users?startIndex=3&count=2'));
    expect(first).toMatchObject({ totalResults: 3, itemsPerPage: 2, startIndex: 1 });
    expect(second).toMatchObject({ totalResults: 3, itemsPerPage: 1, startIndex: 3 });
    const all = [...first.Resources, ...second.Resources].map((r: { id: string }) => r.id).sort();
    expect(all).toEqual(sorted(ada, bob, cy));
    expect((await json(await server.request('GET', '/Users?count=0'))).Resources).toEqual([]);
  });

  it('projects attributes and excludedAttributes', async () => {
    const only = await json(
      await server.request('GET', `/Users/${ada.id}?attributes=userName,name.givenName`),
    );
    expect(Object.keys(only).sort()).toEqual(['id', 'name', 'schemas', 'userName']);
    expect(only.name).toEqual({ givenName: 'Given' });
    const work = await json(
      await server.request(
        'GET',
        `/Users/${ada.id}?attributes=${encodeURIComponent('emails[type eq "work"]')}`,
      ),
    );
    expect(work.emails).toEqual([{ value: 'ada@work.example', type: 'work', primary: true }]);
    const without = await json(
      await server.request('GET', `/Users/${ada.id}?excludedAttributes=emails,${ENTERPRISE}:department`),
    );
    expect(without.emails).toBeUndefined();
    expect(without[ENTERPRISE]).toEqual({ employeeNumber: '100' });
    expect(without.userName).toBe('Ada@Example.com');
  });
});
