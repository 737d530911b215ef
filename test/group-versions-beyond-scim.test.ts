import type { ReservedSql } from 'postgres';
import { describe, expect, it } from 'vitest';
import { GROUP, PATCH, USER } from './support/scim-fixtures.js';
import { startSsoTest } from './support/sso-setup.js';

/*
 * A group's ETag and lastModified follow its members (RFC 7644 §3.14) when they change outside SCIM's
 * group writes too: a SAML login granting or withdrawing a group, a SCIM DELETE of a member. Otherwise a
 * client holding the old ETag would take its stale copy of the members as current, and an If-Match
 * write made from it would pass.
 */
describe('group versions when members change through a login or a deprovisioning', async () => {
  const { database, publicUrl, scimToken, browser, createIdp, trust } = await startSsoTest({
    // PostgreSQL looks for a deadlock once, deadlock_timeout after a wait starts: the deadlock tests
    // below close the cycle within that time after the daemon's statement starts waiting.
    databaseSettings: { deadlock_timeout: '3s' },
  });
  const idp = await createIdp();
  await trust(idp);

  const scim = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${publicUrl}/scim/v2${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${scimToken}`,
        'Content-Type': 'application/scim+json',
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const created = async (path: string, body: unknown) => {
    const response = await scim('POST', path, body);
    expect(response.status).toBe(201);
    return ((await response.json()) as { id: string }).id;
  };
  /** A SCIM user, and a SCIM group holding them. */
  const userInGroup = async (userName: string, displayName: string) => {
    const user = await created('/Users', { schemas: [USER], userName });
    const group = await created('/Groups', { schemas: [GROUP], displayName, members: [{ value: user }] });
    return { user, group };
  };
  const groupState = async (id: string) => {
    const response = await scim('GET', `/Groups/${id}`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      meta: { version: string; lastModified: string };
      members?: { value: string }[];
    };
    expect(response.headers.get('ETag')).toBe(body.meta.version);
    return {
      etag: body.meta.version,
      lastModified: body.meta.lastModified,
      members: (body.members ?? []).map((m) => m.value),
    };
  };
  const signIn = async (nameId: string, groups: string[]) => {
    const response = await browser.post(
      await idp.respond({ nameId, inResponseTo: await browser.requestId(), attributes: { groups } }),
    );
    expect(response.status).toBe(303);
  };
  const userIdOf = async (userName: string) =>
    (await database.sql<{ id: string }[]>`SELECT id::text FROM users WHERE user_name = ${userName}`)[0]!.id;
  /** Sessions of the daemon waiting on a lock `holderPid` holds. */
  const blockedBy = async (holderPid: number) =>
    (
      await database.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${holderPid}::int = ANY(pg_blocking_pids(pid))`
    )[0]!.n;
  const deadlocks = async () =>
    (
      await database.sql<{ n: number }[]>`
        SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()`
    )[0]!.n;
  const groupIdNamed = async (displayName: string) =>
    (
      await database.sql<{ id: string }[]>`SELECT id::text FROM groups WHERE display_name = ${displayName}`
    )[0]!.id;
  /**
   * Holds a group as a PUT or If-Match write does (its row; with `slots`, every version slot too) in a
   * transaction of its own, starts a request that must wait on it, then runs `then` as the write's next
   * statements and commits. Rolled back if anything fails first, so no later test waits on its locks.
   */
  const whileGroupHeld = async <T>(
    groupId: string,
    options: { slots: boolean },
    start: () => Promise<T>,
    then: (holder: ReservedSql) => Promise<void>,
  ): Promise<T> => {
    const holder = await database.sql.reserve();
    let request: Promise<T>;
    try {
      await holder`BEGIN`;
      const [{ pid }] = await holder<[{ pid: number }]>`SELECT pg_backend_pid() AS pid`;
      // Only the daemon's statement may find a deadlock (after its 3 s deadlock_timeout, set above
      // and shorter than its 5 s statement timeout): that abort, and its retry, is what tests look at.
      await holder`SET LOCAL deadlock_timeout = '60s'`;
      await holder`SELECT 1 FROM groups WHERE id = ${groupId} FOR UPDATE`;
      if (options.slots)
        await holder`SELECT 1 FROM group_version_slots WHERE group_id = ${groupId} FOR UPDATE`;
      request = start();
      request.catch(() => {}); // a failure is reported where the test awaits it
      await expect.poll(() => blockedBy(pid), { timeout: 15_000 }).toBe(1);
      await then(holder);
      await holder`COMMIT`;
    } catch (error) {
      await holder`ROLLBACK`.catch(() => {});
      throw error;
    } finally {
      holder.release();
    }
    return request;
  };
  const renameIf = (id: string, etag: string) =>
    scim(
      'PATCH',
      `/Groups/${id}`,
      { schemas: [PATCH], Operations: [{ op: 'replace', path: 'displayName', value: `Renamed ${id}` }] },
      { 'If-Match': etag },
    );

  it('moves the ETag of a group a login grants and of one it withdraws, and not on a login that changes nothing', async () => {
    const everyone = await created('/Groups', { schemas: [GROUP], displayName: 'Everyone' });
    const before = await groupState(everyone);
    await new Promise((resolve) => setTimeout(resolve, 5)); // lastModified has millisecond precision

    await signIn('ada@example.com', ['Everyone']);
    const ada = await userIdOf('ada@example.com');
    const granted = await groupState(everyone);
    expect(granted.members).toEqual([ada]);
    expect(granted.etag).not.toBe(before.etag);
    expect(Date.parse(granted.lastModified)).toBeGreaterThan(Date.parse(before.lastModified));
    // A client syncing by lastModified finds the group too. lastModified is shown to the millisecond:
    // the group was created before `since`, the login 5 ms later at least.
    const since = new Date(Date.parse(before.lastModified) + 2).toISOString();
    const changedSince = await scim(
      'GET',
      `/Groups?filter=${encodeURIComponent(`meta.lastModified gt "${since}"`)}&attributes=displayName`,
    );
    const found = (await changedSince.json()) as { Resources?: { id: string }[] };
    expect((found.Resources ?? []).map((g) => g.id)).toContain(everyone);

    await signIn('ada@example.com', ['Everyone']);
    expect((await groupState(everyone)).etag).toBe(granted.etag);

    await signIn('ada@example.com', []);
    const withdrawn = await groupState(everyone);
    expect(withdrawn.members).toEqual([]);
    expect(withdrawn.etag).not.toBe(granted.etag);
    expect(withdrawn.etag).not.toBe(before.etag);
    // A write made from the copy that still listed Ada is refused.
    expect((await renameIf(everyone, granted.etag)).status).toBe(412);
    expect((await renameIf(everyone, withdrawn.etag)).status).toBe(204);
  });

  it('moves the ETag of every group a deprovisioned user leaves, whoever added them, and of no other', async () => {
    const { user: bob, group: ops } = await userInGroup('bob@example.com', 'Ops');
    const other = await created('/Groups', { schemas: [GROUP], displayName: 'Other' });
    await signIn('bob@example.com', ['Logged In']);
    const loggedIn = (
      await database.sql<{ id: string }[]>`SELECT id::text FROM groups WHERE display_name = 'Logged In'`
    )[0]!.id;
    const before = {
      ops: await groupState(ops),
      other: await groupState(other),
      loggedIn: await groupState(loggedIn),
    };
    expect(before.ops.members).toEqual([bob]);
    expect(before.loggedIn.members).toEqual([bob]);

    expect((await scim('DELETE', `/Users/${bob}`)).status).toBe(204);

    const after = {
      ops: await groupState(ops),
      other: await groupState(other),
      loggedIn: await groupState(loggedIn),
    };
    expect(after.ops.members).toEqual([]);
    expect(after.loggedIn.members).toEqual([]);
    expect(after.ops.etag).not.toBe(before.ops.etag);
    expect(after.loggedIn.etag).not.toBe(before.loggedIn.etag);
    expect(after.other.etag).toBe(before.other.etag);
    expect((await renameIf(ops, before.ops.etag)).status).toBe(412);
  });
  it('deprovisions a user whose group a conditional write holds, when the two deadlock', async () => {
    const { user: carol, group: team } = await userInGroup('carol@example.com', 'Team');
    const before = await groupState(team);
    const deadlocksBefore = await deadlocks();
    // The write adds Carol again: it waits for her deprovisioning, which waits for the group.
    const deprovisioned = await whileGroupHeld(
      team,
      { slots: true },
      () => scim('DELETE', `/Users/${carol}`),
      async (holder) => {
        await holder`SELECT 1 FROM users WHERE id = ${carol} FOR KEY SHARE`;
      },
    );
    expect(deprovisioned.status).toBe(204);
    const after = await groupState(team);
    expect(after.members).toEqual([]);
    expect(after.etag).not.toBe(before.etag);
    // PostgreSQL did abort one of the two (its statistics arrive a moment later): the deprovisioning,
    // which ran again, since the holder's statements all succeeded.
    await expect.poll(deadlocks, { timeout: 15_000 }).toBe(deadlocksBefore + 1);
  });

  it('deprovisions a user whose group a conditional write holds and removes them from, without a deadlock', async () => {
    const { user: frank, group: desk } = await userInGroup('frank@example.com', 'Desk');
    const before = await groupState(desk);
    // The deprovisioning waits for the group before it touches the membership, so the write (a PUT
    // that drops Frank) takes the membership at once (NOWAIT) instead of waiting on it.
    const deprovisioned = await whileGroupHeld(
      desk,
      { slots: true },
      () => scim('DELETE', `/Users/${frank}`),
      async (holder) => {
        const membership = await holder`
          SELECT 1 FROM group_members WHERE group_id = ${desk} AND user_id = ${frank} FOR UPDATE NOWAIT`;
        expect(membership).toHaveLength(1);
        await holder`DELETE FROM group_members WHERE group_id = ${desk} AND user_id = ${frank}`;
        await holder`UPDATE groups SET version = version + 1, updated_at = clock_timestamp() WHERE id = ${desk}`;
      },
    );
    expect(deprovisioned.status).toBe(204);
    const after = await groupState(desk);
    expect(after.members).toEqual([]);
    expect(after.etag).not.toBe(before.etag);
  });

  it('signs in a user whose withdrawn group a conditional write holds, when the two deadlock', async () => {
    await signIn('dave@example.com', ['Crew']);
    const dave = await userIdOf('dave@example.com');
    const crew = await groupIdNamed('Crew');
    const before = await groupState(crew);
    const deadlocksBefore = await deadlocks();
    // The login has withdrawn Dave's membership and waits for the group; the write wants Dave.
    await whileGroupHeld(
      crew,
      { slots: true },
      () => signIn('dave@example.com', []),
      async (holder) => {
        await holder`SELECT 1 FROM users WHERE id = ${dave} FOR KEY SHARE`;
      },
    );
    const after = await groupState(crew);
    expect(after.members).toEqual([]);
    expect(after.etag).not.toBe(before.etag);
    await expect.poll(deadlocks, { timeout: 15_000 }).toBe(deadlocksBefore + 1);
  });

  // A conditional write locks the group's row and then its slots, in two statements. A login that
  // changes the group in between waits on the row and holds no slot, so the write's second statement goes
  // on (NOWAIT: it would fail at once, not deadlock a second later, if the login held one). The write's own
  // change is stamped after the login's transaction began, 10 ms before it commits (past lastModified's
  // millisecond precision): the login, counting its change after the wait, stamps later still.
  const actAsConditionalWrite = (groupId: string) => async (holder: ReservedSql) => {
    const slots =
      await holder`SELECT 1 FROM group_version_slots WHERE group_id = ${groupId} FOR UPDATE NOWAIT`;
    expect(slots).toHaveLength(16);
    await holder`UPDATE groups SET version = version + 1, updated_at = clock_timestamp() WHERE id = ${groupId}`;
    await holder`SELECT pg_sleep(0.01)`;
  };
  const writeStamp = async (groupId: string) =>
    (
      await database.sql<{ ms: number }[]>`
        SELECT (extract(epoch FROM updated_at) * 1000)::float8 AS ms FROM groups WHERE id = ${groupId}`
    )[0]!.ms;

  it('makes a login that grants a group wait for a write holding it before taking one of its slots', async () => {
    const shift = await created('/Groups', { schemas: [GROUP], displayName: 'Night Shift' });
    const before = await groupState(shift);
    await whileGroupHeld(
      shift,
      { slots: false },
      () => signIn('erin@example.com', ['Night Shift']),
      actAsConditionalWrite(shift),
    );
    const after = await groupState(shift);
    expect(after.members).toEqual([await userIdOf('erin@example.com')]);
    expect(after.etag).not.toBe(before.etag);
    expect(Date.parse(after.lastModified)).toBeGreaterThan(await writeStamp(shift));
  });

  it('makes a login that withdraws a group wait for a write holding it before taking one of its slots', async () => {
    await signIn('gus@example.com', ['Day Shift']);
    const shift = await groupIdNamed('Day Shift');
    const before = await groupState(shift);
    await whileGroupHeld(
      shift,
      { slots: false },
      () => signIn('gus@example.com', []),
      actAsConditionalWrite(shift),
    );
    const after = await groupState(shift);
    expect(after.members).toEqual([]);
    expect(after.etag).not.toBe(before.etag);
    expect(Date.parse(after.lastModified)).toBeGreaterThan(await writeStamp(shift));
  });
});
