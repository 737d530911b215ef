import { sql } from 'drizzle-orm';
import type { AccountName } from '../accounts/account-name.js';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { accountKeyOf } from '../db/schema.js';
import { recordForReconcile } from '../jobs/outbox.js';
import { releasePendingAccount } from '../platform/pending-accounts.js';
import { SamlRefusal } from './refusal.js';

/*
 * Just-in-time provisioning from a validated SAML login. It can never resurrect a user the IdP
 * deprovisioned through SCIM: a deactivated user is refused, and a deleted (tombstoned) userName with no
 * live user is refused rather than re-created. Names are compared in their normal form
 * (users.user_name_key), so no spelling variant of such a user gets through either.
 */

export type JitMode = 'off' | 'create' | 'create-and-update';

/** Entra's group claims: object ids, at most 150; above that the claim is replaced by a link. */
export const ENTRA_GROUPS_CLAIM = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/groups';
export const ENTRA_GROUPS_OVERAGE_CLAIM = 'http://schemas.microsoft.com/claims/groups.link';

export interface LoginClaims {
  nameId: AccountName;
  email: string | undefined;
  givenName: string | undefined;
  familyName: string | undefined;
  displayName: string | undefined;
  /** undefined: the IdP said nothing about groups (or sent the overage link): keep what SCIM set. */
  groups: { format: 'names' | 'object-ids'; values: string[] } | undefined;
  overage: boolean;
}

export interface LoginResult {
  userId: string;
  created: boolean;
  accessMayHaveChanged: boolean;
}

export async function provisionLogin(
  db: Database,
  tenantId: string,
  jitMode: JitMode,
  claims: LoginClaims,
  correlationId: string,
): Promise<LoginResult> {
  return db.transaction(async (tx) => {
    const [live] = await tx.execute<{ id: string; active: boolean }>(sql`
      SELECT id::text, active FROM users
      WHERE tenant_id = ${tenantId} AND user_name_key = ${accountKeyOf(claims.nameId)} AND deprovisioned_at IS NULL
      FOR UPDATE`);
    let userId: string;
    let created = false;
    if (live) {
      if (!live.active)
        throw new SamlRefusal('user is deactivated in the identity provider', 'user-deactivated');
      userId = live.id;
      if (jitMode === 'create-and-update') {
        await tx.execute(sql`
          UPDATE users SET attributes = attributes || ${JSON.stringify(profileAttributes(claims))}::jsonb,
            last_sso_login_at = now(), updated_at = now(), version = version + 1
          WHERE id = ${userId}`);
      } else {
        await tx.execute(sql`UPDATE users SET last_sso_login_at = now() WHERE id = ${userId}`);
      }
    } else {
      const [tombstone] = await tx.execute<{ id: string }>(sql`
        SELECT id::text FROM users WHERE tenant_id = ${tenantId} AND user_name_key = ${accountKeyOf(claims.nameId)} LIMIT 1`);
      if (tombstone)
        throw new SamlRefusal(
          'user was deprovisioned by the identity provider and is not re-created',
          'user-deprovisioned',
        );
      if (jitMode === 'off')
        throw new SamlRefusal('this tenant does not create users at sign-in (JIT is off)', 'jit-off');
      const [row] = await tx.execute<{ id: string }>(sql`
        INSERT INTO users (tenant_id, user_name, origin, attributes, last_sso_login_at)
        VALUES (${tenantId}, ${claims.nameId}, 'saml', ${JSON.stringify(profileAttributes(claims))}::jsonb, now())
        RETURNING id::text`);
      userId = row!.id;
      created = true;
    }

    const membershipChanged = claims.groups ? await setGroups(tx, tenantId, userId, claims.groups) : false;
    const accessMayHaveChanged = created || membershipChanged;
    const cause = {
      event: created ? 'saml.user.created' : 'saml.login',
      source: 'saml',
      at: new Date().toISOString(),
      correlationId,
    };
    // A grant waiting for the person's platform account (none before their first SSO login) is retried.
    const platformAccountPending = await releasePendingAccount(tx, tenantId, claims.nameId);
    if (accessMayHaveChanged || platformAccountPending) {
      await recordForReconcile(tx, [
        { tenantId, lane: 'reconcile', subjectType: 'user', subjectId: userId, cause },
      ]);
    }
    await recordAudit(tx, {
      tenantId,
      actor: 'saml',
      action: created ? 'saml.user.created' : 'saml.login',
      subjectType: 'user',
      subjectId: userId,
      after: {
        groupsChanged: membershipChanged,
        ...(claims.overage ? { groupsOverage: 'kept the groups known from SCIM' } : {}),
      },
      correlationId,
    });
    return { userId, created, accessMayHaveChanged };
  });
}

function profileAttributes(claims: LoginClaims): Record<string, unknown> {
  const name: Record<string, string> = {};
  if (claims.givenName) name.givenName = claims.givenName;
  if (claims.familyName) name.familyName = claims.familyName;
  return {
    ...(Object.keys(name).length ? { name } : {}),
    ...(claims.displayName ? { displayName: claims.displayName } : {}),
    ...(claims.email ? { emails: [{ value: claims.email, type: 'work', primary: true }] } : {}),
  };
}

type Executor = Pick<Database, 'execute'>;

/**
 * Makes the user's SAML-granted memberships exactly the claimed groups. Okta sends names (groups are
 * created when new, so rules keyed by name match); Entra sends object ids, matched to SCIM groups by
 * externalId case-insensitively (GUIDs). A membership SCIM pushed is never removed here: SCIM is the
 * authority, a login only adds (source `saml`) and withdraws what logins added.
 */
async function setGroups(
  tx: Executor,
  tenantId: string,
  userId: string,
  groups: { format: 'names' | 'object-ids'; values: string[] },
): Promise<boolean> {
  if (groups.format === 'names') {
    await tx.execute(sql`
      INSERT INTO groups (tenant_id, display_name)
      SELECT ${tenantId}, name FROM unnest(${sql.param(groups.values)}::text[]) AS name
      ON CONFLICT DO NOTHING`);
  }
  const match =
    groups.format === 'names'
      ? sql`lower(g.display_name) = ANY(SELECT lower(v) FROM unnest(${sql.param(groups.values)}::text[]) v)`
      : sql`g.external_id IS NOT NULL AND lower(g.external_id) = ANY(${sql.param(groups.values.map((v) => v.toLowerCase()))}::text[])`;
  const [changes] = await tx.execute<{ added: number; removed: number }>(sql`
    WITH wanted AS (SELECT g.id FROM groups g WHERE g.tenant_id = ${tenantId} AND ${match}),
    removed AS (
      DELETE FROM group_members gm WHERE gm.user_id = ${userId} AND gm.source = 'saml'
        AND gm.group_id NOT IN (SELECT id FROM wanted) RETURNING 1
    ),
    added AS (
      INSERT INTO group_members (tenant_id, group_id, user_id, source) SELECT ${tenantId}, id, ${userId}, 'saml' FROM wanted
      ON CONFLICT DO NOTHING RETURNING 1
    )
    SELECT (SELECT count(*) FROM added)::int AS added, (SELECT count(*) FROM removed)::int AS removed`);
  return (changes?.added ?? 0) + (changes?.removed ?? 0) > 0;
}
