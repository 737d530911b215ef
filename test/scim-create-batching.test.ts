import { describe, expect, it } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { StatementBatcher } from '../src/db/statement-batcher.js';
import { userCreator } from '../src/scim/user-queries.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';
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

  it('keeps tenants apart in a shared statement', async () => {
    const database = await createTestDatabase();
    const { tenant: acme } = await createTenant(database.db, 'acme', 'test');
    const { tenant: globex } = await createTenant(database.db, 'globex', 'test');
    const create = userCreator(database.db, 'http://x/scim/v2');
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
  it('fails every caller of a statement whose failure is not a row’s, without writing again', async () => {
    const writes: string[][] = [];
    let release: () => void = () => {};
    const firstWrite = new Promise<void>((resolve) => {
      release = resolve;
    });
    const batcher = new StatementBatcher<string, string>(
      async (rows) => {
        writes.push(rows);
        if (writes.length === 1) {
          await firstWrite;
          return rows;
        }
        throw Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' });
      },
      { flights: 1, maxBatch: 3, isRowError: (error) => (error as { code?: string }).code === '22P05' },
    );
    const settled = Promise.allSettled(['a', 'b', 'c', 'd', 'e', 'f'].map((row) => batcher.submit(row)));
    release();
    const outcomes = await settled;
    expect(writes).toEqual([['a'], ['b', 'c', 'd'], ['e', 'f']]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', ...Array(5).fill('rejected')]);
  });
});
