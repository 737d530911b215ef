import type { Redis } from 'ioredis';

/*
 * One use per assertion for its whole life. node-saml has no replay protection, so idsync records every
 * assertion id whose signature verified — before any other check, so a refused one (an unsolicited
 * response while IdP-initiated sign-in is off, a wrong Recipient…) is spent too — and keeps it until no
 * rule could accept that assertion again: its latest NotOnOrAfter plus the clock skew. Redis, so every
 * API process agrees.
 */
export async function spendAssertion(
  redis: Redis,
  tenantId: string,
  assertionId: string,
  usableUntil: Date,
  skewMs: number,
): Promise<boolean> {
  const ttl = Math.max(1_000, usableUntil.getTime() - Date.now() + skewMs);
  const stored = await redis.set(`idsync:saml:assertion:${tenantId}:${assertionId}`, '1', 'PX', ttl, 'NX');
  return stored === 'OK';
}
