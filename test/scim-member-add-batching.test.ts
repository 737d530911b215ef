import { fillPlaceholders } from 'drizzle-orm';
import { describe, expect, it, vi } from 'vitest';
import { boundOnce } from '../src/db/statement.js';
import { KeyedStatementBatchers } from '../src/db/statement-batcher.js';
import { addMembersSql } from '../src/scim/groups.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createGroup, json, memberIds, patch } from './support/scim-fixtures.js';
import { type ScimServer, startScimServer } from './support/scim-server.js';

/*
 * Issue 17: concurrent plain member adds to one group share statements (src/scim/groups.ts,
 * addMembersAtOnce). Each must still be its own PATCH: its own answer, version, audit row and outbox rows,
 * and an add naming no user of the tenant refused alone.
 */
/** Users written straight to the server's tenant: `<prefix><n>@example.com`, n from 1. */
async function insertUsers(server: ScimServer, prefix: string, count: number): Promise<string[]> {
  const rows = await server.database.sql<{ id: string }[]>`
    INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${server.tenantId}, ${prefix} || n || '@example.com', 'scim' FROM generate_series(1, ${count}::int) AS n
    RETURNING id::text`;
  return rows.map((r) => r.id);
}

describe('concurrent member adds to one group', async () => {
  const server = await startScimServer();
  const sql = server.database.sql;
  const userIds = await insertUsers(server, 'batched', 80);
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

  /** Sessions of the server's database waiting on a lock. */
  const waitingOnLocks = async () =>
    (
      await sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND datname = current_database()`
    )[0]!.n;

  /**
   * Sends the adds so that they share statements for certain, not by timing: the first add's statement
   * waits on a lock the test holds on the group until every other add has reached the batcher, then all
   * go on. Answers in the order of `adds`.
   */
  const sharingStatements = async (groupId: string, adds: string[][]): Promise<Response[]> => {
    const submitted = vi.spyOn(KeyedStatementBatchers.prototype, 'submit');
    const holder = await sql.reserve();
    try {
      await holder`BEGIN`;
      await holder`SELECT 1 FROM groups WHERE id = ${groupId} FOR UPDATE`;
      const first = add(groupId, adds[0]!);
      // Requests reaching the server and the database: seconds, not the default 1 s, on a loaded machine.
      await expect.poll(waitingOnLocks, { timeout: 15_000 }).toBe(1);
      const firstWaiting = Date.now();
      // Every other one spells the group's id in upper case: still the same group's statements.
      const rest = adds.slice(1).map((ids, i) => add(i % 2 === 0 ? groupId.toUpperCase() : groupId, ids));
      await expect.poll(() => submitted.mock.calls.length, { timeout: 15_000 }).toBe(adds.length);
      // The adds behind a statement stuck on the group's lock wait for it in memory, however long it
      // waits: no second statement joins it on the lock (one did 250 ms on, and answered ETags the
      // first statement answered too, read from the same version). Held past that mark for certain.
      await expect.poll(() => Date.now() - firstWaiting, { interval: 100 }).toBeGreaterThan(600);
      expect(await waitingOnLocks()).toBe(1);
      await holder`COMMIT`;
      return await Promise.all([first, ...rest]);
    } finally {
      holder.release();
      submitted.mockRestore();
    }
  };

  it('share statements, and each is answered, versioned, audited and queued as its own PATCH', async () => {
    const group = await createGroup(server, 'Batched');
    const before = versionNumber((await server.request('GET', `/Groups/${group.id}`)).headers.get('ETag'));
    const members = userIds.slice(0, 32);
    const responses = await sharingStatements(
      group.id,
      members.map((id) => [id]),
    );

    expect(responses.map((r) => r.status)).toEqual(members.map(() => 204));
    expect((await memberIds(server, group.id)).sort()).toEqual([...members].sort());
    // The first add alone, the others together in one statement after it.
    expect(await writingTransactions(group.id)).toBe(2);
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
    // Sent among the others, in a statement it shares with them.
    const responses = await sharingStatements(group.id, [
      ...members.slice(1, 12).map((id) => [id]),
      [members[0]!, stranger],
      ...members.slice(12).map((id) => [id]),
    ]);
    const refused = responses[11];
    const written = [...responses.slice(0, 11), ...responses.slice(12)];

    expect(refused!.status).toBe(400);
    expect(await json(refused!)).toMatchObject({ scimType: 'invalidValue' });
    expect(written.map((r) => r.status)).toEqual(members.slice(1).map(() => 204));
    // The refused add wrote nothing: not even its known member.
    expect((await memberIds(server, group.id)).sort()).toEqual(members.slice(1).sort());
    expect(await writingTransactions(group.id)).toBe(2);
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

  it('answer, after waiting on a write that holds the group, a version that follows that write', async () => {
    const group = await createGroup(server, 'Held by a conditional write');
    const before = versionNumber((await server.request('GET', `/Groups/${group.id}`)).headers.get('ETag'));
    const holder = await sql.reserve();
    try {
      // What a PUT or an If-Match PATCH does (lockGroup, then touch): the row locked and its version raised.
      await holder`BEGIN`;
      await holder`SELECT 1 FROM groups WHERE id = ${group.id} FOR UPDATE`;
      await holder`UPDATE groups SET version = version + 1 WHERE id = ${group.id}`;
      const added = add(group.id, [userIds[77]!]);
      await expect.poll(waitingOnLocks, { timeout: 15_000 }).toBe(1);
      await holder`COMMIT`;
      const response = await added;
      expect(response.status).toBe(204);
      // Not before + 1, the version the write had just answered too.
      expect(versionNumber(response.headers.get('ETag'))).toBe(before + 2);
      expect(versionNumber((await server.request('GET', `/Groups/${group.id}`)).headers.get('ETag'))).toBe(
        before + 2,
      );
    } finally {
      holder.release();
    }
  });

  it('refuse a user whose DELETE commits while the add waits for it, and leave no membership of theirs', async () => {
    const group = await createGroup(server, 'Member deleted meanwhile');
    const user = userIds[78]!;
    const holder = await sql.reserve();
    try {
      // What a SCIM DELETE of the user does (deleteUser): the user locked, its memberships deleted, the
      // user deprovisioned; the add reads the user as live from its snapshot, then waits.
      await holder`BEGIN`;
      await holder`SELECT 1 FROM users WHERE id = ${user} FOR UPDATE`;
      await holder`DELETE FROM group_members WHERE user_id = ${user}`;
      await holder`UPDATE users SET deprovisioned_at = now(), active = false WHERE id = ${user}`;
      const added = add(group.id, [user]);
      await expect.poll(waitingOnLocks, { timeout: 15_000 }).toBe(1);
      await holder`COMMIT`;
      const response = await added;
      expect(response.status).toBe(400);
      expect(await json(response)).toMatchObject({ scimType: 'invalidValue' });
      expect(await memberIds(server, group.id)).toEqual([]);
      const memberships = await sql`SELECT 1 FROM group_members WHERE user_id = ${user}`;
      expect(memberships).toHaveLength(0);
    } finally {
      holder.release();
    }
  });

  it('survive a deadlock with a general-path PATCH taking the same members in another order', async () => {
    // Users A < B by id: the plain add's statement takes them in that order; the general PATCH below
    // takes B, then waits on C (held here), then wants A.
    const [x, y, c] = userIds.slice(73, 76) as [string, string, string];
    const [a, b] = [x, y].sort() as [string, string];
    const group = await createGroup(server, 'Deadlocked', [c]);
    const holder = await sql.reserve();
    try {
      await holder`BEGIN`;
      await holder`SELECT 1 FROM group_members WHERE group_id = ${group.id} AND user_id = ${c} FOR UPDATE`;
      const general = server.request(
        'PATCH',
        `/Groups/${group.id}`,
        patch([
          { op: 'add', path: 'members', value: [{ value: b }] },
          { op: 'remove', path: `members[value eq "${c}"]` },
          { op: 'add', path: 'members', value: [{ value: a }] },
        ]),
      );
      await expect.poll(waitingOnLocks, { timeout: 15_000 }).toBe(1);
      // Takes A, then waits on B, which the general PATCH holds.
      const plain = add(group.id, [b, a]);
      await expect.poll(waitingOnLocks, { timeout: 15_000 }).toBe(2);
      // Well past deadlock_timeout (1 s): the plain add's statement has checked for a cycle and found none, so
      // when the general PATCH goes on and waits for A, it is the one PostgreSQL aborts (a plain add
      // aborted instead runs again too: the next test).
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      await holder`COMMIT`;
      const statuses = (await Promise.all([general, plain])).map((r) => r.status);
      expect(statuses).toEqual([204, 204]);
      expect((await memberIds(server, group.id)).sort()).toEqual([a, b].sort());
    } finally {
      holder.release();
    }
  });

  it('run an add again that PostgreSQL aborted to break a deadlock', async () => {
    const group = await createGroup(server, 'Deadlock victim');
    const member = userIds[79]!;
    const submitted = vi
      .spyOn(KeyedStatementBatchers.prototype, 'submit')
      .mockImplementationOnce(() =>
        Promise.reject(Object.assign(new Error('deadlock detected'), { code: '40P01' })),
      );
    try {
      const response = await add(group.id, [member]);
      expect(response.status).toBe(204);
      expect(submitted).toHaveBeenCalledTimes(2);
      expect(await memberIds(server, group.id)).toEqual([member]);
      const audit =
        await sql`SELECT 1 FROM audit_log WHERE subject_id = ${group.id} AND action = 'scim.group.patched'`;
      expect(audit).toHaveLength(1);
    } finally {
      submitted.mockRestore();
    }
  });
});

describe('the statement of plain member adds', async () => {
  const server = await startScimServer();
  const sql = server.database.sql;
  const users = await insertUsers(server, 'statement', 6);
  const statement = boundOnce(addMembersSql());
  const values = (groupId: string, adds: string[][]) =>
    fillPlaceholders(statement.params, {
      tenantId: server.tenantId,
      groupId,
      addOf: adds.flatMap((ids, i) => ids.map(() => i + 1)),
      ids: adds.flat(),
      displays: adds.flat().map(() => null),
      causes: adds.map((_, i) => JSON.stringify({ add: i + 1, groupId })),
      actors: adds.map(() => 'test'),
      correlationIds: adds.map(() => null),
    }) as never[];
  const run = (groupId: string, adds: string[][]) =>
    sql.unsafe(statement.sql, values(groupId, adds)) as unknown as Promise<
      { n: number; id: string | null; version: number; unknown: string[] | null }[]
    >;
  const versionOf = async (groupId: string) =>
    Number(/\d+/.exec((await server.request('GET', `/Groups/${groupId}`)).headers.get('ETag')!)![0]);
  const audited = async (groupId: string) =>
    (
      await sql<{ added: string[] | null }[]>`
        SELECT after->'membersAdded' AS added FROM audit_log
        WHERE subject_id = ${groupId} AND action = 'scim.group.patched' ORDER BY id`
    ).map((r) => r.added);

  it("locks its tenant's users, and none of another tenant's that it names", async () => {
    const { tenant: other } = await createTenant(server.database.db, 'another-tenant', 'test');
    const [foreign] = await sql<{ id: string }[]>`
      INSERT INTO users (tenant_id, user_name, origin) VALUES (${other.id}, 'foreign@example.com', 'scim')
      RETURNING id::text`;
    // users[3] a member already: re-added, no membership is written, so no foreign-key check locks it.
    const group = await createGroup(server, 'Named a foreign user', [users[3]!]);
    const adder = await sql.reserve();
    try {
      await adder`BEGIN`;
      const rows = await adder.unsafe(statement.sql, values(group.id, [[foreign!.id], [users[3]!]]));
      expect(rows.map((r) => r.unknown)).toEqual([[foreign!.id], null]);
      // The add's transaction still open: the other tenant can write its user (a PUT, a DELETE, a SAML
      // login lock it so), this tenant's cannot until the add commits.
      expect(await sql`SELECT 1 FROM users WHERE id = ${foreign!.id} FOR UPDATE NOWAIT`).toHaveLength(1);
      await expect(sql`SELECT 1 FROM users WHERE id = ${users[3]!} FOR UPDATE NOWAIT`).rejects.toMatchObject({
        code: '55P03',
      });
    } finally {
      await adder`ROLLBACK`;
      adder.release();
    }
  });

  it('refuses an add naming a stranger alone, and counts a version for each add it writes', async () => {
    const group = await createGroup(server, 'One statement');
    const before = await versionOf(group.id);
    const stranger = '00000000-0000-4000-8000-000000000002';
    const rows = await run(group.id, [[users[0]!], [users[1]!, stranger], [users[2]!]]);

    expect(rows.map((r) => ({ n: Number(r.n), version: r.version, unknown: r.unknown }))).toEqual([
      { n: 1, version: before + 1, unknown: null },
      { n: 2, version: before, unknown: [stranger] },
      { n: 3, version: before + 2, unknown: null },
    ]);
    expect((await memberIds(server, group.id)).sort()).toEqual([users[0]!, users[2]!].sort());
    expect(await versionOf(group.id)).toBe(before + 2);
    expect(await audited(group.id)).toEqual([[users[0]], [users[2]]]);
    const queued = await sql<{ subject_id: string; add: number }[]>`
      SELECT subject_id, (cause->>'add')::int AS add FROM outbox WHERE cause->>'groupId' = ${group.id} ORDER BY id`;
    expect(queued).toEqual([
      { subject_id: users[0], add: 1 },
      { subject_id: users[2], add: 3 },
    ]);
  });

  it('adds a user two of its adds name once, for the first, in each add’s own order', async () => {
    const group = await createGroup(server, 'Named twice');
    const rows = await run(group.id, [[users[4]!, users[3]!], [users[3]!]]);
    expect(rows.map((r) => r.unknown)).toEqual([null, null]);
    expect((await memberIds(server, group.id)).sort()).toEqual([users[3]!, users[4]!].sort());
    expect(await audited(group.id)).toEqual([[users[4], users[3]], null]);
  });

  it('answers every add of a group that is not there with no group', async () => {
    const rows = await run('00000000-0000-4000-8000-0000000000bb', [[users[5]!], [users[5]!]]);
    expect(rows.map((r) => r.id)).toEqual([null, null]);
  });
});
