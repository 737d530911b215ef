import { describe, expect, it } from 'vitest';
import { latch } from './support/latch.js';
import { createGroup, createUser, json, memberIds, patch } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * A PATCH that only adds members (one statement) racing a DELETE committed while it waits: the answer
 * must be the SCIM error the request would get a moment later (404 for the group, 400 invalidValue for
 * the user), never a 500 from the foreign key.
 */
describe('member adds racing deletes', async () => {
  const server = await startScimServer();
  const sql = server.database.sql;

  /** Runs `statement` in an open transaction, then `whileOpen`, then commits. */
  async function withUncommitted<T>(statement: string, params: string[], whileOpen: () => Promise<T>) {
    const begun = latch();
    const commit = latch();
    const done = sql.begin(async (tx) => {
      await tx.unsafe(statement, params);
      begun.open();
      await commit.opened;
    });
    await begun.opened;
    const pending = whileOpen();
    // Wait until the request is blocked on the deleted row's lock, then commit the delete.
    for (;;) {
      // Any backend of this database waiting on a lock is the request's: nothing else runs here.
      const [row] = await sql`SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`;
      if (row!.n > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    commit.open();
    await done;
    return pending;
  }

  it('answers 404 when the group is deleted while the add waits', async () => {
    const user = await createUser(server, 'racer1@example.com');
    const group = await createGroup(server, 'Doomed');
    const response = await withUncommitted('DELETE FROM groups WHERE id = $1', [group.id], () =>
      server.request(
        'PATCH',
        `/Groups/${group.id}`,
        patch([{ op: 'add', path: 'members', value: [{ value: user.id }] }]),
      ),
    );
    const body = await json(response);
    expect({ status: response.status, scimStatus: body.status }).toEqual({ status: 404, scimStatus: '404' });
  });

  it('answers 400 invalidValue when the user is deleted while the add waits', async () => {
    const user = await createUser(server, 'racer2@example.com');
    const group = await createGroup(server, 'Stays');
    const response = await withUncommitted('DELETE FROM users WHERE id = $1', [user.id], () =>
      server.request(
        'PATCH',
        `/Groups/${group.id}`,
        patch([{ op: 'add', path: 'members', value: [{ value: user.id }] }]),
      ),
    );
    const body = await json(response);
    expect({ status: response.status, scimType: body.scimType }).toEqual({
      status: 400,
      scimType: 'invalidValue',
    });
    expect(await memberIds(server, group.id)).toEqual([]);
  });

  it('answers 404 on the general path too (an add with a displayName change) when the group is deleted', async () => {
    const user = await createUser(server, 'racer3@example.com');
    const group = await createGroup(server, 'Doomed too');
    const response = await withUncommitted('DELETE FROM groups WHERE id = $1', [group.id], () =>
      server.request(
        'PATCH',
        `/Groups/${group.id}`,
        patch([
          { op: 'add', path: 'members', value: [{ value: user.id }] },
          { op: 'replace', path: 'displayName', value: 'Renamed' },
        ]),
      ),
    );
    expect(response.status).toBe(404);
  });
});
