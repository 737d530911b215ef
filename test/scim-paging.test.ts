import { Agent, fetch } from 'undici';
import { describe, expect, it } from 'vitest';
import { createUser, json } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * Issue 17: a client walking /Users page by page (on one connection) gets each next page from where its
 * last one ended (by the order index), not by counting past every earlier user again.
 */
describe('walking the users page by page', async () => {
  const server = await startScimServer();
  const names: string[] = [];
  for (let i = 0; i < 35; i++) {
    names.push(`walker${String(i).padStart(2, '0')}@example.com`);
    await createUser(server, names[i]!);
  }
  // One client: one keep-alive connection, as a walking IdP holds.
  const walker = new Agent({ connections: 1 });
  const page = async (startIndex: number, count: number) => {
    const response = await fetch(`${server.baseUrl}/Users?startIndex=${startIndex}&count=${count}`, {
      headers: { Authorization: `Bearer ${server.token}` },
      dispatcher: walker,
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { totalResults: number; Resources: { userName: string }[] };
    return {
      total: body.totalResults,
      names: body.Resources.map((r) => r.userName),
    };
  };

  it('returns every user once, in creation order, with the total of all users', async () => {
    const seen: string[] = [];
    for (let start = 1; start <= 35; start += 10) {
      const { total, names: got } = await page(start, 10);
      expect(total).toBe(35);
      seen.push(...got);
    }
    expect(seen).toEqual(names);
    // Random access (no page ended there) is the plain offset.
    expect((await page(7, 3)).names).toEqual(names.slice(6, 9));
  });

  it('continues where the last page ended when users before it were removed meanwhile', async () => {
    const first = await page(1, 10);
    expect(first.names).toEqual(names.slice(0, 10));
    const [removed] = (await json(await server.request('GET', `/Users?filter=userName eq "${names[2]}"`)))
      .Resources as { id: string }[];
    expect((await server.request('DELETE', `/Users/${removed!.id}`)).status).toBe(204);
    // An offset would now skip walker10, whom the client never saw.
    const next = await page(11, 10);
    expect(next.total).toBe(34);
    expect(next.names).toEqual(names.slice(10, 20));
  });
});
