import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Compares a presented admin token with the configured one in constant time (hashing both sides gives
 * equal lengths whatever is sent). With no configured token, nothing matches.
 */
export function adminTokenMatches(presented: string | undefined, configured: string | undefined): boolean {
  if (!configured || !presented) return false;
  return timingSafeEqual(digest(presented), digest(configured));
}
