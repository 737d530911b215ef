import { beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { PAGE_SCAN_CONNECTIONS, PIPELINED_READ_CONNECTIONS } from '../src/runtime/pool-size.js';
import { listUsersJson, PIPELINED_PAGE_END } from '../src/scim/user-queries.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';
import { usersOfPage } from './support/scim-fixtures.js';
import { type ScimServer, startScimServer } from './support/scim-server.js';

/*
 * Issue 17: the SCIM edge's short reads (a user by id, a `userName eq` lookup, a page among the first 1,000 users) go to
 * a pool of PIPELINED_READ_CONNECTIONS that pipelines them when busy. Many at once must each get their
 * own answer, on no more sessions than that, while writes keep their own pool. Deep pages by offset go to
 * a pool of PAGE_SCAN_CONNECTIONS of their own.
 */

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const USERS = 24;

let scim: ScimServer;
const ids: string[] = [];

beforeAll(async () => {
  scim = await startScimServer();
  for (let i = 0; i < USERS; i++) {
    const response = await scim.request('POST', '/Users', {
      schemas: [USER],
      userName: `reader${i}@example.com`,
      name: { givenName: `Reader${i}`, familyName: 'Pipelined' },
    });
    expect(response.status).toBe(201);
    ids.push(((await response.json()) as { id: string }).id);
  }
});

const sessionsOf = async (applicationName: string) => {
  const [row] = await scim.database.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = ${applicationName}`;
  return row!.n;
};
const readSessions = () => sessionsOf('idsync reads');

describe('short SCIM reads many at once', () => {
  it('each get their own answer, on at most the pipelined pool, with a miss and a write among them', async () => {
    const reads = Array.from({ length: 96 }, async (_, n) => {
      const i = n % USERS;
      switch (n % 4) {
        case 0: {
          const response = await scim.request(
            'GET',
            `/Users?filter=${encodeURIComponent(`userName eq "READER${i}@example.com"`)}`,
          );
          const body = (await response.json()) as { totalResults: number; Resources: { id: string }[] };
          return {
            n,
            ok: response.status === 200 && body.totalResults === 1 && body.Resources[0]!.id === ids[i],
          };
        }
        case 1: {
          const response = await scim.request('GET', `/Users/${ids[i]}`);
          const body = (await response.json()) as { id: string; userName: string };
          return { n, ok: response.status === 200 && body.userName === `reader${i}@example.com` };
        }
        case 2: {
          const response = await scim.request('GET', `/Users?startIndex=${i + 1}&count=5`);
          const body = (await response.json()) as { Resources: { userName: string }[] };
          const names = body.Resources.map((r) => r.userName);
          const readers = Array.from(
            { length: Math.min(5, USERS - i) },
            (_, k) => `reader${i + k}@example.com`,
          );
          // The write below races these reads: a page reaching the end may or may not show the new user after the readers.
          const withWriter = readers.length < 5 ? [...readers, 'writer@example.com'] : readers;
          const same = (a: string[], b: string[]) => JSON.stringify(a) === JSON.stringify(b);
          return { n, ok: response.status === 200 && (same(names, readers) || same(names, withWriter)) };
        }
        default: {
          // A user not found between the hits: its empty answer must not shift the others' answers.
          const response = await scim.request(
            'GET',
            `/Users/00000000-0000-4000-8000-00000000${String(n).padStart(4, '0')}`,
          );
          return { n, ok: response.status === 404 };
        }
      }
    });
    const write = scim.request('POST', '/Users', { schemas: [USER], userName: 'writer@example.com' });
    const answers = await Promise.all(reads);
    expect(answers.filter((a) => !a.ok)).toEqual([]);
    expect((await write).status).toBe(201);

    const sessions = await readSessions();
    expect(sessions).toBeGreaterThan(0);
    expect(sessions).toBeLessThanOrEqual(PIPELINED_READ_CONNECTIONS);
  });
});

describe('deep pages many at once', () => {
  it('each get their own users, on at most the page-scan pool, while lookups are answered beside them', async () => {
    const deepUsers = PIPELINED_PAGE_END + 200;
    await scim.database.sql`INSERT INTO users (tenant_id, user_name, origin, created_at)
      SELECT ${scim.tenantId}, 'deep' || n || '@example.com', 'scim', now() + n * interval '1 second'
      FROM generate_series(1, ${deepUsers}) n`;
    const before = (await scim.request('GET', '/Users?count=0').then((r) => r.json())) as {
      totalResults: number;
    };
    const firstDeep = before.totalResults - deepUsers + 1;
    const pages = Array.from({ length: 16 }, async (_, n) => {
      const startIndex = firstDeep + PIPELINED_PAGE_END - 100 + n * 10;
      const response = await scim.request('GET', `/Users?startIndex=${startIndex}&count=10`);
      const body = (await response.json()) as { Resources: { userName: string }[] };
      const wanted = Array.from(
        { length: 10 },
        (_, i) => `deep${startIndex - firstDeep + 1 + i}@example.com`,
      );
      return (
        response.status === 200 &&
        JSON.stringify(body.Resources.map((r) => r.userName)) === JSON.stringify(wanted)
      );
    });
    const lookups = Array.from({ length: 16 }, async (_, i) => {
      const response = await scim.request('GET', `/Users/${ids[i % USERS]}`);
      return response.status === 200;
    });
    expect(await Promise.all(pages)).toEqual(Array(16).fill(true));
    expect(await Promise.all(lookups)).toEqual(Array(16).fill(true));
    const sessions = await sessionsOf('idsync page scans');
    expect(sessions).toBeGreaterThan(0);
    expect(sessions).toBeLessThanOrEqual(PAGE_SCAN_CONNECTIONS);
  });
});

describe('a pipelined pool', () => {
  it('fails only the queries that fail, not those sent behind them on the same connection', async () => {
    // One connection: every query below is sent on it before the first answers (postgres.js pipelines).
    const pool = connectDatabase(scim.database.url, { max: 1, statementTimeoutMs: 300 });
    try {
      const outcomes = await Promise.allSettled([
        pool.sql`SELECT 1 AS n`,
        pool.sql`SELECT 1 / 0 AS n`,
        pool.sql`SELECT 3 AS n`,
        pool.sql`SELECT pg_sleep(2), 4 AS n`,
        pool.sql`SELECT 5 AS n`,
      ]);
      expect(
        outcomes.map((o) => (o.status === 'fulfilled' ? o.value[0]!.n : (o.reason as { code: string }).code)),
      ).toEqual([
        1,
        '22012', // division_by_zero
        3,
        '57014', // query_canceled: the statement timeout
        5,
      ]);
    } finally {
      await pool.close();
    }
  });
});

describe('pages of users', () => {
  it('go to the pipelined pool when they read few users: near the start, or continuing a walk', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const users = PIPELINED_PAGE_END + 300;
    await database.sql`INSERT INTO users (tenant_id, user_name, origin, created_at)
      SELECT ${tenant.id}, 'user' || n || '@example.com', 'scim', now() - (${users} - n) * interval '1 second'
      FROM generate_series(1, ${users}) n`;
    // One connection each, so what each ran can be read back from it.
    const main = connectDatabase(database.url, { max: 1 });
    const pipelined = connectDatabase(database.url, { max: 1 });
    const pageScans = connectDatabase(database.url, { max: 1 });
    const pools = { main: main.db, pipelined: pipelined.db, pageScans: pageScans.db };
    try {
      const page = (startIndex: number, connection?: string) =>
        listUsersJson(pools, tenant.id, undefined, { startIndex, count: 100 }, 'http://x', true, connection);
      // Every user of the page, in order: a page that ended on the wrong user would start the next wrong.
      const namesFrom = (startIndex: number) =>
        Array.from({ length: 100 }, (_, i) => `user${startIndex + i}@example.com`);
      // A walker from the first page to past PIPELINED_PAGE_END, then someone reading one deep page.
      for (let startIndex = 1; startIndex <= PIPELINED_PAGE_END + 201; startIndex += 100) {
        const walked = usersOfPage(await page(startIndex, 'walker'));
        expect(walked.map((user) => user.userName)).toEqual(namesFrom(startIndex));
      }
      const deep = usersOfPage(await page(PIPELINED_PAGE_END + 101));
      expect(deep.map((user) => user.userName)).toEqual(namesFrom(PIPELINED_PAGE_END + 101));
      const ran = (pool: typeof main) =>
        pool.sql<{ kind: string; calls: number }[]>`
            SELECT CASE WHEN statement LIKE '%IS DISTINCT FROM%' THEN 'after if unchanged'
                WHEN statement LIKE '%(users.created_at, users.id) >%' THEN 'after' ELSE 'offset' END AS kind,
              (generic_plans + custom_plans)::int AS calls
            FROM pg_prepared_statements
            WHERE statement LIKE '%user_counts%' AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY 1`;
      // The walk's first page by offset and its 12 continuations on the pipelined pool; the deep page by
      // index (seeking from the walk's end there, since nothing changed) on the page-scan pool, where it
      // would have counted by offset had something changed; nothing on the main one.
      expect(await ran(pipelined)).toEqual([
        { kind: 'after', calls: 12 },
        { kind: 'offset', calls: 1 },
      ]);
      expect(await ran(pageScans)).toEqual([{ kind: 'after if unchanged', calls: 1 }]);
      expect(await ran(main)).toEqual([]);
    } finally {
      await main.close();
      await pipelined.close();
      await pageScans.close();
    }
  });
});
