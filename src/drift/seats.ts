import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { TEAM_ROLES, type TeamRole } from '../reconcile/model.js';

export interface InactiveSeat {
  userId: string;
  userName: string;
  lastSsoLoginAt: string | null;
  inactiveDays: number;
  enterprisePermissions: string[];
  teams: Record<string, TeamRole>;
  /** The role the seat is billed at: the highest team role, viewer for Enterprise-only members. */
  seatRole: TeamRole;
  monthlyCost: number | null;
  suggestedAction: string;
}

export interface InactiveSeatsView {
  days: number;
  prices: Partial<Record<TeamRole, number>>;
  seats: InactiveSeat[];
  totalMonthlyCost: number | null;
}

/**
 * Live users holding a seat on the platform (as idsync last saw it) without an SSO login in `days`
 * days (or since they were created, if never). Filtered and aggregated in SQL.
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
    inactive_days: number;
    enterprise: string | null;
    teams: Record<string, TeamRole>;
  }>(sql`
    SELECT u.id::text, u.user_name, to_json(u.last_sso_login_at)#>>'{}' AS last_login,
      floor(extract(epoch FROM now() - coalesce(u.last_sso_login_at, u.created_at)) / 86400)::int AS inactive_days,
      (SELECT e.permissions::text FROM platform_enterprise_members e WHERE e.tenant_id = u.tenant_id AND e.account = lower(u.user_name)) AS enterprise,
      coalesce((SELECT json_object_agg(t.name, m.role) FROM platform_team_members m JOIN teams t ON t.id = m.team_id
        WHERE m.tenant_id = u.tenant_id AND m.account = lower(u.user_name)), '{}') AS teams
    FROM users u
    WHERE u.tenant_id = ${tenantId} AND u.active AND u.deprovisioned_at IS NULL
      AND coalesce(u.last_sso_login_at, u.created_at) < now() - make_interval(days => ${threshold})
      AND (EXISTS (SELECT 1 FROM platform_enterprise_members e WHERE e.tenant_id = u.tenant_id AND e.account = lower(u.user_name))
        OR EXISTS (SELECT 1 FROM platform_team_members m WHERE m.tenant_id = u.tenant_id AND m.account = lower(u.user_name)))
    ORDER BY u.last_sso_login_at NULLS FIRST, lower(u.user_name)`);
  const seats = rows.map((r): InactiveSeat => {
    const roles = Object.values(r.teams);
    const seatRole = [...TEAM_ROLES].find((role) => roles.includes(role)) ?? 'viewer';
    const cost = prices[seatRole];
    return {
      userId: r.id,
      userName: r.user_name,
      lastSsoLoginAt: r.last_login ? new Date(r.last_login).toISOString() : null,
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
      suggestedAction: suggest(seatRole, r.last_login === null, r.inactive_days, threshold, cost),
    };
  });
  const costs = seats.map((s) => s.monthlyCost);
  return {
    days: threshold,
    prices,
    seats,
    totalMonthlyCost:
      costs.length && costs.every((c) => c !== null) ? costs.reduce((a, c) => a! + c!, 0) : null,
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
  if (never) return `remove: never signed in through SSO${saves}`;
  if (inactiveDays >= 2 * threshold) return `remove: no sign-in for ${inactiveDays} days${saves}`;
  if (role === 'viewer')
    return `remove if no longer needed: a viewer seat costs the same as a member seat${saves}`;
  return `downgrade to viewer (least privilege), or remove if no longer needed${saves}`;
}
