import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { accountKeyOf } from '../db/schema.js';
import { recordListedTeams } from '../reconcile/listed-teams.js';
import {
  type Access,
  type AppPermission,
  type EnterprisePermission,
  type TeamRole,
  targetRole,
} from '../reconcile/model.js';
import { pgArray } from '../reconcile/state.js';
import type { EnterpriseMember, PlatformOperation, PlatformSlice } from './connector.js';

/**
 * Platform membership kept in idsync's own tables: the Enterprise Account's members, each team's
 * members and each app's collaborators. For the built-in platform these rows are the platform; for a
 * remote platform (Heroku) they are idsync's mirror of it — written after every operation the platform
 * accepted and replaced wholesale by every drift scan — so that reconciling one user never has to list
 * every team on the remote platform to find that user's memberships.
 */
export interface RecordedFacts {
  remoteId?: string | undefined;
  federated?: boolean | null | undefined;
}

/** The platform's ids of a slice's members, by account. */
export type MemberIds = ReadonlyMap<string, string>;

export class PlatformMirror {
  constructor(
    readonly db: Database,
    readonly tenantId: string,
    /** A remote platform lists removed edges for a while after a DELETE; the built-in one does not. */
    private readonly remembersRemovals = false,
  ) {}

  /**
   * Matched by account_key(), like the sweeper, seats and drift: what detection sees, enforcement finds.
   * The expression indexes of drizzle/0021 serve it because the name's key is `accountKeyOf`'s
   * sub-select: with a bare account_key($n) a generic plan on stale statistics scanned the tenant's rows
   * and keyed each one (BENCHMARKS.md, "Looking an account up by name").
   */
  async readAccess(account: string): Promise<Access> {
    const rows = await this.db.execute<{
      kind: string;
      name: string | null;
      role: string | null;
      permissions: string | null;
    }>(sql`
      SELECT 'enterprise' AS kind, NULL AS name, NULL AS role, permissions::text AS permissions
        FROM platform_enterprise_members WHERE tenant_id = ${this.tenantId} AND account_key(account) = ${accountKeyOf(account)}
      UNION ALL
      SELECT 'team', t.name, m.role::text, NULL FROM platform_team_members m JOIN teams t ON t.id = m.team_id
        WHERE m.tenant_id = ${this.tenantId} AND account_key(m.account) = ${accountKeyOf(account)}
      UNION ALL
      SELECT 'app', a.name, NULL, c.permissions::text FROM platform_app_collaborators c JOIN apps a ON a.id = c.app_id
        WHERE c.tenant_id = ${this.tenantId} AND account_key(c.account) = ${accountKeyOf(account)}`);
    const teams = new Map<string, TeamRole>();
    const apps = new Map<string, AppPermission[]>();
    let enterprise: EnterprisePermission[] | null = null;
    for (const row of rows) {
      if (row.kind === 'enterprise') enterprise = pgArray(row.permissions) as EnterprisePermission[];
      else if (row.kind === 'team') teams.set(row.name!, row.role as TeamRole);
      else apps.set(row.name!, pgArray(row.permissions) as AppPermission[]);
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

  async enterpriseSize(): Promise<number> {
    const [row] = await this.db.execute<{ n: number }>(sql`
      SELECT count(*)::int AS n FROM platform_enterprise_members WHERE tenant_id = ${this.tenantId}`);
    return row?.n ?? 0;
  }

  /** When the platform was last read in full (the latest drift scan), if ever. */
  async lastScanAt(): Promise<Date | undefined> {
    const [row] = await this.db.execute<{ at: string | null }>(sql`
      SELECT to_json(max(created_at))#>>'{}' AS at FROM drift_reports WHERE tenant_id = ${this.tenantId}`);
    return row?.at ? new Date(row.at) : undefined;
  }

  async enterpriseMember(account: string): Promise<EnterpriseMember | undefined> {
    const [row] = await this.db.execute<{ permissions: string; federated: boolean | null }>(sql`
      SELECT permissions::text, federated FROM platform_enterprise_members
      WHERE tenant_id = ${this.tenantId} AND account_key(account) = ${accountKeyOf(account)}`);
    if (!row) return undefined;
    return {
      account,
      permissions: pgArray(row.permissions) as EnterprisePermission[],
      federated: row.federated,
    };
  }

  /**
   * Records an operation the platform carried out. Returns whether the mirror changed, which for the
   * built-in platform is exactly whether the operation was needed. `known` is what the platform said
   * in its answer: the membership's remote id and, for the Enterprise Account, whether the user is
   * under SSO (null or absent: it did not say, and what a scan read stays).
   */
  async record(operation: PlatformOperation, known: RecordedFacts = {}): Promise<boolean> {
    const tenant = this.tenantId;
    const remoteId = known.remoteId ?? null;
    const changed = async (query: ReturnType<typeof sql>) => (await this.db.execute(query)).count > 0;
    switch (operation.kind) {
      case 'grant-enterprise':
      case 'change-enterprise': {
        const permissions = operation.kind === 'grant-enterprise' ? operation.permissions : operation.to;
        return changed(sql`
          INSERT INTO platform_enterprise_members (tenant_id, account, permissions, federated, remote_id)
          VALUES (${tenant}, ${operation.account}, ${sql.param(permissions)}::enterprise_permission[], ${known.federated ?? null}, ${remoteId})
          ON CONFLICT (tenant_id, account) DO UPDATE SET permissions = EXCLUDED.permissions,
            federated = COALESCE(EXCLUDED.federated, platform_enterprise_members.federated),
            remote_id = COALESCE(EXCLUDED.remote_id, platform_enterprise_members.remote_id), updated_at = now()
          WHERE (platform_enterprise_members.permissions, platform_enterprise_members.federated, platform_enterprise_members.remote_id)
            IS DISTINCT FROM (EXCLUDED.permissions, COALESCE(EXCLUDED.federated, platform_enterprise_members.federated),
              COALESCE(EXCLUDED.remote_id, platform_enterprise_members.remote_id))`);
      }
      case 'revoke-enterprise':
        return changed(sql`
          ${this.rememberRemoval('enterprise', operation.account)}
          DELETE FROM platform_enterprise_members WHERE tenant_id = ${tenant} AND account = ${operation.account}`);
      case 'add-team-member':
      case 'change-team-role':
      case 'promote-fallback-admin': {
        const role = targetRole(operation);
        return changed(sql`
          WITH team AS (
            INSERT INTO teams (tenant_id, name) VALUES (${tenant}, ${operation.team})
            ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id
          )
          INSERT INTO platform_team_members (tenant_id, team_id, account, role, remote_id)
          SELECT ${tenant}, team.id, ${operation.account}, ${role}::team_role, ${remoteId} FROM team
          ON CONFLICT (team_id, account) DO UPDATE SET role = EXCLUDED.role,
            remote_id = COALESCE(EXCLUDED.remote_id, platform_team_members.remote_id), updated_at = now()
          WHERE platform_team_members.role IS DISTINCT FROM EXCLUDED.role
            OR platform_team_members.remote_id IS DISTINCT FROM COALESCE(EXCLUDED.remote_id, platform_team_members.remote_id)`);
      }
      case 'remove-team-member':
        return changed(sql`
          ${this.rememberRemoval(`team:${operation.team}`, operation.account)}
          DELETE FROM platform_team_members m USING teams t
          WHERE m.team_id = t.id AND t.tenant_id = ${tenant} AND t.name = ${operation.team} AND m.account = ${operation.account}`);
      case 'grant-app-access':
      case 'change-app-access': {
        const permissions = operation.kind === 'grant-app-access' ? operation.permissions : operation.to;
        return changed(sql`
          WITH app AS (
            INSERT INTO apps (tenant_id, name) VALUES (${tenant}, ${operation.app})
            ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id
          )
          INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions, remote_id)
          SELECT ${tenant}, app.id, ${operation.account}, ${sql.param(permissions)}::app_permission[], ${remoteId} FROM app
          ON CONFLICT (app_id, account) DO UPDATE SET permissions = EXCLUDED.permissions,
            remote_id = COALESCE(EXCLUDED.remote_id, platform_app_collaborators.remote_id), updated_at = now()
          WHERE platform_app_collaborators.permissions IS DISTINCT FROM EXCLUDED.permissions
            OR platform_app_collaborators.remote_id IS DISTINCT FROM COALESCE(EXCLUDED.remote_id, platform_app_collaborators.remote_id)`);
      }
      case 'revoke-app-access':
        return changed(sql`
          ${this.rememberRemoval(`app:${operation.app}`, operation.account)}
          DELETE FROM platform_app_collaborators c USING apps a
          WHERE c.app_id = a.id AND a.tenant_id = ${tenant} AND a.name = ${operation.app} AND c.account = ${operation.account}`);
    }
  }

  /**
   * Remote platforms only: a removal the platform accepted may still be listed for a few seconds
   * (Heroku, REAL-API-NOTES D13); a scan skips edges removed within the last minute.
   */
  private rememberRemoval(edge: string, account: string) {
    if (!this.remembersRemovals) return sql``;
    // A data-modifying CTE runs whatever the DELETE after it finds: one round trip for both.
    return sql`WITH remembered AS (
      INSERT INTO platform_recent_removals (tenant_id, edge, account) VALUES (${this.tenantId}, ${edge}, ${account})
      ON CONFLICT (tenant_id, edge, account) DO UPDATE SET removed_at = now())`;
  }

  /** Edges removed within the last minute, as `<edge>|<account>` (`enterprise`, `team:<name>`, `app:<name>`). */
  async recentRemovals(): Promise<Set<string>> {
    await this.db.execute(sql`
      DELETE FROM platform_recent_removals WHERE tenant_id = ${this.tenantId} AND removed_at < now() - interval '1 minute'`);
    const rows = await this.db.execute<{ edge: string; account: string }>(sql`
      SELECT edge, account FROM platform_recent_removals WHERE tenant_id = ${this.tenantId}`);
    return new Set(rows.map((r) => `${r.edge}|${r.account}`));
  }

  /** The platform's ids known for a container and, optionally, one account's membership in it. */
  async remoteIds(
    container: { kind: 'enterprise' } | { kind: 'team'; name: string } | { kind: 'app'; name: string },
    account?: string,
  ): Promise<{ container: string | null; member: string | null }> {
    const tenant = this.tenantId;
    const rows =
      container.kind === 'enterprise'
        ? await this.db.execute<{ container: string | null; member: string | null }>(sql`
            SELECT NULL AS container, remote_id AS member FROM platform_enterprise_members
            WHERE tenant_id = ${tenant} AND account = ${account ?? ''}`)
        : container.kind === 'team'
          ? await this.db.execute<{ container: string | null; member: string | null }>(sql`
              SELECT t.remote_id AS container, m.remote_id AS member FROM teams t
              LEFT JOIN platform_team_members m ON m.team_id = t.id AND m.account = ${account ?? ''}
              WHERE t.tenant_id = ${tenant} AND t.name = ${container.name}`)
          : await this.db.execute<{ container: string | null; member: string | null }>(sql`
              SELECT a.remote_id AS container, c.remote_id AS member FROM apps a
              LEFT JOIN platform_app_collaborators c ON c.app_id = a.id AND c.account = ${account ?? ''}
              WHERE a.tenant_id = ${tenant} AND a.name = ${container.name}`);
    return { container: rows[0]?.container ?? null, member: rows[0]?.member ?? null };
  }

  /**
   * Ties a team or app the platform listed to idsync's row for it, by the platform's id first: a
   * container renamed on the platform keeps idsync's name (the one rules use), so removals and grants
   * keep reaching it. Returns the name idsync knows it by.
   */
  async bindContainer(kind: 'team' | 'app', name: string, remoteId: string): Promise<string> {
    const table = kind === 'team' ? sql`teams` : sql`apps`;
    const [bound] = await this.db.execute<{ name: string }>(sql`
      SELECT name FROM ${table} WHERE tenant_id = ${this.tenantId} AND remote_id = ${remoteId}`);
    if (bound) return bound.name;
    const [row] = await this.db.execute<{ name: string; remote_id: string | null }>(sql`
      INSERT INTO ${table} (tenant_id, name, remote_id) VALUES (${this.tenantId}, ${name}, ${remoteId})
      ON CONFLICT (tenant_id, name) DO UPDATE SET remote_id = COALESCE(${table}.remote_id, EXCLUDED.remote_id)
      RETURNING name, remote_id`);
    if (row!.remote_id === remoteId) return row!.name;
    // The name belongs to another container (renamed away, and a new one took the name): keep both.
    const distinct = `${name} (${remoteId})`;
    await this.db.execute(sql`
      INSERT INTO ${table} (tenant_id, name, remote_id) VALUES (${this.tenantId}, ${distinct}, ${remoteId})
      ON CONFLICT (tenant_id, name) DO UPDATE SET remote_id = EXCLUDED.remote_id`);
    return distinct;
  }

  /**
   * A team the platform reports as created (Heroku's audit trail: `team.create`): bound to idsync's row
   * by its id, then announced through `teamDiscovered`.
   */
  async learnTeam(name: string, remoteId: string | null): Promise<string> {
    const local = remoteId
      ? await this.bindContainer('team', name, remoteId)
      : ((
          await this.db.execute<{ name: string }>(sql`
            INSERT INTO teams (tenant_id, name) VALUES (${this.tenantId}, ${name})
            ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING name`)
        )[0]?.name ?? name);
    await teamDiscovered(this.db, this.tenantId, local);
    return local;
  }

  /** An account the platform does not know yet: its grants wait for its first sign-in. */
  async markPending(account: string, reason: string): Promise<void> {
    await this.db.execute(sql`
      INSERT INTO platform_pending_accounts (tenant_id, account, reason) VALUES (${this.tenantId}, ${account}, ${reason})
      ON CONFLICT (tenant_id, account) DO UPDATE SET reason = EXCLUDED.reason`);
  }

  async clearPending(account: string): Promise<void> {
    await this.db.execute(sql`
      DELETE FROM platform_pending_accounts WHERE tenant_id = ${this.tenantId} AND account = ${account}`);
  }

  /** Replaces what the mirror holds for one slice with what the platform just said. */
  async replace(slice: PlatformSlice, ids: MemberIds = new Map()): Promise<void> {
    const idOf = (account: string) => ids.get(account) ?? null;
    const tenant = this.tenantId;
    const db = this.db;
    switch (slice.kind) {
      case 'enterprise': {
        const members = JSON.stringify(slice.members.map((m) => ({ ...m, remote_id: idOf(m.account) })));
        await db.transaction(async (tx) => {
          await tx.execute(sql`
            DELETE FROM platform_enterprise_members m WHERE m.tenant_id = ${tenant}
              AND NOT EXISTS (SELECT 1 FROM jsonb_to_recordset(${members}::jsonb) AS r(account text) WHERE r.account = m.account)`);
          await tx.execute(sql`
            INSERT INTO platform_enterprise_members (tenant_id, account, permissions, federated, remote_id)
            SELECT ${tenant}, r.account, ARRAY(SELECT jsonb_array_elements_text(r.permissions))::enterprise_permission[], r.federated, r.remote_id
            FROM jsonb_to_recordset(${members}::jsonb) AS r(account text, permissions jsonb, federated boolean, remote_id text)
            ON CONFLICT (tenant_id, account) DO UPDATE SET permissions = EXCLUDED.permissions,
              federated = EXCLUDED.federated, remote_id = COALESCE(EXCLUDED.remote_id, platform_enterprise_members.remote_id), updated_at = now()
            WHERE (platform_enterprise_members.permissions, platform_enterprise_members.federated, platform_enterprise_members.remote_id)
              IS DISTINCT FROM (EXCLUDED.permissions, EXCLUDED.federated, COALESCE(EXCLUDED.remote_id, platform_enterprise_members.remote_id))`);
        });
        return;
      }
      case 'team': {
        const members = JSON.stringify(
          slice.members.map(([account, role]) => ({ account, role, remote_id: idOf(account) })),
        );
        await db.transaction(async (tx) => {
          const [team] = await tx.execute<{ id: string }>(sql`
            INSERT INTO teams (tenant_id, name) VALUES (${tenant}, ${slice.team})
            ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id`);
          await tx.execute(sql`
            DELETE FROM platform_team_members m WHERE m.team_id = ${team!.id}
              AND NOT EXISTS (SELECT 1 FROM jsonb_to_recordset(${members}::jsonb) AS r(account text) WHERE r.account = m.account)`);
          await tx.execute(sql`
            INSERT INTO platform_team_members (tenant_id, team_id, account, role, remote_id)
            SELECT ${tenant}, ${team!.id}, r.account, r.role::team_role, r.remote_id
            FROM jsonb_to_recordset(${members}::jsonb) AS r(account text, role text, remote_id text)
            ON CONFLICT (team_id, account) DO UPDATE SET role = EXCLUDED.role,
              remote_id = COALESCE(EXCLUDED.remote_id, platform_team_members.remote_id), updated_at = now()
            WHERE (platform_team_members.role, platform_team_members.remote_id)
              IS DISTINCT FROM (EXCLUDED.role, COALESCE(EXCLUDED.remote_id, platform_team_members.remote_id))`);
        });
        return;
      }
      case 'app': {
        const collaborators = JSON.stringify(
          slice.collaborators.map(([account, permissions]) => ({
            account,
            permissions,
            remote_id: idOf(account),
          })),
        );
        await db.transaction(async (tx) => {
          const [app] = await tx.execute<{ id: string }>(sql`
            INSERT INTO apps (tenant_id, name) VALUES (${tenant}, ${slice.app})
            ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id`);
          await tx.execute(sql`
            DELETE FROM platform_app_collaborators c WHERE c.app_id = ${app!.id}
              AND NOT EXISTS (SELECT 1 FROM jsonb_to_recordset(${collaborators}::jsonb) AS r(account text) WHERE r.account = c.account)`);
          await tx.execute(sql`
            INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions, remote_id)
            SELECT ${tenant}, ${app!.id}, r.account, ARRAY(SELECT jsonb_array_elements_text(r.permissions))::app_permission[], r.remote_id
            FROM jsonb_to_recordset(${collaborators}::jsonb) AS r(account text, permissions jsonb, remote_id text)
            ON CONFLICT (app_id, account) DO UPDATE SET permissions = EXCLUDED.permissions,
              remote_id = COALESCE(EXCLUDED.remote_id, platform_app_collaborators.remote_id), updated_at = now()
            WHERE (platform_app_collaborators.permissions, platform_app_collaborators.remote_id)
              IS DISTINCT FROM (EXCLUDED.permissions, COALESCE(EXCLUDED.remote_id, platform_app_collaborators.remote_id))`);
        });
        return;
      }
    }
  }

  /** Forgets teams and apps the platform no longer lists (deleted on the platform). */
  async forgetAllBut(kind: 'team' | 'app', names: readonly string[]): Promise<void> {
    const keep = sql.param([...names]);
    await this.db.execute(
      kind === 'team'
        ? sql`DELETE FROM platform_team_members m USING teams t WHERE m.team_id = t.id
            AND t.tenant_id = ${this.tenantId} AND NOT (t.name = ANY(${keep}::text[]))`
        : sql`DELETE FROM platform_app_collaborators c USING apps a WHERE c.app_id = a.id
            AND a.tenant_id = ${this.tenantId} AND NOT (a.name = ANY(${keep}::text[]))`,
    );
  }

  /**
   * The whole membership as slices, read in keyset-paged chunks (memory stays flat however large the
   * platform): the Enterprise Account first, then each team, then each app, each read exactly once.
   */
  async *slices(): AsyncGenerator<PlatformSlice> {
    const members: EnterpriseMember[] = [];
    for await (const r of this.pages<{
      key: string;
      account: string;
      permissions: string;
      federated: boolean | null;
    }>(
      (
        after,
      ) => sql`SELECT account AS key, account, permissions::text, federated FROM platform_enterprise_members
        WHERE tenant_id = ${this.tenantId} AND account > ${after} ORDER BY account`,
    )) {
      members.push({
        account: r.account,
        permissions: pgArray(r.permissions) as EnterprisePermission[],
        federated: r.federated,
      });
    }
    yield { kind: 'enterprise', members };

    for await (const { name } of this.pages<{ key: string; name: string }>(
      (after) =>
        sql`SELECT name AS key, name FROM teams WHERE tenant_id = ${this.tenantId} AND name > ${after} ORDER BY name`,
    )) {
      const rows = await this.db.execute<{ account: string; role: TeamRole }>(sql`
        SELECT m.account, m.role FROM platform_team_members m JOIN teams t ON t.id = m.team_id
        WHERE t.tenant_id = ${this.tenantId} AND t.name = ${name}`);
      yield { kind: 'team', team: name, members: rows.map((r) => [r.account, r.role]) };
    }
    for await (const { name } of this.pages<{ key: string; name: string }>(
      (after) =>
        sql`SELECT name AS key, name FROM apps WHERE tenant_id = ${this.tenantId} AND name > ${after} ORDER BY name`,
    )) {
      const rows = await this.db.execute<{ account: string; permissions: string }>(sql`
        SELECT c.account, c.permissions::text FROM platform_app_collaborators c JOIN apps a ON a.id = c.app_id
        WHERE a.tenant_id = ${this.tenantId} AND a.name = ${name}`);
      yield {
        kind: 'app',
        app: name,
        collaborators: rows.map((r) => [r.account, pgArray(r.permissions) as AppPermission[]]),
      };
    }
  }

  private async *pages<Row extends Record<string, unknown> & { key: string }>(
    query: (after: string) => ReturnType<typeof sql>,
  ): AsyncGenerator<Row> {
    let after = '';
    for (;;) {
      const rows = await this.db.execute<Row>(sql`${query(after)} LIMIT ${PAGE}`);
      for (const row of rows) yield row as Row;
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.key;
    }
  }
}

const PAGE = 20_000;

/**
 * Called whenever the mirror learns of a team the platform created (the audit trail's `team.create`):
 * the team is recorded as listed, and if it is new, every user of an "every team" rule is queued
 * (`recordListedTeams`, the one place a team the platform gained reaches those rules).
 */
export async function teamDiscovered(db: Database, tenantId: string, team: string): Promise<void> {
  await recordListedTeams(db, tenantId, [team], {
    complete: false,
    cause: { event: 'audit-trail.team-created' },
  });
}
