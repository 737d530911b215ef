import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Alert } from '../alerts/notify.js';
import type { DatabaseHandle } from '../db/client.js';
import { conflict } from '../errors.js';
import { recordForReconcile } from '../jobs/outbox.js';
import type { HumanStep, PlatformConnector, PlatformSlice } from '../platform/connector.js';
import { recordListedTeams } from '../reconcile/listed-teams.js';
import { loadPolicy } from '../reconcile/state.js';
import { accountKeys, keyedSlice } from './account-keys.js';
import { DriftComparer, type Finding, type FindingClass } from './compare.js';
import { buildDesiredIndex } from './desired-index.js';
import {
  emptyCounts,
  previousFindings,
  type ReportSummary,
  reportHash,
  type StoredFinding,
  storeReport,
} from './reports.js';

/** Classes a tenant may set to `fix` (enqueue reconciles); the others need a human. */
export const FIXABLE_CLASSES = ['excess-access', 'missing-access', 'wrong-role'] as const;
export type DriftPolicy = Partial<Record<(typeof FIXABLE_CLASSES)[number], 'report' | 'fix'>>;

/**
 * Defaults: access the IdP does not justify is reported, not removed, because it may have been granted
 * on the platform on purpose; access the rules grant but the platform lacks is fixed.
 */
export const DEFAULT_DRIFT_POLICY: Required<DriftPolicy> = {
  'excess-access': 'report',
  'missing-access': 'fix',
  'wrong-role': 'report',
};

export interface FailedJob {
  id: string;
  lane: string;
  subject: string;
  userId: string | null;
  reason: string;
  failedAt: string;
}

export interface DriftScanDependencies {
  database: DatabaseHandle;
  connector: PlatformConnector;
  /** The tenant's jobs that failed every attempt (BullMQ), when the caller can see the queues. */
  failedJobs?: () => Promise<FailedJob[]>;
  /**
   * Told as each step ends: the IdP's desired state read, each platform slice (the Enterprise Account,
   * one team, one app) read and compared, the report stored. For progress display only.
   */
  onStep?: (step: DriftScanStep) => void;
}

export type DriftScanStep = 'desired' | PlatformSlice['kind'] | 'stored';

export interface DriftScanResult {
  reportId: string;
  seq: number;
  summary: ReportSummary;
}

/**
 * One drift scan: what the IdP wants (every user through the rules), against the platform read through
 * its connector slice by slice (each team once), plus operations idsync could not finish; stored as a
 * hash-chained report. A PostgreSQL advisory lock keeps scans of one tenant from overlapping.
 */
export async function runDriftScan(
  deps: DriftScanDependencies,
  tenantId: string,
  trigger: string,
): Promise<DriftScanResult> {
  const lock = await deps.database.sql.reserve();
  try {
    const [{ locked }] =
      (await lock`SELECT pg_try_advisory_lock(hashtextextended(${`drift:${tenantId}`}, 0)) AS locked`) as unknown as [
        { locked: boolean },
      ];
    if (!locked) throw conflict('a drift scan of this tenant is already running', 'scan_running');
    try {
      return await scan(deps, tenantId, trigger);
    } finally {
      await lock`SELECT pg_advisory_unlock(hashtextextended(${`drift:${tenantId}`}, 0))`;
    }
  } finally {
    lock.release();
  }
}

async function scan(
  deps: DriftScanDependencies,
  tenantId: string,
  trigger: string,
): Promise<DriftScanResult> {
  const { db } = deps.database;
  const started = new Date();
  const clock = performance.now();
  const [policy, desired, tenantPolicy] = await Promise.all([
    loadPolicy(db, tenantId),
    buildDesiredIndex(db, tenantId),
    loadDriftPolicy(deps.database, tenantId),
  ]);
  const desiredMs = Math.round(performance.now() - clock);
  deps.onStep?.('desired');
  // Both sides in account_key() form: the desired index is keyed by users.user_name_key.
  const fallbackAdmin = policy.fallbackAdmin
    ? (await accountKeys(db, [policy.fallbackAdmin])).get(policy.fallbackAdmin)
    : undefined;
  const comparer = new DriftComparer(desired, fallbackAdmin);
  const findings: Finding[] = [];
  const platform = { enterpriseMembers: 0, teams: 0, apps: 0, memberships: 0 };
  const teamNames: string[] = [];
  for await (const slice of deps.connector.scan()) {
    findings.push(...comparer.compare(await keyedSlice(db, slice)));
    deps.onStep?.(slice.kind);
    if (slice.kind === 'enterprise') platform.enterpriseMembers = slice.members.length;
    else if (slice.kind === 'unreadable' && 'team' in slice.edge) teamNames.push(slice.edge.team);
    else if (slice.kind === 'team') {
      teamNames.push(slice.team);
      platform.teams += 1;
      platform.memberships += slice.members.length;
    } else if (slice.kind === 'app') {
      platform.apps += 1;
      platform.memberships += slice.collaborators.length;
    }
  }
  findings.push(...comparer.finish());
  // The scan read every team: teams it found for the first time reach the "every team" rules.
  await recordListedTeams(db, tenantId, teamNames, { complete: true, cause: { trigger } });
  const platformMs = Math.round(performance.now() - clock) - desiredMs;
  findings.push(...(await blockedOperations(deps.database, tenantId)));
  if (deps.failedJobs) findings.push(...failedJobFindings(await deps.failedJobs()));

  const { previous, since } = await previousFindings(db, tenantId);
  const now = new Date().toISOString();
  const stored: StoredFinding[] = findings.map((f) => ({
    ...f,
    since: since.get(f.key) ?? now,
    status: since.has(f.key) ? 'open' : 'new',
  }));
  const counts = emptyCounts();
  for (const f of stored) {
    counts.byClass[f.class] = (counts.byClass[f.class] ?? 0) + 1;
    counts.bySeverity[f.severity] = (counts.bySeverity[f.severity] ?? 0) + 1;
  }
  const stillOpen = stored.filter((f) => f.status === 'open').length;
  const fixes = fixesFor(stored, tenantPolicy);
  const finished = new Date();
  const summary: ReportSummary = {
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    connector: deps.connector.name,
    trigger,
    total: stored.length,
    ...counts,
    difference: {
      previousReportId: previous?.id ?? null,
      new: stored.length - stillOpen,
      resolved: since.size - stillOpen,
      stillOpen,
    },
    platform,
    phasesMs: { desired: desiredMs, platform: platformMs, rest: 0 },
    fixesQueued: fixes.length,
  };
  summary.phasesMs.rest = summary.durationMs - desiredMs - platformMs;
  const id = randomUUID();
  const seq = (previous?.seq ?? 0) + 1;
  const previousHash = previous?.hash ?? null;
  // New critical findings (an offboarded user with access) are an alert; still-open ones were already.
  const critical = stored.filter((f) => f.severity === 'critical' && f.status === 'new');
  const alerts: Alert[] =
    critical.length === 0
      ? []
      : [
          {
            tenantId,
            type: 'drift.critical',
            key: `drift.critical:${id}`,
            summary: `drift report #${seq} found ${critical.length} new critical finding(s): offboarded users who still have access`,
            data: {
              reportId: id,
              reportSeq: seq,
              critical: critical.length,
              findings: critical.slice(0, 20).map((f) => ({
                class: f.class,
                userId: f.userId,
                account: f.account,
                team: f.team,
                app: f.app,
                action: f.action,
              })),
              more: Math.max(0, critical.length - 20),
            },
          },
        ];
  await storeReport(
    db,
    tenantId,
    { id, seq, summary, previousHash, hash: reportHash(previousHash, summary, stored) },
    stored,
    alerts,
  );
  deps.onStep?.('stored');
  if (fixes.length > 0) {
    // Through the outbox like every other change: durable, deduplicated per user, in the right lane.
    await recordForReconcile(
      db,
      fixes.map((f) => ({
        tenantId,
        lane: f.lane,
        subjectType: 'user',
        subjectId: f.user_id,
        cause: { event: 'drift.fix', reportId: id },
      })),
    );
  }
  return { reportId: id, seq, summary };
}

/** One job per user, in the deprovision lane when the user was offboarded. */
function fixesFor(
  findings: StoredFinding[],
  policy: Required<DriftPolicy>,
): { user_id: string; lane: 'deprovision' | 'reconcile' }[] {
  const lanes = new Map<string, 'deprovision' | 'reconcile'>();
  for (const f of findings) {
    if (!f.userId || f.severity === 'info') continue;
    if (policy[f.class as keyof DriftPolicy] !== 'fix') continue;
    const lane = f.severity === 'critical' ? ('deprovision' as const) : ('reconcile' as const);
    if (lanes.get(f.userId) !== 'deprovision') lanes.set(f.userId, lane);
  }
  return [...lanes].map(([user_id, lane]) => ({ user_id, lane }));
}

export async function loadDriftPolicy(
  database: DatabaseHandle,
  tenantId: string,
): Promise<Required<DriftPolicy>> {
  const [row] = await database.db.execute<{ drift_policy: DriftPolicy }>(sql`
    SELECT drift_policy FROM tenants WHERE id = ${tenantId}`);
  return { ...DEFAULT_DRIFT_POLICY, ...(row?.drift_policy ?? {}) };
}

/** Offboardings stopped short (a team's last admin) and changes held by the mass-change brake. */
async function blockedOperations(database: DatabaseHandle, tenantId: string): Promise<Finding[]> {
  const rows = await database.db.execute<{
    kind: 'receipt' | 'held';
    ref: string;
    account: string;
    user_id: string | null;
    detail: HumanStep[] | null;
    affected: number | null;
  }>(sql`
    SELECT 'receipt' AS kind, r.id::text AS ref, r.account, r.user_id::text, r.left_to_human AS detail, NULL::int AS affected
      FROM receipts r WHERE r.tenant_id = ${tenantId} AND r.completed_at IS NULL
    UNION ALL
    SELECT 'held', h.id, '(' || h.affected_users || ' users)', NULL, NULL, h.affected_users
      FROM held_changes h WHERE h.tenant_id = ${tenantId} AND h.status = 'pending'`);
  const findings: Finding[] = [];
  for (const row of rows) {
    if (row.kind === 'held') {
      findings.push(
        blocked(
          `held|${row.ref}`,
          row.account,
          null,
          null,
          `${row.affected} users' removals held by the mass-change brake (change ${row.ref})`,
          `review with \`idsync changes\`, then \`idsync approve ${row.ref}\``,
        ),
      );
      continue;
    }
    for (const step of row.detail ?? []) {
      if (step.residual) continue;
      const team = /^team (.+)$/.exec(step.edge)?.[1] ?? null;
      findings.push(
        blocked(`receipt|${row.account}|${step.edge}`, row.account, row.user_id, team, step.why, step.action),
      );
    }
  }
  return findings;
}

function blocked(
  key: string,
  account: string,
  userId: string | null,
  team: string | null,
  why: string,
  action: string,
): Finding {
  return {
    key: `blocked|${key}`,
    class: 'blocked',
    severity: 'medium',
    account,
    userId,
    team,
    app: null,
    expected: null,
    actual: why,
    action,
  };
}

function failedJobFindings(jobs: FailedJob[]): Finding[] {
  return jobs.map((job) => ({
    key: `failed-job|${job.lane}|${job.id}`,
    class: 'failed-job' as FindingClass,
    severity: job.lane === 'deprovision' ? 'high' : 'medium',
    account: job.subject,
    userId: job.userId,
    team: null,
    app: null,
    expected: null,
    actual: job.reason.slice(0, 500),
    action: `fix the cause, then \`idsync jobs retry ${job.id}\``,
  }));
}
