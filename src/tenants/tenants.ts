import { asc, eq, sql } from 'drizzle-orm';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { accountKeyOf, tenants } from '../db/schema.js';
import { FIXABLE_CLASSES } from '../drift/scan.js';
import { conflict, invalid, isUniqueViolation, notFound } from '../errors.js';
import { TEAM_ROLES } from '../reconcile/model.js';
import { issueCredential, parseCredential, secretMatches } from '../security/credentials.js';
import type { TokenScope } from '../tokens/scopes.js';

export type Tenant = typeof tenants.$inferSelect;

/** NOTIFY channel telling every idsync process that a tenant's credentials or settings changed. */
export const TENANT_CHANGES_CHANNEL = 'idsync_tenants';

export const TENANT_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface TenantWithToken {
  tenant: Tenant;
  /** The SCIM bearer token, in clear this once; only its hash is stored. */
  scimToken: string;
}

export async function createTenant(db: Database, name: string, actor: string): Promise<TenantWithToken> {
  if (!TENANT_NAME_PATTERN.test(name)) {
    throw invalid(
      `tenant name "${name}" is not valid: use 1 to 63 lower-case letters, digits and dashes, starting with a letter or digit`,
    );
  }
  const credential = issueCredential('scim');
  try {
    return await db.transaction(async (tx) => {
      const [tenant] = await tx
        .insert(tenants)
        .values({ name, scimTokenId: credential.tokenId, scimTokenHash: credential.secretHash })
        .returning();
      await recordAudit(tx, {
        tenantId: tenant!.id,
        actor,
        action: 'tenant.created',
        subjectType: 'tenant',
        subjectId: tenant!.id,
        after: { name },
      });
      return { tenant: tenant!, scimToken: credential.token };
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw conflict(`a tenant named "${name}" already exists`);
    throw error;
  }
}

export function listTenants(db: Database): Promise<Tenant[]> {
  return db.select().from(tenants).orderBy(asc(tenants.name));
}

export async function findTenantByName(db: Database, name: string): Promise<Tenant> {
  const [tenant] = await db.select().from(tenants).where(eq(tenants.name, name));
  if (!tenant) throw notFound(`no tenant named "${name}"`);
  return tenant;
}

/** Replaces the SCIM token at once: the old one stops working when this commits. */
export async function rotateScimToken(db: Database, name: string, actor: string): Promise<TenantWithToken> {
  const credential = issueCredential('scim');
  return db.transaction(async (tx) => {
    const [tenant] = await tx
      .update(tenants)
      .set({
        scimTokenId: credential.tokenId,
        scimTokenHash: credential.secretHash,
        scimTokenRotatedAt: new Date(),
      })
      .where(eq(tenants.name, name))
      .returning();
    if (!tenant) throw notFound(`no tenant named "${name}"`);
    await tx.execute(sql`SELECT pg_notify(${TENANT_CHANGES_CHANNEL}, ${tenant.id})`);
    await recordAudit(tx, {
      tenantId: tenant.id,
      actor,
      action: 'tenant.scim_token_rotated',
      subjectType: 'tenant',
      subjectId: tenant.id,
    });
    return { tenant, scimToken: credential.token };
  });
}

/** The tenant a SCIM bearer token belongs to, or undefined; the secret is compared in constant time. */
export async function authenticateScimToken(db: Database, token: string): Promise<Tenant | undefined> {
  const parsed = parseCredential(token);
  if (parsed?.kind !== 'scim') return undefined;
  const [tenant] = await db.select().from(tenants).where(eq(tenants.scimTokenId, parsed.tokenId));
  if (!tenant) return undefined;
  return secretMatches(parsed.secret, tenant.scimTokenHash) ? tenant : undefined;
}

export interface TenantPolicyChanges {
  jitMode?: 'off' | 'create' | 'create-and-update';
  idpInitiatedSso?: boolean;
  /** Oldest SAML assertion a login may present, in whole minutes (1 to 1440). */
  maxAssertionAgeMinutes?: number;
  /** A userName, or null to clear. */
  fallbackAdmin?: string | null;
  massChangeThresholdPercent?: number;
  inactivityDays?: number;
  driftScanIntervalMinutes?: number;
  /** Seconds between two reads of the platform's audit trail (1 to 86400). */
  auditPollSeconds?: number;
  /** Merged into the stored policy: `{ "excess-access": "fix" }`. */
  driftPolicy?: Record<string, string>;
  /** Merged into the stored price table: `{ "viewer": 25 }`. */
  seatPrices?: Record<string, number>;
  /** An IdP group name, or null to clear. */
  consoleGroup?: string | null;
  tokenScopes?: TokenScope[];
}

/** Changes a tenant's policies; every process hears of it (NOTIFY) and the audit log keeps the change. */
export async function updateTenantPolicy(
  db: Database,
  name: string,
  changes: TenantPolicyChanges,
  actor: string,
): Promise<Tenant> {
  const threshold = changes.massChangeThresholdPercent;
  if (threshold !== undefined && !(Number.isInteger(threshold) && threshold >= 0 && threshold <= 100)) {
    throw invalid('the mass-change threshold is a whole percentage from 0 to 100');
  }
  if (
    changes.inactivityDays !== undefined &&
    !(Number.isInteger(changes.inactivityDays) && changes.inactivityDays > 0)
  ) {
    throw invalid('the inactivity window is a whole number of days above 0');
  }
  const maxAge = changes.maxAssertionAgeMinutes;
  if (maxAge !== undefined && !(Number.isInteger(maxAge) && maxAge >= 1 && maxAge <= 1440)) {
    throw invalid('the maximum assertion age is a whole number of minutes from 1 to 1440');
  }
  const interval = changes.driftScanIntervalMinutes;
  if (interval !== undefined && !(Number.isInteger(interval) && interval > 0)) {
    throw invalid('the drift scan interval is a whole number of minutes above 0');
  }
  const poll = changes.auditPollSeconds;
  if (poll !== undefined && !(Number.isInteger(poll) && poll >= 1 && poll <= 86_400)) {
    throw invalid('the audit-trail poll interval is a whole number of seconds from 1 to 86400');
  }
  for (const [findingClass, action] of Object.entries(changes.driftPolicy ?? {})) {
    if (!(FIXABLE_CLASSES as readonly string[]).includes(findingClass)) {
      throw invalid(
        `a drift policy can be set for ${FIXABLE_CLASSES.join(', ')}; the other classes need a human`,
      );
    }
    if (action !== 'report' && action !== 'fix') throw invalid('a drift policy is report or fix');
  }
  for (const [role, price] of Object.entries(changes.seatPrices ?? {})) {
    if (!(TEAM_ROLES as readonly string[]).includes(role))
      throw invalid(`seat prices are per role: ${TEAM_ROLES.join(', ')}`);
    if (!(Number.isFinite(price) && price >= 0)) throw invalid('a seat price is a number of 0 or more');
  }
  return db.transaction(async (tx) => {
    const tenant = await findTenantByName(tx as unknown as Database, name);
    let fallbackAdminUserId: string | null | undefined;
    if (changes.fallbackAdmin === null) fallbackAdminUserId = null;
    else if (changes.fallbackAdmin !== undefined) {
      const [user] = await tx.execute<{ id: string }>(sql`
        SELECT id::text FROM users WHERE tenant_id = ${tenant.id} AND user_name_key = ${accountKeyOf(changes.fallbackAdmin)}
          AND active AND deprovisioned_at IS NULL`);
      if (!user) throw notFound(`no active user ${changes.fallbackAdmin} in tenant ${name}`);
      fallbackAdminUserId = user.id;
    }
    const [updated] = await tx
      .update(tenants)
      .set({
        ...(changes.jitMode ? { jitMode: changes.jitMode } : {}),
        ...(changes.idpInitiatedSso !== undefined ? { idpInitiatedSso: changes.idpInitiatedSso } : {}),
        ...(maxAge !== undefined ? { maxAssertionAgeSeconds: maxAge * 60 } : {}),
        ...(fallbackAdminUserId !== undefined ? { fallbackAdminUserId } : {}),
        ...(threshold !== undefined ? { massChangeThresholdPercent: threshold } : {}),
        ...(changes.inactivityDays !== undefined ? { inactivityDays: changes.inactivityDays } : {}),
        ...(interval !== undefined ? { driftScanIntervalMinutes: interval } : {}),
        ...(poll !== undefined ? { auditPollSeconds: poll } : {}),
        ...(changes.driftPolicy
          ? { driftPolicy: sql`${tenants.driftPolicy} || ${JSON.stringify(changes.driftPolicy)}::jsonb` }
          : {}),
        ...(changes.seatPrices
          ? { seatPrices: sql`${tenants.seatPrices} || ${JSON.stringify(changes.seatPrices)}::jsonb` }
          : {}),
        ...(changes.consoleGroup !== undefined ? { consoleGroup: changes.consoleGroup } : {}),
        ...(changes.tokenScopes !== undefined ? { tokenScopes: changes.tokenScopes } : {}),
        updatedAt: new Date(),
      })
      .where(eq(tenants.id, tenant.id))
      .returning();
    await tx.execute(sql`SELECT pg_notify(${TENANT_CHANGES_CHANNEL}, ${tenant.id})`);
    await recordAudit(tx, {
      tenantId: tenant.id,
      actor,
      action: 'tenant.policy_changed',
      subjectType: 'tenant',
      subjectId: tenant.id,
      after: changes as Record<string, unknown>,
    });
    return updated!;
  });
}
