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
  const waitingOnLocks = async () =>
    (
      await database.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`
    )[0]!.n;
  const deadlocks = async () =>
    (
      await database.sql<{ n: number }[]>`
        SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()`
    )[0]!.n;
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
    const bob = await created('/Users', { schemas: [USER], userName: 'bob@example.com' });
    const ops = await created('/Groups', { schemas: [GROUP], displayName: 'Ops', members: [{ value: bob }] });
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
    const carol = await created('/Users', { schemas: [USER], userName: 'carol@example.com' });
    const team = await created('/Groups', {
      schemas: [GROUP],
      displayName: 'Team',
      members: [{ value: carol }],
    });
    const before = await groupState(team);
    // As a PUT or If-Match write of the group holds it: the row and every version slot; it then adds
    // Carol again, which waits for her deprovisioning while that waits for the group.
    const deadlocksBefore = await deadlocks();
    const holder = await database.sql.reserve();
    try {
      await holder`BEGIN`;
      // Only the deprovisioning's check may find the cycle: that is the abort this test is about.
      await holder`SET LOCAL deadlock_timeout = '60s'`;
      await holder`SELECT 1 FROM groups WHERE id = ${team} FOR UPDATE`;
      await holder`SELECT 1 FROM group_version_slots WHERE group_id = ${team} FOR UPDATE`;
      const deprovisioned = scim('DELETE', `/Users/${carol}`);
      await expect.poll(() => waitingOnLocks(), { timeout: 15_000 }).toBe(1);
      await holder`SELECT 1 FROM users WHERE id = ${carol} FOR KEY SHARE`;
      await holder`COMMIT`;
      expect((await deprovisioned).status).toBe(204);
    } finally {
      holder.release();
    }
    const after = await groupState(team);
    expect(after.members).toEqual([]);
    expect(after.etag).not.toBe(before.etag);
    // PostgreSQL did abort one of the two (its statistics arrive a moment later): the deprovisioning,
    // which ran again, since the holder's statements all succeeded.
    await expect.poll(deadlocks, { timeout: 15_000 }).toBe(deadlocksBefore + 1);
  });

  it('signs in a user whose withdrawn group a conditional write holds, when the two deadlock', async () => {
    await signIn('dave@example.com', ['Crew']);
    const dave = await userIdOf('dave@example.com');
    const crew = (
      await database.sql<{ id: string }[]>`SELECT id::text FROM groups WHERE display_name = 'Crew'`
    )[0]!.id;
    const before = await groupState(crew);
    const deadlocksBefore = await deadlocks();
    const holder = await database.sql.reserve();
    let login: Promise<void>;
    try {
      // As above; the login has withdrawn Dave's membership and waits for the group.
      await holder`BEGIN`;
      await holder`SET LOCAL deadlock_timeout = '60s'`;
      await holder`SELECT 1 FROM groups WHERE id = ${crew} FOR UPDATE`;
      await holder`SELECT 1 FROM group_version_slots WHERE group_id = ${crew} FOR UPDATE`;
      login = signIn('dave@example.com', []);
      await expect.poll(() => waitingOnLocks(), { timeout: 15_000 }).toBe(1);
      await holder`SELECT 1 FROM users WHERE id = ${dave} FOR KEY SHARE`;
      await holder`COMMIT`;
    } finally {
      holder.release();
    }
    await login;
    const after = await groupState(crew);
    expect(after.members).toEqual([]);
    expect(after.etag).not.toBe(before.etag);
    await expect.poll(deadlocks, { timeout: 15_000 }).toBe(deadlocksBefore + 1);
  });
  it('makes a login wait for a group write that holds the group before it takes one of its slots', async () => {
    const ops = await created('/Groups', { schemas: [GROUP], displayName: 'Night Shift' });
    const before = await groupState(ops);
    // A conditional write locks the group's row and then its slots, in two statements. A login granting
    // the group in between waits on the row and holds no slot, so the write's second statement goes on
    // (NOWAIT: it would fail at once, not deadlock a second later, if the login held one).
    const holder = await database.sql.reserve();
    let login: Promise<void>;
    try {
      await holder`BEGIN`;
      await holder`SELECT 1 FROM groups WHERE id = ${ops} FOR UPDATE`;
      login = signIn('erin@example.com', ['Night Shift']);
      await expect.poll(() => waitingOnLocks(), { timeout: 15_000 }).toBe(1);
      const slots = await holder`SELECT 1 FROM group_version_slots WHERE group_id = ${ops} FOR UPDATE NOWAIT`;
      expect(slots).toHaveLength(16);
      // The write's own change, stamped after the login's transaction began (10 ms apart from what
      // follows, past lastModified's millisecond precision).
      await holder`UPDATE groups SET version = version + 1, updated_at = clock_timestamp() WHERE id = ${ops}`;
      await holder`SELECT pg_sleep(0.01)`;
      await holder`COMMIT`;
    } finally {
      holder.release();
    }
    await login;
    const after = await groupState(ops);
    expect(after.members).toEqual([await userIdOf('erin@example.com')]);
    expect(after.etag).not.toBe(before.etag);
    // The login counted its change after the write it waited for: lastModified is the login's.
    const [write] = await database.sql<{ ms: number }[]>`
      SELECT (extract(epoch FROM updated_at) * 1000)::float8 AS ms FROM groups WHERE id = ${ops}`;
    expect(Date.parse(after.lastModified)).toBeGreaterThan(write!.ms);
  });
});
