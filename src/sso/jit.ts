import { sql } from 'drizzle-orm';
import type { AccountName } from '../accounts/account-name.js';
import { recordAudit } from '../audit/audit-log.js';
import { changeStamp } from '../db/change-stamp.js';
import type { Database } from '../db/client.js';
import { againAfterDeadlock } from '../db/deadlocks.js';
import { countMemberChanges } from '../db/group-versions.js';
import { accountKeyOf } from '../db/schema.js';
import { recordForReconcile } from '../jobs/outbox.js';
import { releasePendingAccountStatement } from '../platform/pending-accounts.js';
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

/**
 * `andThen` runs in the same transaction once the user is known (the ACS starts the session there), so
 * a login commits once: one WAL flush instead of one per statement. The login locks its user, then the
 * memberships it changes, then each group they belong to; a PUT, DELETE or If-Match write of such a group
 * locks the group first and then may need this user's row or membership: if PostgreSQL aborts the login
 * to break that deadlock, the whole transaction runs again (the assertion stays spent, once).
 */
export async function provisionLogin(...login: Parameters<typeof provision>): Promise<LoginResult> {
  return againAfterDeadlock(() => provision(...login));
}

async function provision(
  db: Database,
  tenantId: string,
  jitMode: JitMode,
  claims: LoginClaims,
  correlationId: string,
  andThen?: (tx: Executor, login: LoginResult) => Promise<void>,
): Promise<LoginResult> {
  return db.transaction(async (tx) => {
    // One statement finds and locks the live user, records the login on an active one, tells a
    // deprovisioned (tombstoned) name apart, and releases a grant waiting for the platform account.
    // A refusal below rolls all of it back.
    const profileUpdate =
      jitMode === 'create-and-update'
        ? sql`, attributes = u.attributes || ${JSON.stringify(profileAttributes(claims))}::jsonb,
            updated_at = ${changeStamp}, version = u.version + 1`
        : sql``;
    const [found] = await tx.execute<{
      id: string | null;
      active: boolean | null;
      tombstoned: boolean;
      released: boolean;
    }>(sql`
      WITH live AS (
        SELECT id, active FROM users
        WHERE tenant_id = ${tenantId} AND user_name_key = ${accountKeyOf(claims.nameId)} AND deprovisioned_at IS NULL
        FOR UPDATE
      ), touched AS (
        UPDATE users u SET last_sso_login_at = now() ${profileUpdate}
        FROM live WHERE u.id = live.id AND live.active RETURNING u.id
      ), released AS (${releasePendingAccountStatement(tenantId, claims.nameId)})
      SELECT (SELECT id::text FROM live) AS id, (SELECT active FROM live) AS active,
        NOT EXISTS (SELECT 1 FROM live) AND EXISTS (
          SELECT 1 FROM users WHERE tenant_id = ${tenantId} AND user_name_key = ${accountKeyOf(claims.nameId)}
        ) AS tombstoned,
        EXISTS (SELECT 1 FROM released) AS released`);
    let userId: string;
    let created = false;
    if (found?.id) {
      if (!found.active)
        throw new SamlRefusal('user is deactivated in the identity provider', 'user-deactivated');
      userId = found.id;
    } else {
      if (found?.tombstoned)
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
    if (accessMayHaveChanged || found?.released) {
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
    const login = { userId, created, accessMayHaveChanged };
    await andThen?.(tx, login);
    return login;
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
  // One statement. Names: a claimed group that does not exist yet is created; on a race with another
  // login creating it, DO UPDATE (not DO NOTHING) returns the row this statement's snapshot cannot see.
  const wanted =
    groups.format === 'names'
      ? sql`claimed AS (
          SELECT DISTINCT ON (lower(v)) v AS name FROM unnest(${sql.param(groups.values)}::text[]) v
        ), existing AS (
          SELECT g.id, lower(g.display_name) AS key FROM groups g
          WHERE g.tenant_id = ${tenantId} AND lower(g.display_name) IN (SELECT lower(name) FROM claimed)
        ), created AS (
          INSERT INTO groups (tenant_id, display_name)
          SELECT ${tenantId}, name FROM claimed WHERE lower(name) NOT IN (SELECT key FROM existing)
          ON CONFLICT (tenant_id, lower(display_name)) DO UPDATE SET display_name = groups.display_name
          RETURNING id
        ), wanted AS (SELECT id FROM existing UNION SELECT id FROM created)`
      : sql`wanted AS (
          SELECT g.id FROM groups g WHERE g.tenant_id = ${tenantId} AND g.external_id IS NOT NULL
            AND lower(g.external_id) = ANY(${sql.param(groups.values.map((v) => v.toLowerCase()))}::text[])
        )`;
  const [changes] = await tx.execute<{ changed: string[] }>(sql`
    WITH ${wanted},
    removed AS (
      DELETE FROM group_members gm WHERE gm.user_id = ${userId} AND gm.source = 'saml'
        AND gm.group_id NOT IN (SELECT id FROM wanted) RETURNING gm.group_id
    ),
    added AS (
      INSERT INTO group_members (tenant_id, group_id, user_id, source) SELECT ${tenantId}, id, ${userId}, 'saml' FROM wanted
      ON CONFLICT DO NOTHING RETURNING group_id
    )
    SELECT ARRAY(SELECT group_id::text FROM removed UNION ALL SELECT group_id::text FROM added) AS changed`);
  const changed = changes?.changed ?? [];
  await countMemberChanges(tx, changed);
  return changed.length > 0;
}
