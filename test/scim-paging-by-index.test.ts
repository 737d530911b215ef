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
