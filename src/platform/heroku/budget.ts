import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { noteBudgetRemaining } from '../../metrics/platform-budget.js';

/**
 * Who is asking for a request. Deprovisioning never waits behind anyone: while a deprovision request is
 * under way anywhere (waiting for the budget, in flight, or backing off before a retry) and for a moment
 * after the last one finished, everyone else waits, and they also leave a reserve untouched.
 */
export type RequestPriority = 'deprovision' | 'reconcile' | 'scan';

export interface BudgetState {
  /** Requests left now, as last reported by the platform plus what has refilled since (estimated). */
  remaining: number | null;
  /**
   * The most the platform has reported: the bucket is at least this big. Null until an answer said more
   * than 0 (a 0 says only that the bucket is empty now, not how big it is).
   */
  capacity: number | null;
  observedAt: Date | null;
  /** The configured refill times the platform's RateLimit-Multiplier. */
  refillPerMinute: number;
}

/*
 * One token bucket per platform account, kept in Redis so every worker process shares it. The platform
 * is the authority: every response's RateLimit-Remaining overwrites the estimate; between responses the
 * estimate is decremented per request and refilled at the configured rate. Atomic in a Lua script, so
 * two workers cannot both take the last request.
 *
 * The refill is capped at the most the platform has reported, which is only a lower bound of the
 * bucket's size: so never below what the asker needs (else a reserve larger than anything reported yet
 * would hold scans back for ever), and not at all before the platform has reported more than 0 (a first
 * answer of 429 with RateLimit-Remaining 0 would otherwise cap it at 0 and nothing would go again).
 * Answers {wait in ms, why}: `taken`, `refill` (the bucket must refill) or `deprovisions` (waiting
 * behind them, which ends when they do).
 */
const ACQUIRE = `
local remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
local now = tonumber(ARGV[1])
local priority = ARGV[2]
local rate = tonumber(ARGV[3])
local reserve = tonumber(ARGV[4])
local activeMs = tonumber(ARGV[5])
if priority == 'deprovision' then
  redis.call('SET', KEYS[2], '1', 'PX', activeMs)
else
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) > 0 then return {250, 'deprovisions'} end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return {math.max(redis.call('PTTL', KEYS[2]), 1), 'deprovisions'}
  end
end
if remaining == nil then return {0, 'taken'} end
local at = tonumber(redis.call('HGET', KEYS[1], 'at'))
local capacity = tonumber(redis.call('HGET', KEYS[1], 'capacity'))
local multiplier = tonumber(redis.call('HGET', KEYS[1], 'multiplier')) or 1
rate = rate * multiplier
local needed = 1
if priority ~= 'deprovision' then needed = 1 + reserve end
local estimate = remaining + (now - at) * rate
if capacity ~= nil then estimate = math.min(math.max(capacity, needed), estimate) end
if estimate >= needed then
  redis.call('HSET', KEYS[1], 'remaining', tostring(estimate - 1), 'at', tostring(now))
  return {0, 'taken'}
end
return {math.ceil((needed - estimate) / rate), 'refill'}
`;

const OBSERVE = `
local remaining = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'remaining', ARGV[1], 'at', ARGV[2])
local capacity = tonumber(redis.call('HGET', KEYS[1], 'capacity'))
if remaining > 0 and (capacity == nil or remaining > capacity) then
  redis.call('HSET', KEYS[1], 'capacity', ARGV[1])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'multiplier', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1
`;

/** How long after a deprovision's last request finished the others keep waiting (the job's next step). */
const DEPROVISION_ACTIVE_MS = 2_000;

/**
 * How long a deprovision request counts as under way without renewing its lease: longer than a request's
 * timeout plus its longest back-off, so a live one never lapses, yet a worker killed mid-request does not
 * hold scans back for more than this.
 */
const DEPROVISION_LEASE_MS = 60_000;

/*
 * A deprovision request under way: its lease in the account's set of them (score: when it lapses).
 * Ending it starts the short tail after which the others may go again.
 */
const LEASE = `
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
`;
const RELEASE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
return 1
`;

/** The bucket would not refill before the asker's deadline: the platform's budget is exhausted. */
export class RateBudgetExhausted extends Error {
  constructor() {
    super('the rate budget did not refill before the deadline');
    this.name = 'RateBudgetExhausted';
  }
}

export class RateBudget {
  constructor(
    private readonly redis: Redis,
    /** Names the platform account, never the token: e.g. `heroku:<account id>`. */
    private readonly key: string,
    private readonly options: { refillPerMinute: number; reserve: number },
  ) {
    // A rate of 0 would make every wait for a refill endless.
    if (!(options.refillPerMinute > 0 && Number.isFinite(options.refillPerMinute)))
      throw new RangeError(`refillPerMinute must be a positive number, not ${options.refillPerMinute}`);
  }

  private get keys(): [bucket: string, recentDeprovision: string, deprovisionsUnderWay: string] {
    return [
      `idsync:budget:${this.key}`,
      `idsync:budget:${this.key}:deprovisioning`,
      `idsync:budget:${this.key}:deprovisions`,
    ];
  }

  /**
   * Runs one deprovision request's whole life (waiting for the budget, 429s, retries) as under way:
   * scans and reconciles of this account send nothing until it and every other one has finished, and
   * for a moment after, so a layoff's removals go first however long each of them takes.
   */
  async deprovisioning<T>(work: () => Promise<T>): Promise<T> {
    const [, recent, underWay] = this.keys;
    const lease = randomUUID();
    const renew = () =>
      this.redis.eval(LEASE, 1, underWay, Date.now() + DEPROVISION_LEASE_MS, lease, DEPROVISION_LEASE_MS);
    await renew();
    const renewing = setInterval(() => void renew().catch(() => undefined), DEPROVISION_LEASE_MS / 3);
    renewing.unref();
    try {
      return await work();
    } finally {
      clearInterval(renewing);
      // The removal's outcome matters more than the release: if Redis cannot take it, the lease lapses.
      await this.redis
        .eval(RELEASE, 2, underWay, recent, lease, DEPROVISION_ACTIVE_MS)
        .catch(() => undefined);
    }
  }

  /**
   * Waits until this request may be sent, then takes it from the bucket. Waiting for the bucket to
   * refill ends at `deadline` (epoch ms) with RateBudgetExhausted; waiting behind deprovisions does
   * not, since it ends when they do (each of their requests is bounded by its own deadline).
   */
  async acquire(priority: RequestPriority, signal?: AbortSignal, deadline?: number): Promise<void> {
    const ratePerMs = this.options.refillPerMinute / 60_000;
    for (;;) {
      signal?.throwIfAborted();
      const [waitMs, why] = (await this.redis.eval(
        ACQUIRE,
        3,
        ...this.keys,
        Date.now(),
        priority,
        ratePerMs,
        this.options.reserve,
        DEPROVISION_ACTIVE_MS,
      )) as [number, 'taken' | 'refill' | 'deprovisions'];
      if (why === 'taken') return;
      let pause = Math.min(waitMs, 5_000);
      if (why === 'refill' && deadline !== undefined) {
        // The platform may have refilled faster than estimated: look again at the deadline itself.
        if (Date.now() >= deadline) throw new RateBudgetExhausted();
        pause = Math.min(pause, deadline - Date.now());
      }
      await sleep(Math.max(pause, 1), undefined, signal ? { signal } : {});
    }
  }

  /**
   * Takes the platform's word for what is left (its RateLimit-Remaining header) and, when it sends one,
   * its RateLimit-Multiplier: the refill rate is scaled by it until it says otherwise.
   */
  async observe(remaining: number, multiplier?: number): Promise<void> {
    noteBudgetRemaining('heroku', this.key, remaining);
    await this.redis.eval(OBSERVE, 1, this.keys[0], remaining, Date.now(), multiplier ?? '');
  }

  async state(): Promise<BudgetState> {
    const stored = await this.redis.hgetall(this.keys[0]);
    const refillPerMinute = this.options.refillPerMinute * (Number(stored.multiplier) || 1);
    if (stored.remaining === undefined) {
      return { remaining: null, capacity: null, observedAt: null, refillPerMinute };
    }
    const at = Number(stored.at);
    const capacity = stored.capacity === undefined ? null : Number(stored.capacity);
    const refilled = Number(stored.remaining) + ((Date.now() - at) * refillPerMinute) / 60_000;
    const estimate = capacity === null ? refilled : Math.min(capacity, refilled);
    return {
      remaining: Math.floor(estimate),
      capacity,
      observedAt: new Date(at),
      refillPerMinute,
    };
  }
}
