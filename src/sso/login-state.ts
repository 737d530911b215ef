import { randomBytes } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Redis } from 'ioredis';
import { hashSecret, secretMatches } from '../security/credentials.js';
import { SamlRefusal } from './refusal.js';
import { isPlainHttpLocalhost, readCookie } from './sessions.js';

/*
 * Binds an SP-initiated login to the browser that started it (login CSRF: a response obtained in one
 * browser must not be redeemable in another). `/login` gives the browser a random secret in a cookie and
 * stores the AuthnRequest id with the secret's hash in Redis (any API process can answer the ACS); the
 * ACS takes the request id from the signed assertion, spends it once, and requires the same browser.
 *
 * The IdP's POST to the ACS is cross-site, so the cookie is `SameSite=None; Secure`. On plain-http
 * localhost (the laptop default) browsers refuse `SameSite=None` without `Secure`, so there the cookie has
 * no SameSite attribute: Firefox and Safari send it; Chrome sends it on a cross-site POST within two
 * minutes of /login, and always when the IdP is itself on localhost.
 */

export const LOGIN_STATE_COOKIE = 'idsync_saml_state';
export const LOGIN_STATE_TTL_MS = 10 * 60_000;
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

interface PendingLogin {
  connectionId: string;
  browser: string;
}

const key = (tenantId: string, requestId: string) => `idsync:saml:request:${tenantId}:${requestId}`;

/** A fresh AuthnRequest id, e.g. `_3f…`: an NCName (SAML IDs must not start with a digit). */
export function newRequestId(): string {
  return `_${randomBytes(20).toString('hex')}`;
}

/** Records a login this browser started; reuses the browser's secret so several tabs can sign in at once. */
export async function rememberLoginStart(
  redis: Redis,
  req: Request,
  res: Response,
  login: { tenantId: string; requestId: string; connectionId: string; publicUrl: string },
): Promise<void> {
  const presented = readCookie(req, LOGIN_STATE_COOKIE);
  const secret =
    presented && SECRET_PATTERN.test(presented) ? presented : randomBytes(32).toString('base64url');
  const pending: PendingLogin = { connectionId: login.connectionId, browser: hashSecret(secret) };
  await redis.set(key(login.tenantId, login.requestId), JSON.stringify(pending), 'PX', LOGIN_STATE_TTL_MS);
  const local = isPlainHttpLocalhost(login.publicUrl);
  res.cookie(LOGIN_STATE_COOKIE, secret, {
    httpOnly: true,
    path: '/sso/',
    maxAge: LOGIN_STATE_TTL_MS,
    ...(local ? {} : { secure: true, sameSite: 'none' as const }),
  });
}

/**
 * Spends the request a signed assertion answers: it must be one idsync issued in the last 10 minutes,
 * through this IdP connection, to the browser that now presents it.
 */
export async function redeemLoginStart(
  redis: Redis,
  req: Request,
  login: { tenantId: string; requestId: string; connectionId: string },
): Promise<void> {
  const stored = await redis.getdel(key(login.tenantId, login.requestId));
  if (!stored) throw new SamlRefusal('InResponseTo names no pending request (unknown, expired or used)');
  const pending = JSON.parse(stored) as PendingLogin;
  if (pending.connectionId !== login.connectionId)
    throw new SamlRefusal('the response comes from another IdP than the request went to');
  const secret = readCookie(req, LOGIN_STATE_COOKIE);
  if (!secret || !secretMatches(secret, pending.browser))
    throw new SamlRefusal('the login was started in another browser (no matching state cookie)');
}
