import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { connectorFactory } from '../src/platform/factory.js';
import { RateBudget, type RequestPriority } from '../src/platform/heroku/budget.js';
import { HerokuClient, HerokuError } from '../src/platform/heroku/client.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { HerokuSimulator } from './support/heroku-simulator.js';
import { capturingLogger } from './support/log-capture.js';

/** Fails with `what` if `work` has not settled within `ms`: a hang shows as a failure, not a timeout. */
async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/*
 * A daemon whose very first answer from Heroku is a 429 (another integration of the same account has
 * used the hour's budget): RateLimit-Remaining 0 says only "empty now", not how big the bucket is. It
 * used to be learnt as the bucket's size, so the estimate could never refill and a deprovision waited
 * forever.
 */
describe('a budget that starts on an empty Heroku bucket (simulator)', async () => {
  const database = await createTestDatabase();
  const redis = new Redis(inject('redisUrl'));
  const secretKey = 'e'.repeat(40);
  const { log } = capturingLogger('silent');
  // 10 requests a second, on both sides: a refill is a matter of 100 ms.
  const simulator = new HerokuSimulator({ refillPerMinute: 600 });
  await simulator.start();
  simulator.addTeam('core', [
    ['boss@example.com', 'admin'],
    ['ann@example.com', 'member'],
    ['bo@example.com', 'member'],
  ]);
  afterAll(async () => {
    await simulator.stop();
    redis.disconnect();
  });
  const clientOf = (
    key: string,
    priority: RequestPriority,
    budget: { refillPerMinute: number; reserve: number },
    options: { rateLimitPatienceMs?: number; onBudgetExhausted?: () => Promise<void> } = {},
  ) =>
    new HerokuClient({
      apiUrl: simulator.url,
      token: simulator.token,
      budget: new RateBudget(redis, key, budget),
      priority,
      log,
      ...options,
    });

  it('a deprovision whose first answer is 429 with RateLimit-Remaining 0 completes once Heroku refills', async () => {
    const { tenant } = await createTenant(database.db, 'empty-start', 'test');
    const budgetKey = uniquePrefix('empty-start');
    await simulator.connect(database.db, tenant.id, secretKey, {
      budgetKey,
      refillPerMinute: 600,
      reserve: 0,
    });
    const connector = await connectorFactory({
      database,
      redis,
      config: { secretKey, dataDir: '/nonexistent', databaseUrl: undefined },
      log,
    })(tenant.id, 'deprovision');
    simulator.setBudget({ remaining: 0 });
    const before = simulator.requests.length;

    const removals = (async () => {
      for (const account of ['ann@example.com', 'bo@example.com'])
        expect(await connector.apply({ kind: 'remove-team-member', account, team: 'core' })).toEqual({
          status: 'applied',
        });
    })();
    await within(15_000, 'the deprovision', removals);

    const answers = simulator.requests.slice(before);
    expect(answers[0]!.status).toBe(429);
    expect(answers.filter((r) => r.method === 'DELETE' && r.status === 200)).toHaveLength(2);
    expect(simulator.grantsOf('ann@example.com')).toEqual([]);
    expect(simulator.grantsOf('bo@example.com')).toEqual([]);
    // Every answer said 0 or 1 left: 0 taught nothing, the bucket is at least as big as the most seen.
    const state = await new RateBudget(redis, `heroku:${budgetKey}`, {
      refillPerMinute: 600,
      reserve: 0,
    }).state();
    expect(state.capacity === null || state.capacity >= 1).toBe(true);
    expect(simulator.violations).toEqual([]);
  }, 30_000);

  it('an empty answer on a budget never seen leaves its size unknown, and a later answer sets it', async () => {
    const budget = new RateBudget(redis, uniquePrefix('unknown-size'), { refillPerMinute: 600, reserve: 0 });
    await budget.observe(0);
    expect((await budget.state()).capacity).toBeNull();
    await within(5_000, 'the first acquire after an empty answer', budget.acquire('deprovision'));
    await budget.observe(42);
    await budget.observe(0);
    expect((await budget.state()).capacity).toBe(42);
  });

  it('a scan is not stuck when the reserve is above the largest remaining Heroku has reported yet', async () => {
    simulator.setBudget({ remaining: 3 });
    // idsync refills fast here: what is tested is that the estimate may reach reserve + 1 at all.
    const scan = clientOf(uniquePrefix('low-first'), 'scan', { refillPerMinute: 60_000, reserve: 100 });
    await within(10_000, 'the first read', scan.request('GET', '/teams/core'));
    // Heroku said 2 left: the bucket is at least 2, not at most 2.
    await within(10_000, 'the second read', scan.request('GET', '/teams/core'));
    expect(scan.requests).toBe(2);
  }, 30_000);

  it('waiting for the budget is bounded by the request’s patience even when no 429 comes back', async () => {
    // Heroku refills at one a minute and idsync estimates the same: after the first 429 the next
    // request could not be sent for a minute, far beyond this request's patience.
    simulator.setBudget({ remaining: 0, refillPerMinute: 1 });
    let alerts = 0;
    const client = clientOf(
      uniquePrefix('bounded'),
      'deprovision',
      { refillPerMinute: 1, reserve: 0 },
      {
        rateLimitPatienceMs: 500,
        onBudgetExhausted: async () => {
          alerts += 1;
        },
      },
    );
    const started = Date.now();
    const failure = await within(
      10_000,
      'the removal',
      client.request('DELETE', '/teams/core/members/boss%40example.com').then(
        () => undefined,
        (error: unknown) => error,
      ),
    );
    expect(failure).toBeInstanceOf(HerokuError);
    expect((failure as HerokuError).failure).toBe('unavailable');
    expect((failure as HerokuError).message).toMatch(/rate limited for too long/);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(alerts).toBe(1);
    simulator.setBudget({ remaining: 4_500, refillPerMinute: 600 });
  }, 30_000);
});
