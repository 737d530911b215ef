import type { DatabaseHandle } from '../db/client.js';
import { parseCredential, secretMatches } from '../security/credentials.js';
import { authenticateScimToken, TENANT_CHANGES_CHANNEL, type Tenant } from './tenants.js';

/**
 * Authenticates SCIM bearer tokens without a database round trip per request. Tenants are cached by the
 * token's public id; the secret is still checked against the cached hash in constant time on every
 * request. A rotation (in any process) NOTIFYs every process, which drops its cache, so an old token
 * stops working within milliseconds; the short TTL bounds staleness should a notification be missed.
 */
export class ScimTokenVerifier {
  private readonly cache = new Map<string, { tenant: Tenant; at: number }>();
  private unlisten: (() => Promise<void>) | undefined;

  constructor(
    private readonly database: DatabaseHandle,
    private readonly ttlMs = 5_000,
  ) {}

  async start(): Promise<void> {
    const listener = await this.database.sql.listen(TENANT_CHANGES_CHANNEL, () => this.cache.clear());
    this.unlisten = () => listener.unlisten();
  }

  async stop(): Promise<void> {
    await this.unlisten?.().catch(() => {});
    this.cache.clear();
  }

  async verify(token: string): Promise<Tenant | undefined> {
    const parsed = parseCredential(token);
    if (parsed?.kind !== 'scim') return undefined;
    const cached = this.cache.get(parsed.tokenId);
    if (cached && Date.now() - cached.at < this.ttlMs) {
      return secretMatches(parsed.secret, cached.tenant.scimTokenHash) ? cached.tenant : undefined;
    }
    const tenant = await authenticateScimToken(this.database.db, token);
    if (tenant) this.cache.set(parsed.tokenId, { tenant, at: Date.now() });
    return tenant;
  }
}
