import {
  type Access,
  APP_PERMISSIONS,
  type AppPermission,
  type AssignmentRule,
  canonical,
  type DirectAssignment,
  ENTERPRISE_PERMISSIONS,
  type EnterprisePermission,
  higherRole,
  NO_ACCESS,
  type TeamRole,
} from './model.js';

/** What the IdP says about one user, as the reconciler needs it. */
export interface UserFacts {
  active: boolean;
  /** Deleted in the IdP (SCIM DELETE): a tombstone. */
  deprovisioned: boolean;
  /** Display names of the IdP groups the user is in. */
  groups: readonly string[];
  /** Values of the app roles the IdP assigned the user (SCIM `roles`); absent: none. */
  appRoles?: readonly string[];
  /** Access granted to the user directly (a CSV import), on top of what the rules give. */
  assignments?: readonly DirectAssignment[];
}

/**
 * The access a user should have: a pure function of the user, the rules (for "every team" rules also the
 * teams the platform lists: pass a RuleBook from `loadRuleBook`) and the user's direct assignments (a CSV
 * import). An inactive or deleted user desires nothing. Several grants: the highest team role wins,
 * permissions are unioned. Team or app access implies Enterprise Account membership (at least `view`), as
 * on the platform a team member is a member of the account that owns the team.
 */
export function desiredAccess(user: UserFacts, rules: readonly AssignmentRule[] | RuleBook): Access {
  if (!user.active || user.deprovisioned) return NO_ACCESS;
  const book = rules instanceof RuleBook ? rules : new RuleBook(rules);
  const groups = new Set(user.groups.map((g) => g.toLowerCase()));
  const appRoles = new Set((user.appRoles ?? []).map((r) => r.toLowerCase()));
  const teams = new Map<string, TeamRole>();
  const apps = new Map<string, Set<AppPermission>>();
  let enterprise: Set<EnterprisePermission> | null = null;
  const matched = [
    ...[...groups].flatMap((group) => book.forGroup(group)),
    ...[...appRoles].flatMap((role) => book.forAppRole(role)),
  ];
  for (const rule of matched) {
    switch (rule.target) {
      case 'team': {
        const current = teams.get(rule.team);
        teams.set(rule.team, current ? higherRole(current, rule.role) : rule.role);
        break;
      }
      case 'enterprise':
        enterprise = new Set([...(enterprise ?? []), ...rule.permissions]);
        break;
      case 'app':
        apps.set(rule.app, new Set([...(apps.get(rule.app) ?? []), ...rule.permissions]));
        break;
      case 'all-teams':
        for (const team of book.listedTeams) {
          const current = teams.get(team);
          teams.set(team, current ? higherRole(current, rule.role) : rule.role);
        }
        break;
    }
  }
  // Direct assignments add to the rules exactly as another rule would: highest role, union of permissions.
  for (const assignment of user.assignments ?? []) {
    if (assignment.team !== undefined) {
      const current = teams.get(assignment.team);
      teams.set(assignment.team, current ? higherRole(current, assignment.role) : assignment.role);
    } else {
      apps.set(assignment.app, new Set([...(apps.get(assignment.app) ?? []), ...assignment.permissions]));
    }
  }
  if (enterprise === null && (teams.size > 0 || apps.size > 0)) enterprise = new Set(['view']);
  // `view` is part of every permission set on the platform (Heroku: the CLI always adds it to app
  // collaborators, and every Enterprise Account member has it), so a rule granting `deploy` means
  // `view,deploy`; otherwise every read-back would look like drift.
  return {
    enterprise: enterprise === null ? null : canonical(['view', ...enterprise], ENTERPRISE_PERMISSIONS),
    teams,
    apps: new Map(
      [...apps].map(([app, permissions]) => [app, canonical(['view', ...permissions], APP_PERMISSIONS)]),
    ),
  };
}

/**
 * Rules indexed by IdP group and by app role (case-insensitively), so working out one user's access costs
 * their groups and roles, not every rule: a drift scan evaluates 100,000 users against 1,000 rules.
 */
export class RuleBook {
  private readonly byGroup = new Map<string, AssignmentRule[]>();
  private readonly byAppRole = new Map<string, AssignmentRule[]>();

  constructor(
    rules: readonly AssignmentRule[],
    /** The teams the platform lists (teams.listed_at set): what an "every team" rule covers. */
    readonly listedTeams: readonly string[] = [],
  ) {
    for (const rule of rules) {
      const [index, key] =
        rule.idpGroup !== undefined ? [this.byGroup, rule.idpGroup] : [this.byAppRole, rule.idpAppRole];
      index.set(key.toLowerCase(), [...(index.get(key.toLowerCase()) ?? []), rule]);
    }
  }

  forGroup(lowerCaseGroup: string): readonly AssignmentRule[] {
    return this.byGroup.get(lowerCaseGroup) ?? [];
  }

  forAppRole(lowerCaseRole: string): readonly AssignmentRule[] {
    return this.byAppRole.get(lowerCaseRole) ?? [];
  }
}
