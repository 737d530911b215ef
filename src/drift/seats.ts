import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { TEAM_ROLES, type TeamRole } from '../reconcile/model.js';

export interface InactiveSeat {
  userId: string;
  userName: string;
  lastSsoLoginAt: string | null;
  /** The account's last action on the platform (a release, an audit-trail event, a reported activity). */
  lastActivity: { kind: string; app: string | null; at: string } | null;
  /** Days since the later of the last SSO login and the last platform activity (or creation). */
  inactiveDays: number;
  enterprisePermissions: string[];
  teams: Record<string, TeamRole>;
  /** The role the seat is billed at: the highest team role, viewer for Enterprise-only members. */
  seatRole: TeamRole;
  monthlyCost: number | null;
  /**
   * A viewer or member seat with no sign-in and no activity in the window: its cost counts towards the
   * saving. Admin seats are listed but not flagged (a team must keep its admins).
   */
  flagged: boolean;
  suggestedAction: string;
}

export interface InactiveSeatsView {
  days: number;
  prices: Partial<Record<TeamRole, number>>;
  seats: InactiveSeat[];
  totalMonthlyCost: number | null;
  /** What removing or downgrading the flagged seats saves a month (null while a price is missing). */
  monthlySaving: number | null;
}

/**
 * Live users holding a seat on the platform (as idsync last saw it) with neither an SSO login nor any
 * platform activity in `days` days (counting from creation when there is neither). Filtered, joined and
 * aggregated in SQL; platform accounts are matched through `account_key()`, the normal form
 * `users.user_name_key` holds.
 */
export async function inactiveSeats(
  db: Database,
  tenantId: string,
  days?: number,
): Promise<InactiveSeatsView> {
  const [tenant] = await db.execute<{
    inactivity_days: number;
    seat_prices: Partial<Record<TeamRole, number>>;
  }>(sql`
    SELECT inactivity_days, seat_prices FROM tenants WHERE id = ${tenantId}`);
  const threshold = days ?? tenant?.inactivity_days ?? 30;
  const prices = tenant?.seat_prices ?? {};
  const rows = await db.execute<{
    id: string;
    user_name: string;
    last_login: string | null;
    activity_kind: string | null;
    activity_app: string | null;
    activity_at: string | null;
    inactive_days: number;
    enterprise: string | null;
    teams: Record<string, TeamRole>;
  }>(sql`
    SELECT u.id::text, u.user_name, to_json(u.last_sso_login_at)#>>'{}' AS last_login,
      a.kind AS activity_kind, a.app AS activity_app, to_json(a.at)#>>'{}' AS activity_at,
      floor(extract(epoch FROM now() - greatest(u.last_sso_login_at, a.at, CASE WHEN u.last_sso_login_at IS NULL AND a.at IS NULL THEN u.created_at END)) / 86400)::int AS inactive_days,
      (SELECT e.permissions::text FROM platform_enterprise_members e WHERE e.tenant_id = u.tenant_id AND account_key(e.account) = u.user_name_key) AS enterprise,
      coalesce((SELECT json_object_agg(t.name, m.role) FROM platform_team_members m JOIN teams t ON t.id = m.team_id
        WHERE m.tenant_id = u.tenant_id AND account_key(m.account) = u.user_name_key), '{}') AS teams
    FROM users u
    LEFT JOIN platform_activity a ON a.tenant_id = u.tenant_id AND a.account_key = u.user_name_key
    WHERE u.tenant_id = ${tenantId} AND u.active AND u.deprovisioned_at IS NULL
      AND coalesce(greatest(u.last_sso_login_at, a.at), u.created_at) < now() - make_interval(days => ${threshold})
      AND (EXISTS (SELECT 1 FROM platform_enterprise_members e WHERE e.tenant_id = u.tenant_id AND account_key(e.account) = u.user_name_key)
        OR EXISTS (SELECT 1 FROM platform_team_members m WHERE m.tenant_id = u.tenant_id AND account_key(m.account) = u.user_name_key))
    ORDER BY greatest(u.last_sso_login_at, a.at) NULLS FIRST, u.user_name_key`);
  const seats = rows.map((r): InactiveSeat => {
    const roles = Object.values(r.teams);
    const seatRole = [...TEAM_ROLES].find((role) => roles.includes(role)) ?? 'viewer';
    const cost = prices[seatRole];
    const never = r.last_login === null && r.activity_at === null;
    return {
      userId: r.id,
      userName: r.user_name,
      lastSsoLoginAt: r.last_login ? new Date(r.last_login).toISOString() : null,
      lastActivity: r.activity_at
        ? { kind: r.activity_kind!, app: r.activity_app, at: new Date(r.activity_at).toISOString() }
        : null,
      inactiveDays: r.inactive_days,
      enterprisePermissions: r.enterprise
        ? r.enterprise
            .replace(/^\{|\}$/g, '')
            .split(',')
            .filter(Boolean)
        : [],
      teams: r.teams,
      seatRole,
      monthlyCost: cost ?? null,
      flagged: seatRole !== 'admin',
      suggestedAction: suggest(seatRole, never, r.inactive_days, threshold, cost),
    };
  });
  const sum = (list: InactiveSeat[]) => {
    const costs = list.map((s) => s.monthlyCost);
    return costs.every((c) => c !== null) ? costs.reduce<number>((a, c) => a + c!, 0) : null;
  };
  return {
    days: threshold,
    prices,
    seats,
    totalMonthlyCost: seats.length ? sum(seats) : null,
    monthlySaving: sum(seats.filter((s) => s.flagged)),
  };
}

function suggest(
  role: TeamRole,
  never: boolean,
  inactiveDays: number,
  threshold: number,
  cost: number | undefined,
) {
  const saves = cost ? ` (saves ${cost}/month)` : '';
  if (never) return `remove: never signed in through SSO and no platform activity${saves}`;
  if (inactiveDays >= 2 * threshold) return `remove: no sign-in or activity for ${inactiveDays} days${saves}`;
  if (role === 'viewer')
    return `remove if no longer needed: a viewer seat costs the same as a member seat${saves}`;
  return `downgrade to viewer (least privilege), or remove if no longer needed${saves}`;
}
