import type { Logger } from '../../log.js';
import { platformRateLimited } from '../../metrics/registry.js';
import { type RateBudget, RateBudgetExhausted, type RequestPriority } from './budget.js';

/**
 * What went wrong talking to Heroku, classified by Heroku's error `id` (Platform API reference, error
 * table) as the connector needs to act on it:
 * - `credentials`: the token or its account is unusable everywhere (401 `unauthorized`, 403
 *   `suspended`, 402 `delinquent`): the tenant stops and an operator is alerted;
 * - `forbidden`: 403 `forbidden`, this token may not act on this resource (e.g. not an admin of that
 *   team); the connector decides whether it is the whole account;
 * - `two-factor`: 403 `two_factor`, the resource wants a second factor the service account cannot give;
 * - `not-found`: 404, the resource or its container is missing;
 * - `range-not-accepted`: 416 `requested_range_not_satisfiable`, a sort field the list does not accept;
 * - `refused`: any other 4xx (e.g. `invalid_params`, the last admin of a team): a human must resolve it;
 * - `unavailable`: worth retrying later (the job is retried once this client's own retries are spent).
 */
export type HerokuFailure =
  | 'credentials'
  | 'forbidden'
  | 'two-factor'
  | 'not-found'
  | 'range-not-accepted'
  | 'refused'
  | 'unavailable';

export function classifyFailure(status: number, errorId: string | undefined): HerokuFailure {
  if (status === 401 || status === 402 || errorId === 'suspended' || errorId === 'delinquent')
    return 'credentials';
  if (errorId === 'two_factor') return 'two-factor';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not-found';
  if (status === 416) return 'range-not-accepted';
  return 'refused';
}

export class HerokuError extends Error {
  constructor(
    readonly failure: HerokuFailure,
    readonly status: number | undefined,
    /** Heroku's error id (e.g. `not_found`), when it sent one. */
    readonly errorId: string | undefined,
    message: string,
    private readonly headers: { acceptRanges?: string | undefined } = {},
  ) {
    super(message);
    this.name = 'HerokuError';
  }

  /** The sort fields a list named in `Accept-Ranges` when it refused one. */
  acceptedSortFields(): string[] {
    return (this.headers.acceptRanges ?? '')
      .split(',')
      .map((f) => f.trim())
      .filter((f) => /^[a-z_]+$/.test(f));
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
  /**
   * How long 429s, and waiting for the budget to refill, may be waited out before the request gives up
   * (and its job is retried).
   */
  rateLimitPatienceMs?: number;
  /** Told when 429s or the wait for a refill outlasted the patience: the shared budget is exhausted (an alert, issue 15). */
  onBudgetExhausted?: () => Promise<void>;
}

export interface HerokuResponse<T> {
  status: number;
  body: T;
  nextRange: string | undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A request path fit for logs and error messages: an e-mail segment (raw or percent-encoded) becomes
 * `{account}` and a Heroku id (of a member, team or app) `{id}`. Team and app names stay; who it was is
 * on the receipt, not in the log.
 */
export function redactedPath(path: string): string {
  return path
    .split('/')
    .map((segment) => {
      let decoded = segment;
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        // A malformed escape is kept as sent; it is checked as it stands.
      }
      if (decoded.includes('@')) return '{account}';
      if (UUID.test(decoded)) return '{id}';
      return segment;
    })
    .join('/');
}

/** The largest page Heroku serves (reference "Ranges"). */
const PAGE_SIZE = 1000;

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

  /**
   * `accept` overrides the media type for the few resources served under a variant (the audit trail:
   * `version=3.audit-trail`, heroku-enterprise audits commands).
   */
  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    range?: string,
    accept = 'application/vnd.heroku+json; version=3',
  ): Promise<HerokuResponse<T>> {
    if (this.options.priority !== 'deprovision') return this.send(method, path, body, range, accept);
    return this.options.budget.deprovisioning(() => this.send<T>(method, path, body, range, accept));
  }

  private async send<T>(
    method: string,
    path: string,
    body?: unknown,
    range?: string,
    accept = 'application/vnd.heroku+json; version=3',
  ): Promise<HerokuResponse<T>> {
    let attempt = 0;
    const shown = `${method} ${redactedPath(path)}`;
    const patienceEnds = Date.now() + this.patienceMs;
    for (;;) {
      attempt += 1;
      try {
        await this.options.budget.acquire(this.options.priority, undefined, patienceEnds);
      } catch (error) {
        if (!(error instanceof RateBudgetExhausted)) throw error;
        await this.budgetExhausted();
        throw new HerokuError(
          'unavailable',
          undefined,
          'rate_limit',
          `${shown}: rate limited for too long (the rate budget did not refill within ${this.patienceMs} ms)`,
        );
      }
      let response: Response;
      try {
        this.requests += 1;
        response = await fetch(`${this.options.apiUrl}${path}`, {
          method,
          headers: {
            Accept: accept,
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
        // A transport error's text can echo the request, headers included: never let the token out.
        const why = (error as Error).message
          .replaceAll(this.options.token, '[token]')
          .replaceAll(path, redactedPath(path));
        if (attempt >= this.attempts) {
          throw new HerokuError('unavailable', undefined, undefined, `${shown}: ${why}`);
        }
        await this.backoff(attempt, shown, why);
        continue;
      }
      const remaining = Number(response.headers.get('ratelimit-remaining'));
      if (response.headers.has('ratelimit-remaining') && Number.isFinite(remaining)) {
        this.lastRemaining = remaining;
        // Heroku's own throttling client scales its pacing by RateLimit-Multiplier
        // (zombocom/rate_throttle_client); the budget refills that much faster.
        const multiplier = Number(response.headers.get('ratelimit-multiplier'));
        await this.options.budget.observe(
          remaining,
          Number.isFinite(multiplier) && multiplier > 0 ? multiplier : undefined,
        );
      }
      if (response.status === 429) {
        platformRateLimited.inc({ platform: 'heroku' });
        await response.body?.cancel();
        if (Date.now() > patienceEnds) {
          await this.budgetExhausted();
          throw new HerokuError('unavailable', 429, 'rate_limit', `${shown}: rate limited for too long`);
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
      const message = `${shown}: ${response.status} ${typeof parsed?.message === 'string' ? parsed.message : response.statusText}`;
      if (response.status >= 500) {
        if (attempt >= this.attempts) throw new HerokuError('unavailable', response.status, errorId, message);
        await this.backoff(attempt, shown, `${response.status}`);
        continue;
      }
      throw new HerokuError(classifyFailure(response.status, errorId), response.status, errorId, message, {
        acceptRanges: response.headers.get('accept-ranges') ?? undefined,
      });
    }
  }

  /**
   * Every item of a list, following Next-Range (206 Partial Content) with pages of 1,000, sorted by
   * `sortField`: each list accepts its own fields (the schema's `ranges`: `email` for team members) and
   * answers 416 for others. On a 416 the first page is asked again sorted by the first field Heroku's
   * `Accept-Ranges` names (reference "Ranges"), so an endpoint whose fields no source documents still
   * reads.
   */
  async *list<T>(path: string, sortField = 'id'): AsyncGenerator<T> {
    let range: string | undefined = `${sortField} ..; max=${PAGE_SIZE};`;
    let first = true;
    while (range) {
      let page: HerokuResponse<T[]>;
      try {
        page = await this.request<T[]>('GET', path, undefined, range);
      } catch (error) {
        const accepted = first && error instanceof HerokuError ? error.acceptedSortFields() : [];
        if (error instanceof HerokuError && error.failure === 'range-not-accepted' && accepted[0]) {
          this.options.log.warn(
            { path: redactedPath(path), refused: sortField, accepted },
            'Heroku refused the sort field of a list; using one it accepts',
          );
          range = `${accepted[0]} ..; max=${PAGE_SIZE};`;
          first = false;
          continue;
        }
        throw error;
      }
      first = false;
      for (const item of page.body ?? []) yield item;
      range = page.status === 206 ? page.nextRange : undefined;
    }
  }

  async listAll<T>(path: string, sortField?: string): Promise<T[]> {
    const items: T[] = [];
    for await (const item of this.list<T>(path, sortField)) items.push(item);
    return items;
  }

  /** Raises the budget-exhausted alert; the request's own failure matters more than the alert's. */
  private async budgetExhausted(): Promise<void> {
    await this.options
      .onBudgetExhausted?.()
      .catch((error: unknown) =>
        this.options.log.error({ err: error }, 'could not raise the budget-exhausted alert'),
      );
  }

  /** `request` is the method and the redacted path: no account identifier reaches the log. */
  private async backoff(attempt: number, request: string, why: string): Promise<void> {
    const delay = Math.min(250 * 2 ** (attempt - 1), 8_000) * (0.5 + Math.random() / 2);
    this.options.log.warn(
      { request, attempt, why, retryInMs: Math.round(delay) },
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
