import http from 'node:http';
import { sleep } from './checks.js';

export const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

export interface IdpFigures {
  requests: number;
  /** Answers by status, retries included. */
  statuses: Record<string, number>;
  /** Connection failures (the API process itself unreachable). */
  networkErrors: number;
  /** Slowest 503 answer: how long an IdP waited to be told to come back. */
  slowest503Ms: number;
}

/**
 * Sends SCIM the way Okta and Entra do: a 503 or 429 is retried after its Retry-After, a connection
 * failure after a short pause, until it succeeds. Anything else (a 500, a 4xx) is not retried and counts
 * against the run.
 */
export class RetryingIdp {
  readonly figures: IdpFigures = { requests: 0, statuses: {}, networkErrors: 0, slowest503Ms: 0 };
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

  constructor(
    private readonly port: number,
    private readonly token: string,
  ) {}

  async send(method: string, path: string, body?: unknown): Promise<{ status: number; body: string }> {
    for (;;) {
      const started = Date.now();
      let answer: { status: number; body: string; retryAfter: string | undefined };
      try {
        answer = await this.once(method, path, body);
      } catch {
        this.figures.networkErrors += 1;
        await sleep(500);
        continue;
      }
      this.figures.requests += 1;
      this.figures.statuses[answer.status] = (this.figures.statuses[answer.status] ?? 0) + 1;
      if (answer.status === 503 || answer.status === 429) {
        if (answer.status === 503) {
          this.figures.slowest503Ms = Math.max(this.figures.slowest503Ms, Date.now() - started);
        }
        const seconds = Number(answer.retryAfter ?? 1);
        await sleep(Math.min(Number.isFinite(seconds) ? seconds : 1, 5) * 1000);
        continue;
      }
      return { status: answer.status, body: answer.body };
    }
  }

  deactivate(userId: string) {
    return this.send('PATCH', `/scim/v2/Users/${userId}`, {
      schemas: [PATCH_OP],
      Operations: [{ op: 'replace', value: { active: false } }],
    });
  }

  addMember(groupId: string, userId: string) {
    return this.send('PATCH', `/scim/v2/Groups/${groupId}`, {
      schemas: [PATCH_OP],
      Operations: [{ op: 'add', path: 'members', value: [{ value: userId }] }],
    });
  }

  removeMember(groupId: string, userId: string) {
    return this.send('PATCH', `/scim/v2/Groups/${groupId}`, {
      schemas: [PATCH_OP],
      Operations: [{ op: 'remove', path: `members[value eq "${userId}"]` }],
    });
  }

  close(): void {
    this.agent.destroy();
  }

  private once(method: string, path: string, body: unknown) {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<{ status: number; body: string; retryAfter: string | undefined }>(
      (resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: this.port,
            method,
            path,
            agent: this.agent,
            timeout: 60_000,
            headers: {
              Authorization: `Bearer ${this.token}`,
              ...(payload
                ? { 'Content-Type': 'application/scim+json', 'Content-Length': Buffer.byteLength(payload) }
                : {}),
            },
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c) => {
              text += c;
            });
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                body: text,
                retryAfter: res.headers['retry-after'] as string | undefined,
              }),
            );
          },
        );
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        if (payload) req.write(payload);
        req.end();
      },
    );
  }
}

/** Runs `count` operations with at most `concurrency` in flight, the i-th not before `i * spacingMs`. */
export async function paced(
  count: number,
  concurrency: number,
  spacingMs: number,
  op: (i: number) => Promise<void>,
): Promise<void> {
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const due = started + i * spacingMs;
        if (due > Date.now()) await sleep(due - Date.now());
        await op(i);
      }
    }),
  );
}
