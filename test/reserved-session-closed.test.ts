import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { connectDatabase, withReservedSession } from '../src/db/client.js';
import { createTestDatabase } from './support/database.js';

/*
 * A job's reserved connection that closes under it (PostgreSQL restarted, its backend terminated) goes
 * back to the pool when the job ends. postgres.js put the socketless connection among the open ones:
 * the next statement on it never settled and the pool lost the slot for good, until every slot was
 * gone and each job waited forever with nothing running in PostgreSQL (the fault suite's pg-outage
 * wedge). patches/postgres+3.4.9.patch keeps it closed, to be reconnected on demand.
 */
describe('a reserved connection closed under its job', async () => {
  const database = await createTestDatabase();
  const handle = connectDatabase(database.url, { max: 1 });
  const killer = postgres(database.url, { max: 1, onnotice: () => {} });
  afterAll(async () => {
    await handle.sql.end();
    await killer.end();
  });

  it('leaves the pool whole: the next statements and reservations get a live session', async () => {
    for (let round = 0; round < 3; round++) {
      const failed = await withReservedSession(handle, async ({ sql }) => {
        const [session] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
        await killer`SELECT pg_terminate_backend(${session!.pid})`;
        return sql`SELECT 1`.then(
          () => 'answered',
          (error: Error) => error.message,
        );
      });
      expect(failed).not.toBe('answered');
      // Every statement settles (a statement caught in the close may fail; the IdP's retry or the job's
      // back-off covers that), and the one slot of the pool serves statements and reservations again.
      const settled = (work: Promise<unknown>) =>
        Promise.race([
          work.then(
            (value) => ({ value }),
            (error: Error) => ({ error: error.message }),
          ),
          new Promise<{ hung: true }>((resolve) => setTimeout(() => resolve({ hung: true }), 5_000)),
        ]);
      const eventually = async (work: () => Promise<unknown>) => {
        for (let attempt = 0; attempt < 3; attempt++) {
          const outcome = await settled(work());
          expect(outcome).not.toHaveProperty('hung');
          if ('value' in outcome) return outcome.value;
        }
        throw new Error('no attempt succeeded');
      };
      expect(await eventually(() => handle.sql`SELECT 2 AS two`)).toEqual([{ two: 2 }]);
      expect(
        await eventually(() =>
          withReservedSession(handle, async ({ sql }) => (await sql`SELECT 3 AS three`)[0]),
        ),
      ).toEqual({ three: 3 });
    }
  });
});
