/*
 * The domain of the reconciler, as types that admit only legal states: roles and permissions are closed
 * unions, an operation is a discriminated union, and access is a value a pure function can compare.
 */

export const TEAM_ROLES = ['admin', 'member', 'viewer'] as const;
export type TeamRole = (typeof TEAM_ROLES)[number];

export const ENTERPRISE_PERMISSIONS = ['view', 'create', 'manage', 'billing'] as const;
export type EnterprisePermission = (typeof ENTERPRISE_PERMISSIONS)[number];

export const APP_PERMISSIONS = ['view', 'deploy', 'operate', 'manage'] as const;
export type AppPermission = (typeof APP_PERMISSIONS)[number];

/** admin > member > viewer: several rules for one user, the highest role wins. */
const ROLE_RANK: Record<TeamRole, number> = { viewer: 0, member: 1, admin: 2 };

export function roleRank(role: TeamRole): number {
  return ROLE_RANK[role];
}

export function higherRole(a: TeamRole, b: TeamRole): TeamRole {
  return ROLE_RANK[a] >= ROLE_RANK[b] ? a : b;
}

/** Permissions in their canonical order, without duplicates, so two sets compare as strings. */
export function canonical<P extends string>(permissions: Iterable<P>, order: readonly P[]): P[] {
  const set = new Set(permissions);
  return order.filter((p) => set.has(p));
}

/**
 * What a rule matches in the IdP's view of a user: a group (by display name), or an app role (the value of
 * a SCIM `roles` entry: Entra's app-role assignments). Exactly one, both case-insensitively.
 */
export type RuleSource =
  | { idpGroup: string; idpAppRole?: undefined }
  | { idpAppRole: string; idpGroup?: undefined };

export type RuleTarget =
  | { target: 'team'; team: string; role: TeamRole }
  | { target: 'enterprise'; permissions: EnterprisePermission[] }
  | { target: 'app'; app: string; permissions: AppPermission[] }
  /** Every team the platform has, including teams created after the rule (as scans list them). */
  | { target: 'all-teams'; role: TeamRole };

export type AssignmentRule = { id: string } & RuleSource & RuleTarget;

/**
 * Access granted to one user directly (a CSV import), stored in `assignments`: a team role or an app's
 * permissions, exactly one.
 */
export type DirectAssignment =
  | { team: string; role: TeamRole; app?: undefined }
  | { app: string; permissions: AppPermission[]; team?: undefined };

/** One user's access on the platform: desired (from the IdP) or actual (from the connector). */
export interface Access {
  /** null: not a member of the Enterprise Account. */
  enterprise: EnterprisePermission[] | null;
  teams: ReadonlyMap<string, TeamRole>;
  apps: ReadonlyMap<string, AppPermission[]>;
}

export const NO_ACCESS: Access = { enterprise: null, teams: new Map(), apps: new Map() };

export type Operation =
  | { kind: 'grant-enterprise'; account: string; permissions: EnterprisePermission[] }
  | { kind: 'change-enterprise'; account: string; from: EnterprisePermission[]; to: EnterprisePermission[] }
  | { kind: 'revoke-enterprise'; account: string }
  | { kind: 'add-team-member'; account: string; team: string; role: TeamRole }
  | { kind: 'change-team-role'; account: string; team: string; from: TeamRole; to: TeamRole }
  | { kind: 'remove-team-member'; account: string; team: string }
  /** Makes the tenant's fallback admin an admin of `team` before its last admin leaves. */
  | { kind: 'promote-fallback-admin'; account: string; team: string; from: TeamRole | null }
  | { kind: 'grant-app-access'; account: string; app: string; permissions: AppPermission[] }
  | { kind: 'change-app-access'; account: string; app: string; from: AppPermission[]; to: AppPermission[] }
  | { kind: 'revoke-app-access'; account: string; app: string }
  | { kind: 'revoke-tokens'; userId: string };

export type OperationKind = Operation['kind'];

/** Something the plan wanted but will not do by itself, with the reason a human reads on the receipt. */
export type Blocked =
  | { reason: 'last-admin'; account: string; team: string; wanted: 'remove-team-member' | 'change-team-role' }
  | { reason: 'mass-change-held'; changeId: string; operation: Operation };

export interface Plan {
  operations: Operation[];
  blocked: Blocked[];
}

/** The role a team operation leaves the account with. */
export function targetRole(
  operation: Extract<Operation, { kind: 'add-team-member' | 'change-team-role' | 'promote-fallback-admin' }>,
): TeamRole {
  if (operation.kind === 'add-team-member') return operation.role;
  return operation.kind === 'change-team-role' ? operation.to : 'admin';
}

/** Removals: what the mass-change brake may hold and what the receipt lists as edges removed. */
export function isRemoval(operation: Operation): boolean {
  return (
    operation.kind === 'revoke-enterprise' ||
    operation.kind === 'remove-team-member' ||
    operation.kind === 'revoke-app-access'
  );
}

export function describeOperation(operation: Operation): string {
  switch (operation.kind) {
    case 'grant-enterprise':
      return `grant ${operation.account} Enterprise Account permissions ${operation.permissions.join(',')}`;
    case 'change-enterprise':
      return `change ${operation.account}'s Enterprise Account permissions ${operation.from.join(',')} → ${operation.to.join(',')}`;
    case 'revoke-enterprise':
      return `remove ${operation.account} from the Enterprise Account`;
    case 'add-team-member':
      return `add ${operation.account} to team ${operation.team} as ${operation.role}`;
    case 'change-team-role':
      return `change ${operation.account}'s role in team ${operation.team} ${operation.from} → ${operation.to}`;
    case 'remove-team-member':
      return `remove ${operation.account} from team ${operation.team}`;
    case 'promote-fallback-admin':
      return `make fallback admin ${operation.account} an admin of team ${operation.team}`;
    case 'grant-app-access':
      return `grant ${operation.account} ${operation.permissions.join(',')} on app ${operation.app}`;
    case 'change-app-access':
      return `change ${operation.account}'s permissions on app ${operation.app} ${operation.from.join(',')} → ${operation.to.join(',')}`;
    case 'revoke-app-access':
      return `remove ${operation.account}'s access to app ${operation.app}`;
    case 'revoke-tokens':
      return `revoke every token and session of user ${operation.userId}`;
  }
}
