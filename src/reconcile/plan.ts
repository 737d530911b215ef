import { type Access, type Blocked, type Operation, type Plan, roleRank, type TeamRole } from './model.js';

export interface PlanContext {
  /** The user's platform account (login e-mail, lower-cased). */
  account: string;
  userId: string;
  /** Deactivated or deleted in the IdP: every token and session goes too. */
  revokeTokens: boolean;
  /** Current admins of each team the user is an admin of, to protect a team's last admin. */
  teamAdmins: ReadonlyMap<string, ReadonlySet<string>>;
  /** The tenant's fallback admin account, promoted before a team's last admin leaves. */
  fallbackAdmin: string | undefined;
}

const same = (a: readonly string[], b: readonly string[]) => a.join(',') === b.join(',');

/**
 * The ordered operations that turn `actual` into `desired` for one user. Pure: no I/O, so it is tested
 * exhaustively and printed by `idsync plan`. Order: grants and upgrades first (access is never briefly
 * lost while it changes), then removals from apps, teams, and the Enterprise Account last, then tokens.
 */
export function plan(desired: Access, actual: Access, context: PlanContext): Plan {
  const { account } = context;
  const grants: Operation[] = [];
  const removals: Operation[] = [];
  const blocked: Blocked[] = [];

  if (actual.enterprise === null && desired.enterprise !== null) {
    grants.push({ kind: 'grant-enterprise', account, permissions: desired.enterprise });
  } else if (
    actual.enterprise !== null &&
    desired.enterprise !== null &&
    !same(actual.enterprise, desired.enterprise)
  ) {
    grants.push({ kind: 'change-enterprise', account, from: actual.enterprise, to: desired.enterprise });
  }

  for (const [team, role] of desired.teams) {
    const current = actual.teams.get(team);
    if (current === undefined) grants.push({ kind: 'add-team-member', account, team, role });
    else if (roleRank(role) > roleRank(current))
      grants.push({ kind: 'change-team-role', account, team, from: current, to: role });
  }

  for (const [app, permissions] of desired.apps) {
    const current = actual.apps.get(app);
    if (current === undefined) grants.push({ kind: 'grant-app-access', account, app, permissions });
    else if (!same(current, permissions))
      grants.push({ kind: 'change-app-access', account, app, from: current, to: permissions });
  }

  for (const app of actual.apps.keys()) {
    if (!desired.apps.has(app)) removals.push({ kind: 'revoke-app-access', account, app });
  }

  let teamEdgeKept = false;
  for (const [team, current] of actual.teams) {
    const wanted: TeamRole | undefined = desired.teams.get(team);
    // Upgrades were granted above; here only removals and downgrades.
    if (wanted !== undefined && roleRank(wanted) >= roleRank(current)) continue;
    const leaving: Operation =
      wanted === undefined
        ? { kind: 'remove-team-member', account, team }
        : { kind: 'change-team-role', account, team, from: current, to: wanted };
    if (current === 'admin') {
      // An admin leaving or stepping down: the team must keep at least one admin.
      const otherAdmins = [...(context.teamAdmins.get(team) ?? [])].filter((a) => a !== account);
      if (otherAdmins.length === 0) {
        if (context.fallbackAdmin && context.fallbackAdmin !== account) {
          removals.push({ kind: 'promote-fallback-admin', account: context.fallbackAdmin, team, from: null });
        } else {
          blocked.push({
            reason: 'last-admin',
            account,
            team,
            wanted: leaving.kind === 'remove-team-member' ? 'remove-team-member' : 'change-team-role',
          });
          teamEdgeKept = teamEdgeKept || leaving.kind === 'remove-team-member';
          continue;
        }
      }
    }
    removals.push(leaving);
  }

  if (actual.enterprise !== null && desired.enterprise === null && !teamEdgeKept) {
    removals.push({ kind: 'revoke-enterprise', account });
  }
  const operations = [...grants, ...removals];
  if (context.revokeTokens) operations.push({ kind: 'revoke-tokens', userId: context.userId });
  return { operations, blocked };
}
