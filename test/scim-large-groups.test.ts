import { describe, expect, it } from 'vitest';
import { createGroup, json, memberIds, patch } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

describe('large groups', async () => {
  const server = await startScimServer();
  // Set-up data goes straight into the table: this file is about PATCH, not about creating users.
  const userIds = (
    await server.database.sql<{ id: string }[]>`
      INSERT INTO users (tenant_id, user_name, origin)
      SELECT ${server.tenantId}, 'bulk' || n || '@example.com', 'scim' FROM generate_series(1, 1100) AS n
      RETURNING id::text`
  ).map((r) => r.id);

  it('adds 1,000 members in one PATCH, announcing each to the reconciler, and answers 204 without the list', async () => {
    const group = await createGroup(server, 'Thousand');
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([{ op: 'add', path: 'members', value: userIds.slice(0, 1000).map((value) => ({ value })) }]),
    );
    expect(response.status).toBe(204);
    expect(await response.text()).toBe('');
    expect(await memberIds(server, group.id)).toHaveLength(1000);
    const [announced] = await server.database.sql`
      SELECT count(*)::int AS n FROM outbox WHERE cause->>'groupId' = ${group.id} AND cause->>'event' = 'group.member_added'`;
    expect(announced!.n).toBe(1000);

    // Adding members already there changes nothing and announces nothing.
    await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([{ op: 'add', path: 'members', value: [{ value: userIds[0] }] }]),
    );
    const [again] = await server.database.sql`
      SELECT count(*)::int AS n FROM outbox WHERE cause->>'groupId' = ${group.id}`;
    expect(again!.n).toBe(1000);
  });

  it('refuses more than 1,000 members in one request with 413 and a SCIM error naming the limit', async () => {
    const group = await createGroup(server, 'Too Many');
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([{ op: 'add', path: 'members', value: userIds.slice(0, 1001).map((value) => ({ value })) }]),
    );
    expect(response.status).toBe(413);
    const body = await json(response);
    expect(body).toMatchObject({ status: '413', schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'] });
    expect(body.detail).toContain('1000');
    expect(await memberIds(server, group.id)).toEqual([]);
    const config = await json(await server.request('GET', '/ServiceProviderConfig'));
    expect(config['urn:idsync:params:scim:limits'].maxMembersPerRequest).toBe(1000);
  });

  it('rejects a PATCH naming an unknown member as a whole: nothing is half-applied', async () => {
    const group = await createGroup(server, 'All Or Nothing');
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}`,
      patch([
        { op: 'add', path: 'members', value: [{ value: userIds[0] }] },
        { op: 'add', path: 'members', value: [{ value: '00000000-0000-4000-8000-000000000000' }] },
      ]),
    );
    expect(response.status).toBe(400);
    expect((await json(response)).scimType).toBe('invalidValue');
    expect(await memberIds(server, group.id)).toEqual([]);
  });

  it('returns the group with members after a PATCH only when asked', async () => {
    const group = await createGroup(server, 'Asked For');
    const response = await server.request(
      'PATCH',
      `/Groups/${group.id}?attributes=members`,
      patch([{ op: 'add', path: 'members', value: [{ value: userIds[5] }] }]),
    );
    expect(response.status).toBe(200);
    expect((await json(response)).members).toEqual([expect.objectContaining({ value: userIds[5] })]);
  });
});
