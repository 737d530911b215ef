import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { Access, AppPermission, EnterprisePermission, TeamRole } from '../reconcile/model.js';
import type { OperationOutcome, PlatformConnector, PlatformOperation } from './connector.js';

/**
 * The built-in platform: Enterprise Account members, team members and app collaborators kept in
 * idsync's own tables (the embedded default, and the membership store for platforms that use idsync
 * directly). It behaves like the real platform where it matters: a team refuses to lose its last admin.
 */
export class BuiltinConnector implements PlatformConnector {
  readonly name = 'builtin';
  readonly capabilities = { revokesPlatformCredentials: true };

  constructor(
    private readonly db: Database,
    private readonly tenantId: string,
  ) {}

  async readAccess(account: string): Promise<Access> {
    const rows = await this.db.execute<{
      kind: string;
      name: string | null;
      role: string | null;
      permissions: string[] | null;
    }>(sql`
      SELECT 'enterprise' AS kind, NULL AS name, NULL AS role, permissions::text[] AS permissions
        FROM platform_enterprise_members WHERE tenant_id = ${this.tenantId} AND account = ${account}
      UNION ALL
      SELECT 'team', t.name, m.role::text, NULL FROM platform_team_members m JOIN teams t ON t.id = m.team_id
        WHERE m.tenant_id = ${this.tenantId} AND m.account = ${account}
      UNION ALL
      SELECT 'app', a.name, NULL, c.permissions::text[] FROM platform_app_collaborators c JOIN apps a ON a.id = c.app_id
        WHERE c.tenant_id = ${this.tenantId} AND c.account = ${account}`);
    const teams = new Map<string, TeamRole>();
    const apps = new Map<string, AppPermission[]>();
    let enterprise: EnterprisePermission[] | null = null;
    for (const row of rows) {
      if (row.kind === 'enterprise') enterprise = parseArray(row.permissions) as EnterprisePermission[];
      else if (row.kind === 'team') teams.set(row.name!, row.role as TeamRole);
      else apps.set(row.name!, parseArray(row.permissions) as AppPermission[]);
    }
    return { enterprise, teams, apps };
  }

  async teamAdmins(teamNames: readonly string[]): Promise<Map<string, Set<string>>> {
    const result = new Map<string, Set<string>>(teamNames.map((t) => [t, new Set()]));
    if (teamNames.length === 0) return result;
    const rows = await this.db.execute<{ team: string; account: string }>(sql`
      SELECT t.name AS team, m.account FROM platform_team_members m JOIN teams t ON t.id = m.team_id
      WHERE t.tenant_id = ${this.tenantId} AND t.name = ANY(${sql.param([...teamNames])}::text[]) AND m.role = 'admin'`);
    for (const row of rows) result.get(row.team)?.add(row.account);
    return result;
  }

  /**
   * Consecutive removals of one kind for one account go in one statement: a user leaving 100 teams is
   * one DELETE, with each team's last-admin refusal decided exactly as one-by-one removal would.
   */
  async applyAll(operations: readonly PlatformOperation[]): Promise<OperationOutcome[]> {
    const outcomes: OperationOutcome[] = [];
    let i = 0;
    while (i < operations.length) {
      const first = operations[i]!;
      let j = i + 1;
      if (first.kind === 'remove-team-member' || first.kind === 'revoke-app-access') {
        while (
          j < operations.length &&
          operations[j]!.kind === first.kind &&
          operations[j]!.account === first.account
        )
          j += 1;
      }
      const run = operations.slice(i, j);
      if (run.length > 1 && first.kind === 'remove-team-member') {
        outcomes.push(
          ...(await this.removeFromTeams(
            first.account,
            run.map((o) => (o as { team: string }).team),
          )),
        );
      } else if (run.length > 1 && first.kind === 'revoke-app-access') {
        outcomes.push(
          ...(await this.revokeApps(
            first.account,
            run.map((o) => (o as { app: string }).app),
          )),
        );
      } else {
        outcomes.push(await this.apply(first));
      }
      i = j;
    }
    return outcomes;
  }

  private async removeFromTeams(account: string, teamNames: string[]): Promise<OperationOutcome[]> {
    const rows = await this.db.execute<{ team: string; was_member: boolean; removed: boolean }>(sql`
      WITH wanted AS (SELECT unnest(${sql.param(teamNames)}::text[]) AS name),
      target AS (
        SELECT t.id AS team_id, t.name, m.role FROM teams t
        JOIN platform_team_members m ON m.team_id = t.id AND m.account = ${account}
        WHERE t.tenant_id = ${this.tenantId} AND t.name IN (SELECT name FROM wanted)
      ),
      locked_admins AS (
        SELECT m.team_id FROM platform_team_members m
        WHERE m.team_id IN (SELECT team_id FROM target WHERE role = 'admin') AND m.role = 'admin' FOR UPDATE
      ),
      admins AS (SELECT team_id, count(*) AS n FROM locked_admins GROUP BY team_id),
      removed AS (
        DELETE FROM platform_team_members m USING target
        LEFT JOIN admins ON admins.team_id = target.team_id
        WHERE m.team_id = target.team_id AND m.account = ${account}
          AND (target.role <> 'admin' OR admins.n > 1)
        RETURNING target.name
      )
      SELECT wanted.name AS team, (target.name IS NOT NULL) AS was_member, (removed.name IS NOT NULL) AS removed
      FROM wanted LEFT JOIN target ON target.name = wanted.name LEFT JOIN removed ON removed.name = wanted.name`);
    const byTeam = new Map(rows.map((r) => [r.team, r]));
    return teamNames.map((team) => {
      const row = byTeam.get(team);
      if (row?.removed) return { status: 'applied' };
      if (!row?.was_member) return { status: 'already-done' };
      return { status: 'blocked', reason: `${account} is the last admin of team ${team}` };
    });
  }

  private async revokeApps(account: string, appNames: string[]): Promise<OperationOutcome[]> {
    const rows = await this.db.execute<{ app: string }>(sql`
      DELETE FROM platform_app_collaborators c USING apps a
      WHERE c.app_id = a.id AND a.tenant_id = ${this.tenantId} AND c.account = ${account}
        AND a.name = ANY(${sql.param(appNames)}::text[])
      RETURNING a.name AS app`);
    const removed = new Set(rows.map((r) => r.app));
    return appNames.map((app) => (removed.has(app) ? { status: 'applied' } : { status: 'already-done' }));
  }

  async enterpriseSize(): Promise<number> {
    const [row] = await this.db.execute<{ n: number }>(sql`
      SELECT count(*)::int AS n FROM platform_enterprise_members WHERE tenant_id = ${this.tenantId}`);
    return row?.n ?? 0;
  }

  async apply(operation: PlatformOperation): Promise<OperationOutcome> {
    const tenant = this.tenantId;
    const changed = async (query: ReturnType<typeof sql>) => (await this.db.execute(query)).count > 0;
    switch (operation.kind) {
      case 'grant-enterprise':
      case 'change-enterprise': {
        const permissions = operation.kind === 'grant-enterprise' ? operation.permissions : operation.to;
        return outcome(
          await changed(sql`
            INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
            VALUES (${tenant}, ${operation.account}, ${sql.param(permissions)}::enterprise_permission[])
            ON CONFLICT (tenant_id, account) DO UPDATE SET permissions = EXCLUDED.permissions, updated_at = now()
            WHERE platform_enterprise_members.permissions IS DISTINCT FROM EXCLUDED.permissions`),
        );
      }
      case 'revoke-enterprise':
        return outcome(
          await changed(sql`
            DELETE FROM platform_enterprise_members WHERE tenant_id = ${tenant} AND account = ${operation.account}`),
        );
      case 'add-team-member':
      case 'change-team-role':
      case 'promote-fallback-admin': {
        const role =
          operation.kind === 'add-team-member'
            ? operation.role
            : operation.kind === 'change-team-role'
              ? operation.to
              : 'admin';
        return outcome(
          await changed(sql`
            WITH team AS (
              INSERT INTO teams (tenant_id, name) VALUES (${tenant}, ${operation.team})
              ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id
            )
            INSERT INTO platform_team_members (tenant_id, team_id, account, role)
            SELECT ${tenant}, team.id, ${operation.account}, ${role}::team_role FROM team
            ON CONFLICT (team_id, account) DO UPDATE SET role = EXCLUDED.role, updated_at = now()
            WHERE platform_team_members.role IS DISTINCT FROM EXCLUDED.role`),
        );
      }
      case 'remove-team-member': {
        // As the real platform does: refuse to remove a team's last admin. Checked in the same statement
        // (with the team's admin rows locked) so two concurrent removals cannot both pass.
        const rows = await this.db.execute<{ removed: boolean; was_member: boolean }>(sql`
          WITH team AS (SELECT id FROM teams WHERE tenant_id = ${tenant} AND name = ${operation.team}),
          admins AS (
            SELECT m.account FROM platform_team_members m JOIN team ON m.team_id = team.id
            WHERE m.role = 'admin' FOR UPDATE
          ),
          target AS (
            SELECT m.team_id, m.account, m.role FROM platform_team_members m JOIN team ON m.team_id = team.id
            WHERE m.account = ${operation.account}
          ),
          removed AS (
            DELETE FROM platform_team_members m USING target
            WHERE m.team_id = target.team_id AND m.account = target.account
              AND (target.role <> 'admin' OR (SELECT count(*) FROM admins) > 1)
            RETURNING m.account
          )
          SELECT EXISTS (SELECT 1 FROM removed) AS removed, EXISTS (SELECT 1 FROM target) AS was_member`);
        const row = rows[0]!;
        if (row.removed) return { status: 'applied' };
        if (!row.was_member) return { status: 'already-done' };
        return {
          status: 'blocked',
          reason: `${operation.account} is the last admin of team ${operation.team}`,
        };
      }
      case 'grant-app-access':
      case 'change-app-access': {
        const permissions = operation.kind === 'grant-app-access' ? operation.permissions : operation.to;
        return outcome(
          await changed(sql`
            WITH app AS (
              INSERT INTO apps (tenant_id, name) VALUES (${tenant}, ${operation.app})
              ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id
            )
            INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions)
            SELECT ${tenant}, app.id, ${operation.account}, ${sql.param(permissions)}::app_permission[] FROM app
            ON CONFLICT (app_id, account) DO UPDATE SET permissions = EXCLUDED.permissions, updated_at = now()
            WHERE platform_app_collaborators.permissions IS DISTINCT FROM EXCLUDED.permissions`),
        );
      }
      case 'revoke-app-access':
        return outcome(
          await changed(sql`
            DELETE FROM platform_app_collaborators c USING apps a
            WHERE c.app_id = a.id AND a.tenant_id = ${tenant} AND a.name = ${operation.app} AND c.account = ${operation.account}`),
        );
    }
  }
}

function outcome(changed: boolean): OperationOutcome {
  return changed ? { status: 'applied' } : { status: 'already-done' };
}

/** postgres.js returns enum arrays as their text form (`{view,deploy}`) when it does not know the type. */
function parseArray(value: string[] | string | null): string[] {
  if (value === null) return [];
  if (Array.isArray(value)) return value;
  return value
    .replace(/^\{|\}$/g, '')
    .split(',')
    .filter(Boolean);
}
