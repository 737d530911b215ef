import { createHash } from 'node:crypto';

/*
 * A webhook URL is often its own credential (Slack, Teams and most chat webhooks put the secret in the
 * path), so idsync shows it in full only once, in the response that creates the endpoint. Everywhere
 * else (lists, deliveries, the console, audit rows) it is scheme and host plus a short hash of the path
 * and query: enough to tell endpoints apart and to match one against a URL you hold, not to use it.
 * Migration 0022 computes the same value in SQL for endpoints that existed before.
 */

const ORIGIN = /^https?:\/\/[^/?#]*/;

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** `https://hooks.slack.com/…#3f2a1c` for `https://hooks.slack.com/services/T0/B0/secret`. */
export function shownUrl(url: string): string {
  const origin = ORIGIN.exec(url)?.[0] ?? '';
  return `${origin}/…#${sha256(url.slice(origin.length)).slice(0, 6)}`;
}

/** What keeps one live endpoint per URL and tenant, without storing the URL readable. */
export const urlDigest = (url: string) => sha256(url);

/** Stored before the URL was sealed (migration 0022): the worker seals it at its next start. */
export const UNSEALED_PREFIX = 'plain:';
