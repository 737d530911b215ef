import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { Access } from '../reconcile/model.js';
import type {
  HumanStep,
  OperationOutcome,
  PlatformConnector,
  PlatformOperation,
  PlatformSlice,
} from './connector.js';
import { PlatformMirror } from './mirror.js';

/**
 * The built-in platform: Enterprise Account members, team members and app collaborators kept in
 * idsync's own tables (the embedded default, and the membership store for platforms that use idsync
 * directly). It behaves like the real platform where it matters: a team refuses to lose its last admin.
 */
export class BuiltinConnector implements PlatformConnector {
  readonly name = 'builtin';
  private readonly store: PlatformMirror;

  constructor(
    private readonly db: Database,
    private readonly tenantId: string,
  ) {
    this.store = new PlatformMirror(db, tenantId);
  }

  readAccess(account: string): Promise<Access> {
    return this.store.readAccess(account);
  }

  teamAdmins(teamNames: readonly string[]): Promise<Map<string, Set<string>>> {
    return this.store.teamAdmins(teamNames);
  }

  enterpriseSize(): Promise<number> {
    return this.store.enterpriseSize();
  }

  scan(): AsyncIterable<PlatformSlice> {
    return this.store.slices();
  }

  /** idsync's own tokens and sessions are the built-in platform's credentials: nothing is left over. */
  async residualRisk(): Promise<HumanStep[]> {
    return [];
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
      return { status: 'blocked', cause: 'refused', reason: `${account} is the last admin of team ${team}` };
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

  async apply(operation: PlatformOperation): Promise<OperationOutcome> {
    const tenant = this.tenantId;
    switch (operation.kind) {
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
          cause: 'refused',
          reason: `${operation.account} is the last admin of team ${operation.team}`,
        };
      }
      default:
        return (await this.store.record(operation)) ? { status: 'applied' } : { status: 'already-done' };
    }
  }
}
