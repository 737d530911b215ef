import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createGroup, createUser, GROUP, json, patch, USER } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * meta.lastModified is stamped by PostgreSQL's clock, so that stamps written by several API processes
 * (and the filters comparing them) agree. Here the daemon runs in the test's process, with Node's clock
 * an hour ahead of the database's, as on an API host whose clock has drifted.
 */
describe('meta.lastModified comes from the database clock', async () => {
  const server = await startScimServer();
  const HOUR = 3_600_000;
  const databaseNow = async () => {
    const [row] = await server.database.db.execute<{ now: string }>(
      sql`SELECT clock_timestamp()::text AS now`,
    );
    return Date.parse(row!.now);
  };
  const aheadOfTheDatabase = async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: (await databaseNow()) + HOUR });
  };
  afterEach(() => vi.useRealTimers());

  /** The resource's lastModified as the response showed it and as a GET shows it afterwards. */
  const stamped = async (response: Response, path: string) => {
    expect(response.status).toBeLessThan(300);
    const body = await json(response);
    const written = Date.parse(body.meta.lastModified);
    const read = Date.parse((await json(await server.request('GET', path))).meta.lastModified);
    return { written, read };
  };
  const expectDatabaseTime = async (stamp: { written: number; read: number }) => {
    expect(stamp.written).toBe(stamp.read);
    expect(Math.abs(stamp.read - (await databaseNow()))).toBeLessThan(60_000);
  };

  it('on a user PUT and PATCH', async () => {
    const ada = await createUser(server, 'ada@example.com');
    await aheadOfTheDatabase();
    await expectDatabaseTime(
      await stamped(
        await server.request('PUT', `/Users/${ada.id}`, {
          schemas: [USER],
          userName: 'ada@example.com',
          title: 'Eng',
        }),
        `/Users/${ada.id}`,
      ),
    );
    await expectDatabaseTime(
      await stamped(
        await server.request(
          'PATCH',
          `/Users/${ada.id}`,
          patch([{ op: 'replace', path: 'title', value: 'Lead' }]),
        ),
        `/Users/${ada.id}`,
      ),
    );
  });

  it('on a user DELETE', async () => {
    const bob = await createUser(server, 'bob@example.com');
    await aheadOfTheDatabase();
    expect((await server.request('DELETE', `/Users/${bob.id}`)).status).toBe(204);
    const [row] = await server.database.db.execute<{ updated_at: string }>(
      sql`SELECT updated_at::text FROM users WHERE id = ${bob.id}::uuid`,
    );
    expect(Math.abs(Date.parse(row!.updated_at) - (await databaseNow()))).toBeLessThan(60_000);
  });

  it('on every kind of group write', async () => {
    const cy = await createUser(server, 'cy@example.com');
    const dee = await createUser(server, 'dee@example.com');
    const group = await createGroup(server, 'Clocks');
    const path = `/Groups/${group.id}`;
    const back = '?excludedAttributes=members';
    await aheadOfTheDatabase();
    // A plain add (the batched statement), a removal (a version slot), a rename (the group's row).
    const patches = [
      { op: 'add', path: 'members', value: [{ value: cy.id }] },
      { op: 'remove', path: `members[value eq "${cy.id}"]` },
      { op: 'replace', path: 'displayName', value: 'Clocks 2' },
    ];
    for (const operation of patches) {
      const response = await server.request('PATCH', `${path}${back}`, patch([operation]));
      await expectDatabaseTime(await stamped(response, path));
    }
    const replaced = await server.request('PUT', path, {
      schemas: [GROUP],
      displayName: 'Clocks 3',
      members: [{ value: dee.id }],
    });
    await expectDatabaseTime(await stamped(replaced, path));
  });
});
