import { and, desc, eq, isNull, sql } from 'drizzle-orm';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { adminTokens, tenants } from '../db/schema.js';
import { conflict, invalid, isUniqueViolation, notFound } from '../errors.js';
import { adminTokenMatches } from './admin-token.js';
import { issueCredential, parseCredential, secretMatches } from './credentials.js';

/*
 * Who may use the admin API and the console, and for what. A role is one of three, each including the
 * one before: an auditor reads (drift, receipts, offboarding, seats); an operator also changes access
 * (rules, approvals, scans, jobs); an owner also manages credentials, platform credentials and tenant
 * settings. A token is for one tenant, or for all of them; IDSYNC_ADMIN_TOKEN is the bootstrap owner
 * of all tenants.
 */

export const ADMIN_ROLES = ['auditor', 'operator', 'owner'] as const;
export type AdminRole = (typeof ADMIN_ROLES)[number];

export const isAdminRole = (value: string): value is AdminRole =>
  (ADMIN_ROLES as readonly string[]).includes(value);

/** Whether `role` may do what `needed` may. */
export const roleIncludes = (role: AdminRole, needed: AdminRole) =>
  ADMIN_ROLES.indexOf(role) >= ADMIN_ROLES.indexOf(needed);

/** An authenticated admin: the name goes into every audit row it causes. */
export interface AdminPrincipal {
  name: string;
  role: AdminRole;
  /** null: every tenant. */
  tenantId: string | null;
  /** The admin_tokens row, or undefined for the environment token. */
  tokenRowId: string | undefined;
}

export const ENVIRONMENT_PRINCIPAL: AdminPrincipal = {
  name: 'environment',
  role: 'owner',
  tenantId: null,
  tokenRowId: undefined,
};

/** The audit actor of an admin principal, e.g. `admin:alice-laptop`. */
export const adminActor = (principal: AdminPrincipal) => `admin:${principal.name}`;

export interface AdminTokenView {
  name: string;
  tenant: string | null;
  role: AdminRole;
  createdBy: string;
  createdAt: string;
  revokedAt: string | null;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export async function createAdminToken(
  db: Database,
  input: { name: string; tenantId: string | null; role: AdminRole; actor: string },
): Promise<{ token: string; view: AdminTokenView }> {
  if (!NAME.test(input.name)) throw invalid('a token name is 1–63 of a-z, 0-9, ".", "_" and "-"');
  if (input.name === ENVIRONMENT_PRINCIPAL.name) throw invalid('"environment" names the IDSYNC_ADMIN_TOKEN');
  const credential = issueCredential('admin');
  try {
    const [row] = await db.transaction(async (tx) => {
      const inserted = await tx
        .insert(adminTokens)
        .values({
          name: input.name,
          tenantId: input.tenantId,
          role: input.role,
          tokenId: credential.tokenId,
          secretHash: credential.secretHash,
          createdBy: input.actor,
        })
        .returning();
      await recordAudit(tx, {
        tenantId: input.tenantId,
        actor: input.actor,
        action: 'admin_token.created',
        after: { name: input.name, role: input.role, tenant: input.tenantId ?? 'all' },
      });
      return inserted;
    });
    const [view] = await listAdminTokens(db, { name: row!.name });
    return { token: credential.token, view: view! };
  } catch (error) {
    if (isUniqueViolation(error)) throw conflict(`an admin token named ${input.name} already exists`);
    throw error;
  }
}

/** Live tokens (of one tenant, or all), newest first; never their secrets. */
export async function listAdminTokens(
  db: Database,
  filter: { tenantId?: string; name?: string } = {},
): Promise<AdminTokenView[]> {
  const rows = await db
    .select({
      name: adminTokens.name,
      tenant: tenants.name,
      role: adminTokens.role,
      createdBy: adminTokens.createdBy,
      createdAt: adminTokens.createdAt,
      revokedAt: adminTokens.revokedAt,
    })
    .from(adminTokens)
    .leftJoin(tenants, eq(tenants.id, adminTokens.tenantId))
    .where(
      and(
        isNull(adminTokens.revokedAt),
        filter.tenantId ? eq(adminTokens.tenantId, filter.tenantId) : undefined,
        filter.name ? eq(adminTokens.name, filter.name) : undefined,
      ),
    )
    .orderBy(desc(adminTokens.createdAt));
  return rows.map((r) => ({
    ...r,
    createdAt: r.createdAt.toISOString(),
    revokedAt: r.revokedAt?.toISOString() ?? null,
  }));
}

/**
 * Revokes a live token by name; it stops working at once. `tenantId` set: only a token of that tenant
 * (a tenant's owner cannot revoke a token for all tenants).
 */
export async function revokeAdminToken(
  db: Database,
  name: string,
  actor: string,
  tenantId?: string,
): Promise<void> {
  await db.transaction(async (tx) => {
    const revoked = await tx
      .update(adminTokens)
      .set({ revokedAt: new Date() })
      .where(
        and(
          eq(adminTokens.name, name),
          isNull(adminTokens.revokedAt),
          tenantId ? eq(adminTokens.tenantId, tenantId) : undefined,
        ),
      )
      .returning({ tenantId: adminTokens.tenantId });
    if (revoked.length === 0) throw notFound(`no admin token ${name}`);
    await recordAudit(tx, {
      tenantId: revoked[0]!.tenantId,
      actor,
      action: 'admin_token.revoked',
      after: { name },
    });
  });
}

/** The principal a presented bearer token names, or undefined. Constant-time secret comparison. */
export async function authenticateAdmin(
  db: Database,
  presented: string | undefined,
  environmentToken: string | undefined,
): Promise<AdminPrincipal | undefined> {
  if (presented === undefined) return undefined;
  if (adminTokenMatches(presented, environmentToken)) return ENVIRONMENT_PRINCIPAL;
  const parsed = parseCredential(presented);
  if (parsed?.kind !== 'admin') return undefined;
  return principalByTokenId(db, parsed.tokenId, (hash) => secretMatches(parsed.secret, hash));
}

/** The live principal of an admin_tokens row, if `check` accepts its secret hash. */
export async function principalByTokenId(
  db: Database,
  tokenId: string,
  check: (secretHash: string) => boolean,
): Promise<AdminPrincipal | undefined> {
  const [row] = await db.execute<{
    id: string;
    name: string;
    role: AdminRole;
    tenant_id: string | null;
    secret_hash: string;
  }>(sql`
    SELECT id::text, name, role::text, tenant_id::text, secret_hash FROM admin_tokens
    WHERE token_id = ${tokenId} AND revoked_at IS NULL`);
  if (!row || !check(row.secret_hash)) return undefined;
  return { name: row.name, role: row.role, tenantId: row.tenant_id, tokenRowId: row.id };
}
