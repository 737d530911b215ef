import type { Logger } from '../../log.js';
import type { RateBudget, RequestPriority } from './budget.js';

/**
 * What went wrong talking to Heroku, as the connector needs to act on it. `not-found` and `refused` are
 * answers (the edge is gone; a human must resolve it); `unauthorized` stops the tenant; `unavailable`
 * is worth retrying later (the job is retried by BullMQ once this client's own retries are spent).
 */
export type HerokuFailure = 'not-found' | 'refused' | 'unauthorized' | 'unavailable';

export class HerokuError extends Error {
  constructor(
    readonly failure: HerokuFailure,
    readonly status: number | undefined,
    /** Heroku's error id (e.g. `not_found`), when it sent one. */
    readonly errorId: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'HerokuError';
  }
}

export interface HerokuClientOptions {
  apiUrl: string;
  token: string;
  budget: RateBudget;
  priority: RequestPriority;
  log: Logger;
  timeoutMs?: number;
  /** Attempts for 5xx and network errors (429s are waited out separately). */
  attempts?: number;
  /** How long 429s may be waited out before the request gives up (and its job is retried). */
  rateLimitPatienceMs?: number;
}

export interface HerokuResponse<T> {
  status: number;
  body: T;
  nextRange: string | undefined;
}

const PAGE = 'id ..; max=1000;';

export class HerokuClient {
  /** Requests sent, including retries: what the benchmark and `platform check` report. */
  requests = 0;
  /** The last RateLimit-Remaining Heroku reported. */
  lastRemaining: number | undefined;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly patienceMs: number;

  constructor(private readonly options: HerokuClientOptions) {
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.attempts = options.attempts ?? 5;
    this.patienceMs = options.rateLimitPatienceMs ?? 120_000;
  }

  async request<T>(method: string, path: string, body?: unknown, range?: string): Promise<HerokuResponse<T>> {
    let attempt = 0;
    const patienceEnds = Date.now() + this.patienceMs;
    for (;;) {
      attempt += 1;
      await this.options.budget.acquire(this.options.priority);
      let response: Response;
      try {
        this.requests += 1;
        response = await fetch(`${this.options.apiUrl}${path}`, {
          method,
          headers: {
            Accept: 'application/vnd.heroku+json; version=3',
            Authorization: `Bearer ${this.options.token}`,
            'User-Agent': 'idsync',
            ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
            ...(range ? { Range: range } : {}),
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (error) {
        // Network error or timeout: the request may or may not have reached Heroku; every operation
        // idsync sends is idempotent, so sending it again is safe.
        if (attempt >= this.attempts) {
          throw new HerokuError(
            'unavailable',
            undefined,
            undefined,
            `${method} ${path}: ${(error as Error).message}`,
          );
        }
        await this.backoff(attempt, method, path, (error as Error).message);
        continue;
      }
      const remaining = Number(response.headers.get('ratelimit-remaining'));
      if (response.headers.has('ratelimit-remaining') && Number.isFinite(remaining)) {
        this.lastRemaining = remaining;
        await this.options.budget.observe(remaining);
      }
      if (response.status === 429) {
        await response.body?.cancel();
        if (Date.now() > patienceEnds) {
          throw new HerokuError(
            'unavailable',
            429,
            'rate_limit',
            `${method} ${path}: rate limited for too long`,
          );
        }
        // The bucket is empty: the next acquire waits for it to refill. Not counted as an attempt.
        await this.options.budget.observe(0);
        attempt -= 1;
        continue;
      }
      const text = await response.text();
      const parsed = text ? safeJson(text) : undefined;
      if (response.ok) {
        return {
          status: response.status,
          body: parsed as T,
          nextRange: response.headers.get('next-range') ?? undefined,
        };
      }
      const errorId = typeof parsed?.id === 'string' ? parsed.id : undefined;
      const message = `${method} ${path}: ${response.status} ${typeof parsed?.message === 'string' ? parsed.message : response.statusText}`;
      if (response.status >= 500) {
        if (attempt >= this.attempts) throw new HerokuError('unavailable', response.status, errorId, message);
        await this.backoff(attempt, method, path, `${response.status}`);
        continue;
      }
      if (response.status === 401) throw new HerokuError('unauthorized', 401, errorId, message);
      if (response.status === 404) throw new HerokuError('not-found', 404, errorId, message);
      throw new HerokuError('refused', response.status, errorId, message);
    }
  }

  /** Every item of a list, following Next-Range (206 Partial Content) with pages of 1,000. */
  async *list<T>(path: string): AsyncGenerator<T> {
    let range: string | undefined = PAGE;
    while (range) {
      const page: HerokuResponse<T[]> = await this.request<T[]>('GET', path, undefined, range);
      for (const item of page.body ?? []) yield item;
      range = page.status === 206 ? page.nextRange : undefined;
    }
  }

  async listAll<T>(path: string): Promise<T[]> {
    const items: T[] = [];
    for await (const item of this.list<T>(path)) items.push(item);
    return items;
  }

  private async backoff(attempt: number, method: string, path: string, why: string): Promise<void> {
    const delay = Math.min(250 * 2 ** (attempt - 1), 8_000) * (0.5 + Math.random() / 2);
    this.options.log.warn(
      { method, path, attempt, why, retryInMs: Math.round(delay) },
      'Heroku request failed; retrying',
    );
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

function safeJson(text: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
