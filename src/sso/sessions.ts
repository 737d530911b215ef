import { sql } from 'drizzle-orm';
import type { Request, Response } from 'express';
import type { Database } from '../db/client.js';
import { issueCredential, parseCredential, secretMatches } from '../security/credentials.js';

/*
 * Server-side sessions: the cookie holds a `sess_…` credential whose hash lives in the tokens table, so a
 * session is revoked like any token — by the user, by sign-out, or by the deprovisioning cascade when the
 * IdP deactivates the user through SCIM (the next page load is signed out).
 */

export const SESSION_COOKIE = 'idsync_session';
export const SESSION_IDLE_MS = 60 * 60_000;
export const SESSION_ABSOLUTE_MS = 12 * 60 * 60_000;

export interface Session {
  id: string;
  userId: string;
  userName: string;
}

/** The IdP login a session came from, so only that IdP can end it (Single Logout, saml_sessions). */
export interface SamlSessionLink {
  connectionId: string;
  nameId: string;
  nameIdFormat: string | null;
  sessionIndex: string | null;
}

/** Starts a session; with `link`, records in the same statement which SAML login it came from. */
export async function startSession(
  db: Pick<Database, 'execute'>,
  tenantId: string,
  userId: string,
  link?: SamlSessionLink,
): Promise<string> {
  const credential = issueCredential('sess');
  const token = sql`
    INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash, expires_at, last_used_at)
    VALUES (${tenantId}, ${userId}, 'session', ${credential.tokenId}, ${credential.secretHash},
      now() + ${`${SESSION_ABSOLUTE_MS} milliseconds`}::interval, now())`;
  await db.execute(
    link
      ? sql`WITH token AS (${token} RETURNING id)
          INSERT INTO saml_sessions (token_id, tenant_id, connection_id, name_id, name_id_format, session_index)
          SELECT id, ${tenantId}, ${link.connectionId}, ${link.nameId}, ${link.nameIdFormat}, ${link.sessionIndex}
          FROM token`
      : token,
  );
  return credential.token;
}

/**
 * The live session behind the request's cookie, or undefined. The idle clock is refreshed only after the
 * secret matched: the token id alone (it is not secret) must not keep a session from idling out.
 */
export async function currentSession(
  db: Database,
  tenantId: string,
  req: Request,
): Promise<Session | undefined> {
  const token = readCookie(req, SESSION_COOKIE);
  const parsed = token ? parseCredential(token) : undefined;
  if (parsed?.kind !== 'sess') return undefined;
  const live = sql`t.revoked_at IS NULL AND t.expires_at > now()
    AND t.last_used_at > now() - ${`${SESSION_IDLE_MS} milliseconds`}::interval
    AND u.active AND u.deprovisioned_at IS NULL`;
  const [row] = await db.execute<{ id: string; user_id: string; user_name: string; secret_hash: string }>(sql`
    SELECT t.id::text, t.user_id::text, u.user_name, t.secret_hash
    FROM tokens t JOIN users u ON u.id = t.user_id
    WHERE t.token_id = ${parsed.tokenId} AND t.kind = 'session' AND t.tenant_id = ${tenantId} AND ${live}`);
  if (!row || !secretMatches(parsed.secret, row.secret_hash)) return undefined;
  // Checked again as it is refreshed: a sign-out or deprovision may have landed in between.
  const [refreshed] = await db.execute(sql`
    UPDATE tokens t SET last_used_at = now() FROM users u
    WHERE t.id = ${row.id} AND u.id = t.user_id AND ${live}
    RETURNING t.id`);
  if (!refreshed) return undefined;
  return { id: row.id, userId: row.user_id, userName: row.user_name };
}

export async function endSession(db: Database, sessionId: string): Promise<void> {
  await db.execute(
    sql`UPDATE tokens SET revoked_at = now(), revoked_reason = 'signed out' WHERE id = ${sessionId}`,
  );
}

/** HttpOnly, SameSite=Lax, and Secure except on plain-http localhost (the laptop default). */
export function setSessionCookie(res: Response, token: string, publicUrl: string): void {
  const local = isPlainHttpLocalhost(publicUrl);
  res.cookie(SESSION_COOKIE, token, {
    httpOnly: true,
    sameSite: 'lax',
    secure: !local,
    path: '/',
    maxAge: SESSION_ABSOLUTE_MS,
  });
}

export function clearSessionCookie(res: Response): void {
  res.clearCookie(SESSION_COOKIE, { path: '/' });
}

export function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.get('Cookie') ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key !== name) continue;
    try {
      return decodeURIComponent(value.join('='));
    } catch {
      return undefined; // a malformed %-escape is no credential, not a server error
    }
  }
  return undefined;
}

/** idsync on a laptop: browsers keep no `Secure` cookie from plain http, so cookies there go without it. */
export function isPlainHttpLocalhost(publicUrl: string): boolean {
  const url = new URL(publicUrl);
  return url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
}
