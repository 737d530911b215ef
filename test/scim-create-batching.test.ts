import { describe, expect, it, vi } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { KeyedStatementBatchers, StatementBatcher } from '../src/db/statement-batcher.js';
import { userCreator } from '../src/scim/user-queries.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { json } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * Issue 17: concurrent creates (an IdP's initial push) share statements. Each caller must still get its
 * own answer, and a row PostgreSQL refuses must not take the others down.
 */

const newUser = (userName: string, attributes: Record<string, unknown> = {}, active = true) => ({
  userName,
  externalId: null,
  active,
  attributes,
});
const audit = { actor: 'scim', correlationId: undefined };

/** A database with two tenants, and a creator on it. */
async function twoTenants() {
  const database = await createTestDatabase();
  const { tenant: acme } = await createTenant(database.db, 'acme', 'test');
  const { tenant: globex } = await createTenant(database.db, 'globex', 'test');
  return { database, acme, globex, create: userCreator(database.db, 'http://x/scim/v2') };
}

/** A CSV import holding a user's name in its open transaction; ROLLBACK and release it when done. */
async function holdName(database: TestDatabase, tenantId: string, userName: string) {
  const holder = await database.sql.reserve();
  await holder`BEGIN`;
  await holder`INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenantId}, ${userName}, 'csv')`;
  return holder;
}

describe('creating users concurrently', () => {
  it('writes them in shared statements, each with its outbox and audit row in the same transaction', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const create = userCreator(database.db, 'http://x/scim/v2');
    const names = Array.from({ length: 40 }, (_, i) => `user${i}@example.com`);
    // The same name twice in one statement, differing in case only: the first wins.
    const outcomes = await Promise.all([
      ...names.map((name, i) => create(tenant.id, newUser(name, {}, i % 3 !== 0), audit)),
      create(tenant.id, newUser('USER7@example.com'), audit),
    ]);
    expect(outcomes.slice(0, 40).every((o) => o.outcome === 'created')).toBe(true);
    expect(outcomes[40]).toEqual({ outcome: 'userNameTaken' });

    const created = outcomes.flatMap((o) => (o.outcome === 'created' ? [o] : []));
    const resources = created.map((o) => JSON.parse(o.resource) as { userName: string; active: boolean });
    expect(resources.map((r) => r.userName)).toEqual(names);
    expect(resources.map((r) => r.active)).toEqual(names.map((_, i) => i % 3 !== 0));
    const rows = await database.sql<{ id: string; user_tx: string; outbox_tx: string; audit_tx: string }[]>`
      SELECT u.id::text, u.xmin::text AS user_tx, o.xmin::text AS outbox_tx, a.xmin::text AS audit_tx
      FROM users u
      JOIN outbox o ON o.subject_id = u.id::text AND o.subject_type = 'user'
      JOIN audit_log a ON a.subject_id = u.id::text AND a.action = 'scim.user.created'
      WHERE u.tenant_id = ${tenant.id}`;
    expect(rows.map((r) => r.id).sort()).toEqual(created.map((o) => o.id).sort());
    expect(rows.every((r) => r.outbox_tx === r.user_tx && r.audit_tx === r.user_tx)).toBe(true);
    // The first goes at once while the others wait, then the waiting 40 share one statement.
    expect(new Set(rows.map((r) => r.user_tx)).size).toBeLessThanOrEqual(2);
  });

  it('answers each caller alone when PostgreSQL refuses one row of a shared statement', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const create = userCreator(database.db, 'http://x/scim/v2');
    // jsonb has no NUL character (22P05): this row fails wherever it is written.
    const settled = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        create(tenant.id, newUser(`user${i}@example.com`, i === 6 ? { nickName: 'a\u0000b' } : {}), audit),
      ),
    );
    expect(settled.map((s) => s.status)).toEqual([
      ...Array(6).fill('fulfilled'),
      'rejected',
      ...Array(3).fill('fulfilled'),
    ]);
    expect(((settled[6] as PromiseRejectedResult).reason as { code?: string }).code).toBe('22P05');
    const [counts] = await database.sql<{ users: number; events: number }[]>`
      SELECT (SELECT count(*)::int FROM users WHERE tenant_id = ${tenant.id}) AS users,
        (SELECT count(*)::int FROM outbox WHERE tenant_id = ${tenant.id}) AS events`;
    expect(counts).toEqual({ users: 9, events: 9 });
  });

  it('creates a user whose name only a deprovisioned user held', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const create = userCreator(database.db, 'http://x/scim/v2');
    const first = await create(tenant.id, newUser('leaver@example.com'), audit);
    expect(first.outcome).toBe('created');
    expect((await create(tenant.id, newUser('Leaver@example.com'), audit)).outcome).toBe('userNameTaken');
    await database.sql`UPDATE users SET deprovisioned_at = now() WHERE tenant_id = ${tenant.id}`;
    expect((await create(tenant.id, newUser('Leaver@example.com'), audit)).outcome).toBe('created');
  });

  it('does not deadlock when two processes create the same names in opposite orders', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    // Two pools and two creators, as two serving processes have.
    const other = connectDatabase(database.url, { max: 2 });
    try {
      const here = userCreator(database.db, 'http://x/scim/v2');
      const there = userCreator(other.db, 'http://x/scim/v2');
      const names = Array.from({ length: 400 }, (_, i) => `both${i}@example.com`);
      const settled = await Promise.allSettled([
        ...names.map((name) => here(tenant.id, newUser(name), audit)),
        ...names.toReversed().map((name) => there(tenant.id, newUser(name), audit)),
      ]);
      // A deadlock would abort one statement (40P01) and fail every caller in it.
      expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
      const outcomes = settled.map((s) => (s as PromiseFulfilledResult<{ outcome: string }>).value.outcome);
      expect(outcomes.filter((o) => o === 'created')).toHaveLength(400);
      const [row] = await database.sql<
        { n: number }[]
      >`SELECT count(*)::int AS n FROM users WHERE tenant_id = ${tenant.id}`;
      expect(row!.n).toBe(400);
    } finally {
      await other.close();
    }
  });

  it('creates other users, of the tenant and of others, while one waits for a name another transaction holds', async () => {
    const { database, acme, globex, create } = await twoTenants();
    const holder = await holdName(database, acme.id, 'held@example.com');
    try {
      let heldSettled = false;
      const held = create(acme.id, newUser('held@example.com'), audit).finally(() => {
        heldSettled = true;
      });
      const others = await Promise.all([
        ...Array.from({ length: 5 }, (_, i) => create(acme.id, newUser(`acme${i}@example.com`), audit)),
        ...Array.from({ length: 5 }, (_, i) => create(globex.id, newUser(`globex${i}@example.com`), audit)),
      ]);
      expect(others.map((o) => o.outcome)).toEqual(Array(10).fill('created'));
      expect(heldSettled).toBe(false);
      await holder`ROLLBACK`;
      expect((await held).outcome).toBe('created');
    } finally {
      holder.release();
    }
  });

  it('writes again, one by one, the users of a statement cancelled by its timeout', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    // Only the held statement may reach the timeout: long enough for the others on a loaded machine, each
    // on a connection that has not run this statement (nor loaded its tables and triggers) before.
    const timed = connectDatabase(database.url, { max: 4, statementTimeoutMs: 2_000 });
    const holder = await holdName(database, tenant.id, 'held@example.com');
    try {
      const create = userCreator(timed.db, 'http://x/scim/v2');
      // The first create goes alone; the next four wait for it and share a statement, one of them held.
      const first = create(tenant.id, newUser('first@example.com'), audit);
      const sharing = ['a@example.com', 'held@example.com', 'b@example.com', 'c@example.com'].map((name) =>
        create(tenant.id, newUser(name), audit),
      );
      expect((await first).outcome).toBe('created');
      const settled = await Promise.allSettled(sharing);
      expect(
        settled.map((s) =>
          s.status === 'fulfilled' ? s.value.outcome : (s.reason as { code: string }).code,
        ),
      ).toEqual(['created', '57014', 'created', 'created']);
      await holder`ROLLBACK`;
      const names = await database.sql<{ user_name: string }[]>`
        SELECT user_name FROM users WHERE tenant_id = ${tenant.id} ORDER BY user_name`;
      expect(names.map((n) => n.user_name)).toEqual([
        'a@example.com',
        'b@example.com',
        'c@example.com',
        'first@example.com',
      ]);
    } finally {
      holder.release();
      await timed.close();
    }
  });

  it('keeps tenants apart in a shared statement', async () => {
    const { database, acme, globex, create } = await twoTenants();
    const outcomes = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        create(i % 2 ? acme.id : globex.id, newUser('same@example.com'), audit),
      ),
    );
    expect(outcomes.filter((o) => o.outcome === 'created')).toHaveLength(2);
    const rows = await database.sql<{ tenant_id: string }[]>`SELECT tenant_id::text FROM users ORDER BY 1`;
    expect(rows.map((r) => r.tenant_id).sort()).toEqual([acme.id, globex.id].sort());
  });
});

describe('POST /Users at the same time with the same userName', () => {
  it('creates one user and answers the others 409 in SCIM error JSON', async () => {
    const server = await startScimServer();
    const responses = await Promise.all(
      Array.from({ length: 8 }, () =>
        server.request('POST', '/Users', {
          schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
          userName: 'twice@example.com',
        }),
      ),
    );
    expect(responses.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409, 409, 409, 409]);
    const refused = await json(responses.find((r) => r.status === 409)!);
    expect(refused).toMatchObject({ status: '409', scimType: 'uniqueness' });
  });
});

describe('a statement batcher', () => {
  const options = {
    flights: 1,
    maxBatch: 3,
    maxWeight: 100,
    weigh: (row: string) => row.length,
    slowAfterMs: 60_000,
    isRolledBack: (error: unknown) => (error as { code?: string }).code === '22P05',
  };
  /** A write function whose first call waits for `release`; what each call was given is in `writes`. */
  const heldFirstWrite = (then: (rows: string[]) => Promise<string[]>) => {
    const writes: string[][] = [];
    let release: () => void = () => {};
    const first = new Promise<void>((resolve) => {
      release = resolve;
    });
    const write = async (rows: string[]) => {
      writes.push(rows);
      if (writes.length === 1) {
        await first;
        return rows;
      }
      return then(rows);
    };
    return { writes, write, release: () => release() };
  };

  it('fails every caller of a statement whose failure is not a row’s, without writing again', async () => {
    const { writes, write, release } = heldFirstWrite(async () => {
      throw Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' });
    });
    const batcher = new StatementBatcher<string, string>(write, options);
    const settled = Promise.allSettled(['a', 'b', 'c', 'd', 'e', 'f'].map((row) => batcher.submit(row)));
    release();
    const outcomes = await settled;
    expect(writes).toEqual([['a'], ['b', 'c', 'd'], ['e', 'f']]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', ...Array(5).fill('rejected')]);
  });

  it('puts no more weight in a statement than allowed, and a heavier row alone', async () => {
    const { writes, write, release } = heldFirstWrite(async (rows) => rows);
    const batcher = new StatementBatcher<string, string>(write, options);
    const rows = ['a', 'b'.repeat(60), 'c'.repeat(50), 'd'.repeat(150), 'e'];
    const settled = Promise.all(rows.map((row) => batcher.submit(row)));
    release();
    expect(await settled).toEqual(rows);
    expect(writes.map((batch) => batch.map((row) => row[0]))).toEqual([['a'], ['b'], ['c'], ['d'], ['e']]);
  });

  it('keeps a batcher per key only while it has rows running or waiting', async () => {
    const { writes, write, release } = heldFirstWrite(async (rows) => rows);
    const keyed = new KeyedStatementBatchers<string, string>(
      (key, onIdle) =>
        new StatementBatcher<string, string>(
          (rows) => (key === 'held' ? write(rows) : Promise.resolve(rows.map((r) => `${key}:${r}`))),
          { ...options, onIdle },
        ),
    );
    const held = Promise.all(['a', 'b'].map((row) => keyed.submit('held', row)));
    expect(await Promise.all(['x', 'y'].map((row) => keyed.submit('free', row)))).toEqual([
      'free:x',
      'free:y',
    ]);
    // The free key's statements ended with nothing waiting: only the held key still has a batcher.
    await expect.poll(() => keyed.size).toBe(1);
    release();
    expect(await held).toEqual(['a', 'b']);
    expect(writes).toEqual([['a'], ['b']]);
    await expect.poll(() => keyed.size).toBe(0);
    // A failed statement ends its batcher's work too.
    const failing = new KeyedStatementBatchers<string, string>(
      (_key, onIdle) =>
        new StatementBatcher<string, string>(async () => Promise.reject(new Error('lost')), {
          ...options,
          onIdle,
        }),
    );
    await expect(failing.submit('k', 'row')).rejects.toThrow('lost');
    await expect.poll(() => failing.size).toBe(0);
  });

  it('sends the rows behind a slow statement in a statement of their own', async () => {
    const { writes, write, release } = heldFirstWrite(async (rows) => rows);
    const batcher = new StatementBatcher<string, string>(write, { ...options, slowAfterMs: 50 });
    const held = batcher.submit('held');
    const behind = Promise.all(['x', 'y'].map((row) => batcher.submit(row)));
    // Answered while the first statement still runs.
    expect(await behind).toEqual(['x', 'y']);
    expect(writes).toEqual([['held'], ['x', 'y']]);
    release();
    expect(await held).toBe('held');
  });

  it('without a slow period, keeps the rows behind a long statement waiting for it', async () => {
    vi.useFakeTimers();
    try {
      const { writes, write, release } = heldFirstWrite(async (rows) => rows);
      const { slowAfterMs: _, ...withoutSlowPeriod } = options;
      const batcher = new StatementBatcher<string, string>(write, withoutSlowPeriod);
      const held = batcher.submit('held');
      const behind = Promise.all(['x', 'y'].map((row) => batcher.submit(row)));
      // No timer to look again (one of Infinity ms would fire every millisecond), and long past any slow
      // period nothing else was written.
      expect(vi.getTimerCount()).toBe(0);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(writes).toEqual([['held']]);
      release();
      expect(await held).toBe('held');
      expect(await behind).toEqual(['x', 'y']);
      expect(writes).toEqual([['held'], ['x', 'y']]);
    } finally {
      vi.useRealTimers();
    }
  });
});
