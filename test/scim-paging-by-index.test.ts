import { Agent, fetch } from 'undici';
import { describe, expect, it } from 'vitest';
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
