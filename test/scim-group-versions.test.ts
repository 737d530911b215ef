import { describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { patchGroup } from '../src/scim/groups.js';
import { readPatchRequest } from '../src/scim/patch.js';
import { latch } from './support/latch.js';
import { createGroup, json, memberIds, patch } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * A group's ETag changes on every member change (RFC 7644 §3.14), yet single-member adds to one hot group
 * must not queue behind each other's commits on the group row.
 */
describe('group versions under concurrent member changes', async () => {
  const server = await startScimServer();
  const userIds = (
    await server.database.sql<{ id: string }[]>`
      INSERT INTO users (tenant_id, user_name, origin)
      SELECT ${server.tenantId}, 'member' || n || '@example.com', 'scim' FROM generate_series(1, 60) AS n
      RETURNING id::text`
  ).map((r) => r.id);
  const addOne = (groupId: string, userId: string, headers: Record<string, string> = {}) =>
    server.request(
      'PATCH',
      `/Groups/${groupId}`,
      patch([{ op: 'add', path: 'members', value: [{ value: userId }] }]),
      headers,
    );
  const versionOf = async (groupId: string) => {
    const response = await server.request('GET', `/Groups/${groupId}`);
    const body = await json(response);
    expect(response.headers.get('ETag')).toBe(body.meta.version);
    return body.meta as { version: string; lastModified: string };
  };
  const versionNumber = (etag: string) => Number(/^W\/"(\d+)"$/.exec(etag)![1]);

  it('counts every one of 40 concurrent single-member adds in the version, and keeps every member', async () => {
    const group = await createGroup(server, 'Hot');
    const before = versionNumber((await versionOf(group.id)).version);
    const responses = await Promise.all(userIds.slice(0, 40).map((id) => addOne(group.id, id)));
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 204));
    expect(await memberIds(server, group.id)).toHaveLength(40);
    expect(versionNumber((await versionOf(group.id)).version)).toBe(before + 40);
  });

  it('changes the ETag and lastModified on a member change, refuses the stale ETag with 412 and takes the current one', async () => {
    const group = await createGroup(server, 'Conditional');
    const first = await versionOf(group.id);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const added = await addOne(group.id, userIds[40]!);
    expect(added.status).toBe(204);
    const second = await versionOf(group.id);
    expect(added.headers.get('ETag')).toBe(second.version);
    expect(second.version).not.toBe(first.version);
    expect(Date.parse(second.lastModified)).toBeGreaterThan(Date.parse(first.lastModified));

    const stale = await addOne(group.id, userIds[41]!, { 'If-Match': first.version });
    expect(stale.status).toBe(412);
    expect(await memberIds(server, group.id)).toEqual([userIds[40]]);

    const current = await addOne(group.id, userIds[41]!, { 'If-Match': second.version });
    expect(current.status).toBe(204);
    expect(current.headers.get('ETag')).toBe((await versionOf(group.id)).version);
    expect(versionNumber(current.headers.get('ETag')!)).toBe(versionNumber(second.version) + 1);

    // PUT and DELETE are conditional on the same version.
    const put = await server.request(
      'PUT',
      `/Groups/${group.id}`,
      { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'Conditional 2' },
      { 'If-Match': second.version },
    );
    expect(put.status).toBe(412);
    const removed = await server.request('DELETE', `/Groups/${group.id}`, undefined, {
      'If-Match': (await versionOf(group.id)).version,
    });
    expect(removed.status).toBe(204);
  });

  it('adds members while another member add to the same group is still uncommitted', async () => {
    const group = await createGroup(server, 'Not Serialised');
    // The real member add (one statement), held open inside a transaction before its COMMIT.
    const gate = latch();
    const holding = latch();
    const session = await server.database.sql.reserve();
    const heldDatabase = {
      $client: {
        unsafe: async (query: string, parameters: never[]) => {
          await session`BEGIN`;
          const rows = await session.unsafe(query, parameters);
          holding.open();
          await gate.opened;
          await session`COMMIT`;
          session.release();
          return rows;
        },
      },
    } as unknown as Database;
    const heldAdd = patchGroup(
      heldDatabase,
      server.tenantId,
      group.id,
      readPatchRequest(patch([{ op: 'add', path: 'members', value: [{ value: userIds[50] }] }])),
      undefined,
      { actor: 'test', correlationId: undefined },
    );
    await holding.opened;

    // Five more adds from the server's own connections: each takes a version slot no open transaction
    // holds, so none waits for the held add (with a lock on the group row, or a slot per session, some would).
    const finishedWhileHeld: number[] = [];
    const adds = userIds.slice(51, 56).map(async (id) => {
      const response = await addOne(group.id, id);
      finishedWhileHeld.push(response.status);
      return response.status;
    });
    await expect.poll(() => finishedWhileHeld.length, { timeout: 5_000 }).toBe(5);
    expect(finishedWhileHeld).toEqual([204, 204, 204, 204, 204]);
    gate.open();
    await heldAdd;
    expect(await Promise.all(adds)).toEqual([204, 204, 204, 204, 204]);
    expect((await memberIds(server, group.id)).sort()).toEqual(userIds.slice(50, 56).sort());
  });

  it('writes, in one statement, what the general path writes for an add — or nothing at all', async () => {
    const plain = await createGroup(server, 'Plain Add');
    const general = await createGroup(server, 'General Add');
    const written = async (groupId: string) => {
      const outbox = await server.database.sql`
        SELECT lane, subject_type, subject_id, cause - 'at' - 'groupId' - 'correlationId' AS cause
        FROM outbox WHERE cause->>'groupId' = ${groupId} ORDER BY subject_id`;
      const audit = await server.database.sql`
        SELECT actor, action, subject_type, before, after - 'displayName' AS after
        FROM audit_log WHERE subject_id = ${groupId} AND action = 'scim.group.patched' ORDER BY id`;
      return { outbox, audit };
    };
    const members = [{ value: userIds[56] }, { value: userIds[57] }];
    expect(
      (
        await server.request(
          'PATCH',
          `/Groups/${plain.id}`,
          patch([{ op: 'add', path: 'members', value: members }]),
        )
      ).status,
    ).toBe(204);
    // If-Match makes it conditional: the general path, in a transaction.
    const etag = (await versionOf(general.id)).version;
    const conditional = await server.request(
      'PATCH',
      `/Groups/${general.id}`,
      patch([{ op: 'add', path: 'members', value: members }]),
      { 'If-Match': etag },
    );
    expect(conditional.status).toBe(204);
    const [fromPlain, fromGeneral] = [await written(plain.id), await written(general.id)];
    expect(fromPlain.outbox).toHaveLength(2);
    expect(fromPlain.outbox).toEqual(fromGeneral.outbox);
    expect(fromPlain.audit).toEqual(fromGeneral.audit);
    expect(fromPlain.audit[0]!.after.membersAdded.sort()).toEqual([userIds[56], userIds[57]].sort());

    // A member that is no user of the tenant: 400 and nothing written, not even the valid member.
    const before = await versionOf(plain.id);
    const refused = await server.request(
      'PATCH',
      `/Groups/${plain.id}`,
      patch([
        {
          op: 'add',
          path: 'members',
          value: [{ value: userIds[58] }, { value: '00000000-0000-4000-8000-000000000000' }],
        },
      ]),
    );
    expect(refused.status).toBe(400);
    expect((await json(refused)).scimType).toBe('invalidValue');
    expect((await versionOf(plain.id)).version).toBe(before.version);
    expect((await written(plain.id)).audit).toHaveLength(1);
    expect(await memberIds(server, plain.id)).not.toContain(userIds[58]);
    const missing = await server.request(
      'PATCH',
      '/Groups/00000000-0000-4000-8000-000000000001',
      patch([{ op: 'add', path: 'members', value: [{ value: userIds[58] }] }]),
    );
    expect(missing.status).toBe(404);
  });
});
