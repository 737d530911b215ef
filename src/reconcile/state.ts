import { type SQL, sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { RuleBook, type UserFacts } from './desired.js';
import type {
  AppPermission,
  AssignmentRule,
  DirectAssignment,
  EnterprisePermission,
  RuleSource,
  TeamRole,
} from './model.js';

/** Everything the reconciler needs to know about one user, read in one round trip. */
export interface UserSubject {
  tenantId: string;
  userId: string;
  userName: string;
  /** The platform account: the login e-mail, lower-cased. */
  account: string;
  facts: UserFacts;
  /** When the IdP turned the user off (ISO time); undefined while the user is active. */
  deactivatedAt: string | undefined;
  /** Tokens and sessions idsync issued that still work. */
  liveTokens: number;
}

export interface TenantPolicy {
  fallbackAdmin: string | undefined;
  massChangeThresholdPercent: number;
}

/**
 * The platform's own spelling of a user's account (`user` is the users row's alias), found by the key
 * the sweeper, seats and drift use; null when the platform has nothing of theirs yet.
 */
function platformAccountOf(user: SQL): SQL {
  return sql`COALESCE(
    (SELECT e.account FROM platform_enterprise_members e
      WHERE e.tenant_id = ${user}.tenant_id AND account_key(e.account) = ${user}.user_name_key LIMIT 1),
    (SELECT m.account FROM platform_team_members m
      WHERE m.tenant_id = ${user}.tenant_id AND account_key(m.account) = ${user}.user_name_key LIMIT 1),
    (SELECT c.account FROM platform_app_collaborators c
      WHERE c.tenant_id = ${user}.tenant_id AND account_key(c.account) = ${user}.user_name_key LIMIT 1))`;
}

export async function loadUser(
  db: Database,
  tenantId: string,
  userId: string,
): Promise<UserSubject | undefined> {
  const [row] = await db.execute<{
    user_name: string;
    platform_account: string | null;
    active: boolean;
    deprovisioned: boolean;
    groups: string[] | null;
    deactivated_at: string | null;
    live_tokens: number;
    app_roles: unknown;
    assignments: StoredAssignment[] | null;
  }>(sql`
    SELECT u.user_name, u.active, u.deprovisioned_at IS NOT NULL AS deprovisioned,
      ${platformAccountOf(sql`u`)} AS platform_account,
      to_json(u.deactivated_at)#>>'{}' AS deactivated_at, u.app_roles,
      (SELECT array_agg(g.display_name) FROM group_members gm JOIN groups g ON g.id = gm.group_id
        WHERE gm.user_id = u.id) AS groups,
      (SELECT count(*)::int FROM tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL) AS live_tokens,
      ${assignmentsOf(sql`u.id`)} AS assignments
    FROM users u WHERE u.tenant_id = ${tenantId} AND u.id = ${userId}`);
  if (!row) return undefined;
  return {
    tenantId,
    userId,
    userName: row.user_name,
    // Operations must name the account as the platform knows it; someone with nothing there yet gets
    // the lower-cased login e-mail, which is what the platform then records.
    account: row.platform_account ?? row.user_name.toLowerCase(),
    facts: {
      active: row.active,
      deprovisioned: row.deprovisioned,
      groups: row.groups ?? [],
      appRoles: appRoleValues(row.app_roles),
      assignments: directAssignments(row.assignments),
    },
    deactivatedAt: row.deactivated_at ? new Date(row.deactivated_at).toISOString() : undefined,
    liveTokens: row.live_tokens,
  };
}

/** `users.app_roles` holds whatever `roles[*].value` was: only strings name an app role. */
export function appRoleValues(json: unknown): string[] {
  return Array.isArray(json) ? json.filter((v): v is string => typeof v === 'string') : [];
}

/** One `assignments` row as `assignmentsOf` aggregates it. */
export interface StoredAssignment {
  team: string | null;
  role: TeamRole | null;
  app: string | null;
  permissions: AppPermission[] | null;
}

/** A correlated subquery: the user's direct assignments as a JSON array (null when none). */
export function assignmentsOf(userId: ReturnType<typeof sql>) {
  return sql`(SELECT json_agg(json_build_object('team', a.team_name, 'role', a.team_role, 'app', a.app_name,
      'permissions', a.app_permissions)) FROM assignments a WHERE a.user_id = ${userId})`;
}

export function directAssignments(rows: readonly StoredAssignment[] | null): DirectAssignment[] {
  // The CHECK assignments_shape guarantees a row is exactly one of the two.
  return (rows ?? []).map((a) =>
    a.team !== null ? { team: a.team, role: a.role! } : { app: a.app!, permissions: a.permissions! },
  );
}

/**
 * The tenant's rules, indexed, with the teams the platform lists when an "every team" rule needs them
 * (read only then: most tenants have none, and a platform can have thousands of teams).
 */
export async function loadRuleBook(db: Database, tenantId: string): Promise<RuleBook> {
  const rules = await loadRules(db, tenantId);
  if (!rules.some((r) => r.target === 'all-teams')) return new RuleBook(rules);
  return new RuleBook(rules, await listedTeams(db, tenantId));
}

/** The teams the platform lists (by the latest scan or audit-trail read), by idsync's name for them. */
export async function listedTeams(db: Pick<Database, 'execute'>, tenantId: string): Promise<string[]> {
  const rows = await db.execute<{ name: string }>(sql`
    SELECT name FROM teams WHERE tenant_id = ${tenantId} AND listed_at IS NOT NULL ORDER BY name`);
  return rows.map((r) => r.name);
}

export async function loadRules(db: Database, tenantId: string): Promise<AssignmentRule[]> {
  const rows = await db.execute<{
    id: string;
    idp_group: string | null;
    idp_app_role: string | null;
    target: 'team' | 'enterprise' | 'app' | 'all-teams';
    team_name: string | null;
    team_role: TeamRole | null;
    app_name: string | null;
    enterprise_permissions: string | null;
    app_permissions: string | null;
  }>(sql`
    SELECT id, idp_group, idp_app_role, target, team_name, team_role, app_name,
      enterprise_permissions::text, app_permissions::text
    FROM assignment_rules WHERE tenant_id = ${tenantId} ORDER BY created_at, id`);
  return rows.map((r) => {
    // The CHECK assignment_rules_one_source guarantees exactly one of the two.
    const source: RuleSource =
      r.idp_group !== null ? { idpGroup: r.idp_group } : { idpAppRole: r.idp_app_role! };
    if (r.target === 'team')
      return { id: r.id, ...source, target: 'team', team: r.team_name!, role: r.team_role! };
    if (r.target === 'all-teams') return { id: r.id, ...source, target: 'all-teams', role: r.team_role! };
    if (r.target === 'enterprise') {
      return {
        id: r.id,
        ...source,
        target: 'enterprise',
        permissions: pgArray(r.enterprise_permissions) as EnterprisePermission[],
      };
    }
    return {
      id: r.id,
      ...source,
      target: 'app',
      app: r.app_name!,
      permissions: pgArray(r.app_permissions) as AppPermission[],
    };
  });
}

export async function loadPolicy(db: Database, tenantId: string): Promise<TenantPolicy> {
  const [row] = await db.execute<{
    platform_account: string | null;
    user_name: string | null;
    threshold: number;
  }>(sql`
    SELECT ${platformAccountOf(sql`f`)} AS platform_account, f.user_name,
      t.mass_change_threshold_percent AS threshold
    FROM tenants t
    LEFT JOIN users f ON f.id = t.fallback_admin_user_id AND f.active AND f.deprovisioned_at IS NULL
    WHERE t.id = ${tenantId}`);
  // Named as the platform knows the account, like every user in a plan (loadUser).
  const fallbackAdmin = row?.platform_account ?? row?.user_name?.toLowerCase() ?? undefined;
  return { fallbackAdmin, massChangeThresholdPercent: row?.threshold ?? 10 };
}

/** `{view,deploy}` → ['view', 'deploy']. */
export function pgArray(text: string | null): string[] {
  if (!text) return [];
  return text
    .replace(/^\{|\}$/g, '')
    .split(',')
    .filter(Boolean);
}
