import { sql } from 'drizzle-orm';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { accountKeyOf } from '../db/schema.js';
import { isUuid } from '../db/uuid.js';
import { forbidden, invalid, notFound } from '../errors.js';
import { issueCredential, parseCredential, secretMatches } from '../security/credentials.js';
import { grantableScopes, readTokenScopes } from './scopes.js';

/*
 * Personal API tokens idsync issues for a user. Shown once, stored as a hash, checked by platform
 * services through RFC 7662 introspection, which reads the database every time: a revocation, an expiry
 * or a deprovisioning takes effect for every API process at once, with no cache to wait out.
 */

export interface IssuedToken {
  id: string;
  token: string;
  expiresAt: string | null;
}

const MAX_LIFETIME_SECONDS = 366 * 24 * 3600;
/** A token's lifetime when none is asked for: every way of issuing one (CLI, admin API, account page) agrees. */
export const DEFAULT_LIFETIME_SECONDS = 90 * 24 * 3600;

export async function issueApiToken(
  db: Database,
  tenantId: string,
  userRef: string,
  requested: { scopes: string[]; expiresInSeconds: number | undefined; label?: string; actor: string },
): Promise<IssuedToken> {
  // A token that never expires is never issued: an admin API call without a lifetime gets the default.
  const options = { ...requested, expiresInSeconds: requested.expiresInSeconds ?? DEFAULT_LIFETIME_SECONDS };
  if (options.expiresInSeconds <= 0 || options.expiresInSeconds > MAX_LIFETIME_SECONDS) {
    throw invalid('a token must expire within a year (and after now)');
  }
  readTokenScopes(options.scopes);
  const byId = isUuid(userRef);
  const [user] = await db.execute<{ id: string; active: boolean; gone: boolean }>(sql`
    SELECT id::text, active, deprovisioned_at IS NOT NULL AS gone FROM users
    WHERE tenant_id = ${tenantId} AND ${byId ? sql`id = ${userRef}` : sql`user_name_key = ${accountKeyOf(userRef)} AND deprovisioned_at IS NULL`}`);
  if (!user || user.gone) throw notFound(`no user ${userRef}`);
  if (!user.active) throw invalid(`user ${userRef} is deactivated; no token can be issued`);
  const grantable = await grantableScopes(db, tenantId, user.id);
  const beyond = options.scopes.filter((s) => !(grantable as string[]).includes(s));
  if (beyond.length > 0) {
    throw forbidden(
      `${userRef} may not give a token ${beyond.join(', ')}: the tenant's allowed scopes and the user's current access grant ${grantable.join(', ') || 'none'}`,
    );
  }
  const credential = issueCredential('api');
  const expiresAt = options.expiresInSeconds
    ? new Date(Date.now() + options.expiresInSeconds * 1000).toISOString()
    : null;
  const row = await db.transaction(async (tx) => {
    const [issued] = await tx.execute<{ id: string }>(sql`
      INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash, label, scopes, expires_at)
      VALUES (${tenantId}, ${user.id}, 'api', ${credential.tokenId}, ${credential.secretHash}, ${options.label ?? null},
        ${sql.param(options.scopes)}::text[], ${expiresAt}::timestamptz)
      RETURNING id::text`);
    await recordAudit(tx, {
      tenantId,
      actor: options.actor,
      action: 'token.issued',
      subjectType: 'user',
      subjectId: user.id,
      after: { tokenId: issued!.id, scopes: options.scopes, expiresAt },
    });
    return issued!;
  });
  return { id: row.id, token: credential.token, expiresAt };
}

/** RFC 7662 §2.2: `{active: false}` and nothing else for any token that is not currently good. */
export type Introspection =
  | { active: false }
  | {
      active: true;
      scope: string;
      token_type: 'Bearer';
      sub: string;
      username: string;
      tenant: string;
      iat: number;
      exp?: number;
    };

/**
 * RFC 7662 for one tenant's client: another tenant's token, a session cookie (never a bearer
 * credential), or a token that is not good now answers `{active: false}`. The scopes reported are
 * those the token was given that the user's current access still grants.
 */
export async function introspect(db: Database, token: string, tenantId: string): Promise<Introspection> {
  const parsed = parseCredential(token);
  if (parsed?.kind !== 'api') return { active: false };
  const [row] = await db.execute<{
    secret_hash: string;
    usable: boolean;
    user_id: string;
    user_name: string;
    tenant: string;
    scopes: string[];
    iat: number;
    exp: number | null;
  }>(sql`
    SELECT t.secret_hash, t.user_id::text, u.user_name, tn.name AS tenant, array_to_json(t.scopes) AS scopes,
      extract(epoch FROM t.created_at)::bigint AS iat, extract(epoch FROM t.expires_at)::bigint AS exp,
      (t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
        AND u.active AND u.deprovisioned_at IS NULL) AS usable
    FROM tokens t JOIN users u ON u.id = t.user_id JOIN tenants tn ON tn.id = t.tenant_id
    WHERE t.token_id = ${parsed.tokenId} AND t.kind = 'api' AND t.tenant_id = ${tenantId}`);
  if (!row || !secretMatches(parsed.secret, row.secret_hash) || !row.usable) return { active: false };
  const grantable = new Set<string>(await grantableScopes(db, tenantId, row.user_id));
  return {
    active: true,
    scope: row.scopes.filter((s) => grantable.has(s)).join(' '),
    token_type: 'Bearer',
    sub: row.user_id,
    username: row.user_name,
    tenant: row.tenant,
    iat: Number(row.iat),
    ...(row.exp === null ? {} : { exp: Number(row.exp) }),
  };
}

/** RFC 7009 for one tenant's client: revoking an unknown, foreign or already revoked token is not an error. */
export async function revoke(db: Database, token: string, tenantId: string, actor: string): Promise<void> {
  const parsed = parseCredential(token);
  if (parsed?.kind !== 'api') return;
  const [row] = await db.execute<{ secret_hash: string; id: string; tenant_id: string; user_id: string }>(sql`
    SELECT id::text, secret_hash, tenant_id::text, user_id::text FROM tokens
    WHERE token_id = ${parsed.tokenId} AND kind = 'api' AND tenant_id = ${tenantId} AND revoked_at IS NULL`);
  if (!row || !secretMatches(parsed.secret, row.secret_hash)) return;
  await db.transaction(async (tx) => {
    const revoked = await tx.execute(sql`
      UPDATE tokens SET revoked_at = now(), revoked_reason = 'revoked by request'
      WHERE id = ${row.id} AND revoked_at IS NULL RETURNING id`);
    if (revoked.length === 0) return;
    await recordAudit(tx, {
      tenantId: row.tenant_id,
      actor,
      action: 'token.revoked',
      subjectType: 'user',
      subjectId: row.user_id,
      after: { tokenId: row.id },
    });
  });
}
