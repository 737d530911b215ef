import { describe, expect, it } from 'vitest';
import { createGroup, json, memberIds, patch } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * Issue 17: concurrent plain member adds to one group share statements (src/scim/groups.ts,
 * addMembersAtOnce). Each must still be its own PATCH: its own answer, version, audit row and outbox rows,
 * and an add naming no user of the tenant refused alone.
 */
describe('concurrent member adds to one group', async () => {
  const server = await startScimServer();
  const sql = server.database.sql;
  const userIds = (
    await sql<{ id: string }[]>`
      INSERT INTO users (tenant_id, user_name, origin)
      SELECT ${server.tenantId}, 'batched' || n || '@example.com', 'scim' FROM generate_series(1, 80) AS n
      RETURNING id::text`
  ).map((r) => r.id);
  const add = (groupId: string, ids: string[]) =>
    server.request(
      'PATCH',
      `/Groups/${groupId}`,
      patch([{ op: 'add', path: 'members', value: ids.map((value) => ({ value })) }]),
    );
  const versionNumber = (etag: string | null) => Number(/^W\/"(\d+)"$/.exec(etag ?? '')![1]);
  /** Transactions that wrote the group's memberships: fewer than the adds when they shared statements. */
  const writingTransactions = async (groupId: string) =>
    (
      await sql<{ n: number }[]>`
        SELECT count(DISTINCT xmin::text)::int AS n FROM group_members WHERE group_id = ${groupId}`
    )[0]!.n;

  it('share statements, and each is answered, versioned, audited and queued as its own PATCH', async () => {
    const group = await createGroup(server, 'Batched');
    const before = versionNumber((await server.request('GET', `/Groups/${group.id}`)).headers.get('ETag'));
    const members = userIds.slice(0, 32);
    const responses = await Promise.all(members.map((id) => add(group.id, [id])));

    expect(responses.map((r) => r.status)).toEqual(members.map(() => 204));
    expect((await memberIds(server, group.id)).sort()).toEqual([...members].sort());
    expect(await writingTransactions(group.id)).toBeLessThan(members.length);
    // One version per add: every answer a different version, the last the group's own.
    const versions = responses.map((r) => versionNumber(r.headers.get('ETag')));
    expect(new Set(versions).size).toBe(members.length);
    expect(Math.min(...versions)).toBeGreaterThan(before);
    const after = versionNumber((await server.request('GET', `/Groups/${group.id}`)).headers.get('ETag'));
    expect(after).toBe(before + members.length);
    expect(Math.max(...versions)).toBe(after);

    const audit = await sql<{ added: string[] }[]>`
      SELECT after->'membersAdded' AS added FROM audit_log
      WHERE subject_id = ${group.id} AND action = 'scim.group.patched'`;
    expect(audit.map((a) => a.added).sort()).toEqual(members.map((id) => [id]).sort());
    const outbox = await sql<{ subject_id: string; cause: { groupId: string } }[]>`
      SELECT subject_id, cause FROM outbox WHERE cause->>'groupId' = ${group.id}`;
    expect(outbox.map((o) => o.subject_id).sort()).toEqual([...members].sort());
  });

  it('refuse an add naming no user of the tenant alone, and write the adds beside it', async () => {
    const group = await createGroup(server, 'Batched with a stranger');
    const members = userIds.slice(32, 56);
    const stranger = '00000000-0000-4000-8000-000000000001';
    const [refused, ...written] = await Promise.all([
      // Sent while the first statement of the others runs, so it shares the next one with some of them.
      add(group.id, [members[0]!, stranger]),
      ...members.slice(1).map((id) => add(group.id, [id])),
    ]);

    expect(refused!.status).toBe(400);
    expect(await json(refused!)).toMatchObject({ scimType: 'invalidValue' });
    expect(written.map((r) => r.status)).toEqual(members.slice(1).map(() => 204));
    // The refused add wrote nothing: not even its known member.
    expect((await memberIds(server, group.id)).sort()).toEqual(members.slice(1).sort());
    expect(await writingTransactions(group.id)).toBeLessThan(members.length - 1);
  });

  it('count a user two adds of one statement name as added once, by one of them', async () => {
    const group = await createGroup(server, 'Batched twice');
    const members = userIds.slice(56, 72);
    const twice = userIds[72]!;
    const responses = await Promise.all([
      ...members.map((id) => add(group.id, [id, twice])),
      add(group.id, [twice]),
    ]);

    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 204));
    expect((await memberIds(server, group.id)).sort()).toEqual([...members, twice].sort());
    const audit = await sql<{ added: string[] | null }[]>`
      SELECT after->'membersAdded' AS added FROM audit_log
      WHERE subject_id = ${group.id} AND action = 'scim.group.patched'`;
    expect(audit).toHaveLength(responses.length);
    expect(audit.flatMap((a) => a.added ?? []).filter((id) => id === twice)).toHaveLength(1);
    const queued = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM outbox WHERE cause->>'groupId' = ${group.id} AND subject_id = ${twice}`;
    expect(queued[0]!.n).toBe(1);
  });

  it('answer 404 for a group that is not there, whatever else its statement holds', async () => {
    const missing = '00000000-0000-4000-8000-0000000000aa';
    const responses = await Promise.all(userIds.slice(0, 8).map((id) => add(missing, [id])));
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 404));
  });
});
