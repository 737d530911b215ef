import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Bearer credentials idsync issues: `<kind>_<tokenId>_<secret>`. The token id is public and finds the
 * record; only a hash of the secret is stored. The secret carries 256 random bits, so a fast hash is
 * enough (nothing to brute-force, unlike a password) and keeps every SCIM request cheap.
 */
export type CredentialKind = 'scim' | 'api' | 'sess' | 'admin' | 'client';

export interface IssuedCredential {
  tokenId: string;
  secretHash: string;
  /** The whole credential, shown once to its holder and never stored or logged. */
  token: string;
}

const TOKEN_PATTERN = /^(scim|api|sess|admin|client)_([0-9a-f]{16})_([A-Za-z0-9-]{43})$/;

export function issueCredential(kind: CredentialKind): IssuedCredential {
  const tokenId = randomBytes(8).toString('hex');
  // base64url without '_' so the token splits unambiguously on '_'.
  const secret = randomBytes(32).toString('base64url').replaceAll('_', '-');
  return { tokenId, secretHash: hashSecret(secret), token: `${kind}_${tokenId}_${secret}` };
}

export interface ParsedCredential {
  kind: CredentialKind;
  tokenId: string;
  secret: string;
}

export function parseCredential(token: string): ParsedCredential | undefined {
  const match = TOKEN_PATTERN.exec(token);
  if (!match) return undefined;
  return { kind: match[1] as CredentialKind, tokenId: match[2]!, secret: match[3]! };
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of a presented secret against the stored hash. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const presented = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return presented.length === stored.length && timingSafeEqual(presented, stored);
}
