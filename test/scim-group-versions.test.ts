import { describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { patchGroup } from '../src/scim/groups.js';
import { readPatchRequest } from '../src/scim/patch.js';
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
    // The real member add, held open between its last statement and its COMMIT.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let reachedCommit!: () => void;
    const holding = new Promise<void>((resolve) => {
      reachedCommit = resolve;
    });
    const heldDatabase = {
      transaction: (work: (tx: unknown) => Promise<unknown>) =>
        server.database.db.transaction(async (tx) => {
          const result = await work(tx);
          reachedCommit();
          await gate;
          return result;
        }),
    } as unknown as Database;
    const heldAdd = patchGroup(
      heldDatabase,
      server.tenantId,
      group.id,
      readPatchRequest(patch([{ op: 'add', path: 'members', value: [{ value: userIds[50] }] }])),
      undefined,
      { actor: 'test', correlationId: undefined },
    );
    await holding;

    // Five more adds from the server's own connections. Each takes one of 16 version slots by its
    // session, so one may share the held add's slot and wait; with a lock on the group row all would.
    const finishedWhileHeld: number[] = [];
    const adds = userIds.slice(51, 56).map(async (id) => {
      const response = await addOne(group.id, id);
      finishedWhileHeld.push(response.status);
      return response.status;
    });
    await expect.poll(() => finishedWhileHeld.length, { timeout: 5_000 }).toBeGreaterThan(0);
    expect(finishedWhileHeld).toContain(204);
    release();
    await heldAdd;
    expect(await Promise.all(adds)).toEqual([204, 204, 204, 204, 204]);
    expect((await memberIds(server, group.id)).sort()).toEqual(userIds.slice(50, 56).sort());
  });
});
