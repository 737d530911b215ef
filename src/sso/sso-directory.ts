import type { Database, Sql } from '../db/client.js';
import { findTenantByName, TENANT_CHANGES_CHANNEL, type Tenant } from '../tenants/tenants.js';
import { type Connection, findConnection } from './connections.js';

/*
 * The tenant and IdP connection every SSO request looks up, without a database round trip per login.
 * Any change to a tenant or a connection, by any writer, fires a trigger that NOTIFYs every process
 * (migration 0023), which drops its cache, as ScimTokenVerifier does for SCIM tokens; the short TTL
 * bounds staleness should a notification be missed (a reconnecting listener). Only what exists is
 * cached: an unknown tenant or IdP is looked up every time, so a new one works at once.
 */
export class SsoDirectory {
  private readonly tenants = new Map<string, { tenant: Tenant; at: number }>();
  private readonly connections = new Map<string, { connection: Connection; at: number }>();
  private unlisten: (() => Promise<void>) | undefined;
  /** Bumped by every change notice: a lookup that started before one must not fill the cache. */
  private generation = 0;
  private ttlMs = 0;

  constructor(private readonly db: Database) {}

  /** Caches from now on, for ttlMs at most, listening for changes on `sql`. Without it: no cache. */
  async start(sql: Sql, ttlMs = 5_000): Promise<void> {
    const listener = await sql.listen(TENANT_CHANGES_CHANNEL, () => this.clear());
    this.unlisten = () => listener.unlisten();
    this.ttlMs = ttlMs;
  }

  async stop(): Promise<void> {
    await this.unlisten?.().catch(() => {});
    this.ttlMs = 0;
    this.clear();
  }

  private clear(): void {
    this.generation++;
    this.tenants.clear();
    this.connections.clear();
  }

  private fresh(at: number): boolean {
    return Date.now() - at < this.ttlMs;
  }

  /** The tenant named in the URL; a not_found DomainError when there is none. */
  async tenant(name: string): Promise<Tenant> {
    const cached = this.tenants.get(name);
    if (cached && this.fresh(cached.at)) return cached.tenant;
    const generation = this.generation;
    const tenant = await findTenantByName(this.db, name);
    if (this.ttlMs > 0 && generation === this.generation) this.tenants.set(name, { tenant, at: Date.now() });
    return tenant;
  }

  /** As findConnection: the IdP named by entity id, else the tenant's first one. */
  async connection(tenantId: string, idpEntityId?: string): Promise<Connection | undefined> {
    const key = `${tenantId}\n${idpEntityId ?? ''}\n${idpEntityId === undefined ? 'first' : 'named'}`;
    const cached = this.connections.get(key);
    if (cached && this.fresh(cached.at)) return cached.connection;
    const generation = this.generation;
    const connection = await findConnection(this.db, tenantId, idpEntityId);
    if (connection && this.ttlMs > 0 && generation === this.generation)
      this.connections.set(key, { connection, at: Date.now() });
    return connection;
  }
}
