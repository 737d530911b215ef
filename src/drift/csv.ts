import { stringify } from 'csv-stringify/sync';
import type { OffboardingView } from './offboarding.js';
import type { StoredFinding } from './reports.js';
import type { InactiveSeatsView } from './seats.js';

/*
 * CSV exports for auditors (RFC 4180 via csv-stringify). A cell that starts with = + - @ is prefixed
 * with a quote so a spreadsheet shows it instead of evaluating it (CSV formula injection).
 */
const safe = (value: unknown) => {
  const text = value === null || value === undefined ? '' : String(value);
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
};

const csv = (header: string[], rows: unknown[][]) =>
  stringify([header, ...rows.map((row) => row.map(safe))], { record_delimiter: '\r\n' });

export function findingsCsv(reportId: string, findings: StoredFinding[]): string {
  return csv(
    [
      'report',
      'class',
      'severity',
      'status',
      'account',
      'user_id',
      'team',
      'app',
      'expected',
      'actual',
      'since',
      'suggested_action',
    ],
    findings.map((f) => [
      reportId,
      f.class,
      f.severity,
      f.status,
      f.account,
      f.userId,
      f.team,
      f.app,
      f.expected,
      f.actual,
      f.since,
      f.action,
    ]),
  );
}

export function offboardingCsv(view: OffboardingView): string {
  return csv(
    [
      'user_id',
      'user_name',
      'idp_event',
      'idp_event_at',
      'last_edge_removed_at',
      'time_to_effect_ms',
      'edges_removed',
      'tokens_revoked',
      'left_to_human',
      'status',
    ],
    view.offboardings.map((o) => [
      o.userId,
      o.userName,
      o.idpEvent,
      o.idpEventAt,
      o.lastEdgeRemovedAt,
      o.timeToEffectMs,
      o.edgesRemoved,
      o.tokensRevoked,
      o.leftToHuman,
      o.status,
    ]),
  );
}

export function seatsCsv(view: InactiveSeatsView): string {
  return csv(
    [
      'user_id',
      'user_name',
      'last_sso_login_at',
      'last_activity_at',
      'last_activity_kind',
      'last_activity_app',
      'inactive_days',
      'seat_role',
      'teams',
      'enterprise_permissions',
      'monthly_cost',
      'flagged',
      'suggested_action',
    ],
    view.seats.map((s) => [
      s.userId,
      s.userName,
      s.lastSsoLoginAt,
      s.lastActivity?.at ?? null,
      s.lastActivity?.kind ?? null,
      s.lastActivity?.app ?? null,
      s.inactiveDays,
      s.seatRole,
      Object.entries(s.teams)
        .map(([team, role]) => `${team}:${role}`)
        .join(' '),
      s.enterprisePermissions.join(' '),
      s.monthlyCost,
      s.flagged ? 'yes' : 'no',
      s.suggestedAction,
    ]),
  );
}
