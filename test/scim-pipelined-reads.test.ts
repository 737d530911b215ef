import { beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { PIPELINED_READ_CONNECTIONS } from '../src/runtime/pool-size.js';
import { type ScimServer, startScimServer } from './support/scim-server.js';

/*
 * Issue 17: the SCIM edge's short reads (a user by id, a `userName eq` lookup, a page among the first 1,000 users) go to
 * a pool of PIPELINED_READ_CONNECTIONS that pipelines them when busy. Many at once must each get their
 * own answer, on no more sessions than that, while writes keep their own pool.
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

const readSessions = async () => {
  const [row] = await scim.database.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'idsync reads'`;
  return row!.n;
};

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
          const body = (await response.json()) as { totalResults: number; Resources: unknown[] };
          return { n, ok: response.status === 200 && body.Resources.length === Math.min(5, USERS - i) };
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
