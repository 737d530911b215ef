import type { CacheItem, CacheProvider } from '@node-saml/node-saml';
import type { Redis } from 'ioredis';

/**
 * The AuthnRequest ids idsync issued, kept in Redis so an ACS on any API process can match InResponseTo
 * (node-saml's default cache lives in one process's memory).
 */
export function requestIdCache(redis: Redis, tenantId: string, ttlMs: number): CacheProvider {
  const key = (id: string) => `idsync:saml:request:${tenantId}:${id}`;
  return {
    saveAsync: async (id: string, value: string): Promise<CacheItem | null> => {
      await redis.set(key(id), value, 'PX', ttlMs);
      return { value, createdAt: Date.now() };
    },
    getAsync: async (id: string) => redis.get(key(id)),
    removeAsync: async (id: string | null) => {
      if (!id) return null;
      // GETDEL: an id answers one response only.
      return redis.getdel(key(id));
    },
  };
}

/**
 * Accepts each assertion id once (node-saml has no replay protection; an IdP-initiated response could
 * be posted again). The id is remembered until the assertion expires, plus the allowed clock skew.
 */
export async function firstUse(
  redis: Redis,
  tenantId: string,
  assertionId: string,
  until: Date | undefined,
  skewMs: number,
) {
  const ttl = Math.max(1_000, (until ? until.getTime() - Date.now() : 10 * 60_000) + skewMs);
  const stored = await redis.set(`idsync:saml:assertion:${tenantId}:${assertionId}`, '1', 'PX', ttl, 'NX');
  return stored === 'OK';
}
