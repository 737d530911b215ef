import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { RateBudget, type RequestPriority } from '../src/platform/heroku/budget.js';
import { HerokuClient } from '../src/platform/heroku/client.js';
import { uniquePrefix } from './support/database.js';
import { HerokuSimulator } from './support/heroku-simulator.js';
import { capturingLogger } from './support/log-capture.js';

/*
 * A layoff on a slow Heroku: each request takes longer than the moment the budget used to hold scans
 * back after a deprovision's request was sent (2 s), so a scan slipped in between a layoff's removals.
 * Now a deprovision request counts as under way until it has finished, and the scan waits for all of
 * them.
 */
describe('deprovisions go first on the shared Heroku budget (simulator)', async () => {
  const simulator = new HerokuSimulator({ refillPerMinute: 60_000, latencyMs: 2_100 });
  await simulator.start();
  const people = ['ann@example.com', 'bo@example.com'];
  simulator.addTeam('core', [
    ['boss@example.com', 'admin'],
    ...people.map((p): [string, 'member'] => [p, 'member']),
  ]);
  const redis = new Redis(inject('redisUrl'));
  const { log } = capturingLogger('silent');
  const key = uniquePrefix('layoff');
  const clientAt = (priority: RequestPriority) =>
    new HerokuClient({
      apiUrl: simulator.url,
      token: simulator.token,
      budget: new RateBudget(redis, key, { refillPerMinute: 60_000, reserve: 0 }),
      priority,
      log,
    });
  afterAll(async () => {
    redis.disconnect();
    await simulator.stop();
  });

  it('a scan started during a layoff sends its request only after the last removal finished', async () => {
    const deprovision = clientAt('deprovision');
    const layoff = (async () => {
      for (const person of people) {
        await deprovision.request('DELETE', `/teams/core/members/${encodeURIComponent(person)}`);
      }
    })();
    // The scan starts while the first removal is in flight.
    await expect.poll(() => deprovision.requests, { timeout: 5_000, interval: 10 }).toBe(1);
    const scan = clientAt('scan').request('GET', '/teams/core');
    await Promise.all([layoff, scan]);

    const order = simulator.requests.map((r) => `${r.method} ${r.at}`);
    const removals = simulator.requests.filter((r) => r.method === 'DELETE');
    const read = simulator.requests.find((r) => r.method === 'GET')!;
    expect(removals.map((r) => r.status)).toEqual([200, 200]);
    // `at` is when the simulator answered; the scan's request took latencyMs itself, so it was sent
    // after the last removal had been answered.
    expect(read.at - simulator.latencyMs, order.join(', ')).toBeGreaterThanOrEqual(removals.at(-1)!.at);
    expect(simulator.violations).toEqual([]);
  });
});
