import { Agent, fetch } from 'undici';
import { describe, expect, it } from 'vitest';
import { PIPELINED_PAGE_END } from '../src/scim/user-queries.js';
import { createUser } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * RFC 7644 §3.4.2.4: startIndex is the 1-based index of the first result in the current result set.
 * A page end remembered from another client's walk (src/scim/user-queries.ts pageEnds) must not make a
 * request for startIndex=11 answer from before the current 11th user: a client fetching pages by index
 * (e.g. in parallel, from totalResults) would get users twice.
 */
describe('a remembered page end after removals', async () => {
  const server = await startScimServer();
  const ids: string[] = [];
  for (let i = 0; i < 30; i++)
    ids.push((await createUser(server, `stale${String(i).padStart(2, '0')}@example.com`)).id);
  // Two clients, each on its own keep-alive connection.
  const walker = new Agent({ connections: 1 });
  const indexer = new Agent({ connections: 1 });
  const page = async (startIndex: number, count: number, client = indexer) => {
    const response = await fetch(`${server.baseUrl}/Users?startIndex=${startIndex}&count=${count}`, {
      headers: { Authorization: `Bearer ${server.token}` },
      dispatcher: client,
    });
    const body = (await response.json()) as { Resources: { userName: string }[] };
    return body.Resources.map((r) => r.userName);
  };

  it('serves startIndex=11 from the current 11th user to a client that fetches by index', async () => {
    await page(1, 10, walker); // another client's walk: remembers the end at offset 10 (stale09)
    for (const id of ids.slice(0, 5))
      expect((await server.request('DELETE', `/Users/${id}`)).status).toBe(204);
    // A second client fetches pages 2 and 1 by index (in parallel; here page 2 first).
    const second = await page(11, 10);
    const first = await page(1, 10);
    expect(first[9]).toBe('stale14@example.com');
    expect(second[0]).toBe('stale15@example.com');
    expect(new Set([...first, ...second]).size).toBe(20);
  });
});

/*
 * A page by index from any client starts after another client's page end at that offset when the
 * tenant's live users are unchanged since (user_counts.changes), and by offset when they changed.
 */
describe('page ends shared between clients', async () => {
  const server = await startScimServer();
  const ids: string[] = [];
  for (let i = 0; i < 40; i++)
    ids.push((await createUser(server, `shared${String(i).padStart(2, '0')}@example.com`)).id);
  const clients = Array.from({ length: 4 }, () => new Agent({ connections: 1 }));
  const page = async (startIndex: number, count: number, client: Agent) => {
    const response = await fetch(`${server.baseUrl}/Users?startIndex=${startIndex}&count=${count}`, {
      headers: { Authorization: `Bearer ${server.token}` },
      dispatcher: client,
    });
    const body = (await response.json()) as { totalResults: number; Resources: { userName: string }[] };
    return body.Resources.map((r) => r.userName);
  };

  it('seeks from where another client’s page ended while nothing changed, and counts again once something did', async () => {
    expect(await page(1, 10, clients[0]!)).toHaveLength(10); // ends at offset 10 on shared09
    // Move shared00 behind everyone without counting it as a change (triggers off): only a page that
    // seeks from shared09 can still start at shared10; one by offset would start at shared11.
    await server.database.sql.begin(async (tx) => {
      await tx`SET LOCAL session_replication_role = replica`;
      await tx`UPDATE users SET created_at = now() + interval '1 day' WHERE id = ${ids[0]!}`;
    });
    const second = await page(11, 10, clients[1]!);
    expect(second[0]).toBe('shared10@example.com');
    expect(second).toHaveLength(10);

    // A counted change (a deprovisioning before the cursor): the next page is by offset again.
    expect((await server.request('DELETE', `/Users/${ids[5]!}`)).status).toBe(204);
    const third = await page(21, 10, clients[2]!);
    const everyone = await page(1, 100, clients[3]!);
    expect(third).toEqual(everyone.slice(20, 30));
  });

  it('never shares the end of a walk that went on past a removal, even once nothing changes any more', async () => {
    const walker = new Agent({ connections: 1 });
    const everyone = async () => page(1, 100, new Agent({ connections: 1 }));
    const walked = await page(1, 10, walker);
    expect(walked).toContain('shared02@example.com');
    expect((await server.request('DELETE', `/Users/${ids[2]!}`)).status).toBe(204);
    // The walk goes on from where it stopped (by design, it skips no one), then sees no further change:
    // its ends are one place off the current offsets, for it alone.
    await page(11, 10, walker);
    await page(21, 10, walker);
    const current = await everyone();
    expect(await page(31, 10, clients[0]!)).toEqual(current.slice(30, 40));
  });

  it('counts every change to the set of live users, a reactivation beside a deprovisioning included', async () => {
    const changes = async () =>
      Number(
        (
          await server.database.sql<{ n: string }[]>`
            SELECT sum(changes)::text AS n FROM user_counts WHERE tenant_id = ${server.tenantId}`
        )[0]!.n,
      );
    const before = await changes();
    // One statement deprovisions one user and reactivates another: the live count stays, the set does not.
    await server.database
      .sql`UPDATE users SET deprovisioned_at = CASE WHEN id = ${ids[6]!}::uuid THEN now() END
      WHERE id IN (${ids[6]!}::uuid, ${ids[5]!}::uuid)`;
    expect(await changes()).toBe(before + 2);
  });
});

/*
 * Past the first PIPELINED_PAGE_END users, a page by index with no end remembered at its offset seeks to
 * the nearest end before it and skips from there, under the same condition: the tenant unchanged.
 */
describe('deep pages by index seeking to an earlier page end', async () => {
  const server = await startScimServer();
  const users = PIPELINED_PAGE_END + 300;
  await server.database.sql`INSERT INTO users (tenant_id, user_name, origin, created_at)
    SELECT ${server.tenantId}, 'deep' || lpad(n::text, 5, '0') || '@example.com', 'scim',
      now() - (${users} - n) * interval '1 second'
    FROM generate_series(1, ${users}) n`;
  const clients = Array.from({ length: 4 }, () => new Agent({ connections: 1 }));
  const page = async (startIndex: number, count: number, client: Agent) => {
    const response = await fetch(`${server.baseUrl}/Users?startIndex=${startIndex}&count=${count}`, {
      headers: { Authorization: `Bearer ${server.token}` },
      dispatcher: client,
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { Resources: { userName: string }[] };
    return body.Resources.map((r) => r.userName);
  };
  const name = (n: number) => `deep${String(n).padStart(5, '0')}@example.com`;

  it('skips from the nearest end while nothing changed, and counts from the start once something did', async () => {
    const end = PIPELINED_PAGE_END + 100;
    expect((await page(PIPELINED_PAGE_END + 1, 100, clients[0]!)).at(-1)).toBe(name(end));
    // The first user moved behind everyone without counting it as a change: a page that seeks from the
    // end above and skips 100 starts at the user 201 places after it was; one by offset, 200 places on.
    await server.database.sql.begin(async (tx) => {
      await tx`SET LOCAL session_replication_role = replica`;
      await tx`UPDATE users SET created_at = now() + interval '1 day' WHERE user_name = ${name(1)}`;
    });
    expect((await page(end + 101, 100, clients[1]!))[0]).toBe(name(end + 101));

    const counted = await server.database.sql<{ id: string }[]>`
      SELECT id FROM users WHERE user_name = ${name(5)}`;
    expect((await server.request('DELETE', `/Users/${counted[0]!.id}`)).status).toBe(204);
    const afterChange = await page(end + 101, 100, clients[2]!);
    const everyone = [...(await page(1, 1000, clients[3]!)), ...(await page(1001, 1000, clients[3]!))];
    expect(afterChange).toEqual(everyone.slice(end + 100, end + 200));
  });
});
