import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { sql } from 'drizzle-orm';
import { type Alert, notify } from '../alerts/notify.js';
import type { Database } from '../db/client.js';
import { notFound } from '../errors.js';
import { FINDING_CLASSES, type Finding, SEVERITIES } from './compare.js';

export interface StoredFinding extends Finding {
  since: string;
  status: 'new' | 'open';
}

export interface ReportSummary {
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  connector: string;
  trigger: string;
  total: number;
  byClass: Record<string, number>;
  bySeverity: Record<string, number>;
  /** Against the previous report: findings that appeared, that went away, and that are still there. */
  difference: { previousReportId: string | null; new: number; resolved: number; stillOpen: number };
  platform: { enterpriseMembers: number; teams: number; apps: number; memberships: number };
  /**
   * Where the scan's time went: the IdP's side, reading and comparing the platform, and the rest
   * (blocked operations, failed jobs, the previous report). Storing the report comes after.
   */
  phasesMs: { desired: number; platform: number; rest: number };
  fixesQueued: number;
}

export interface ReportHeader {
  id: string;
  seq: number;
  createdAt: string;
  connector: string;
  summary: ReportSummary;
  previousHash: string | null;
  hash: string;
}

/** The hash of a report: its predecessor's hash, its summary and every finding, canonically serialised. */
export function reportHash(
  previousHash: string | null,
  summary: ReportSummary,
  findings: StoredFinding[],
): string {
  const hash = createHash('sha256');
  hash.update(`${previousHash ?? ''}\n${canonicalize(summary)}\n`);
  for (const finding of [...findings].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
    hash.update(`${canonicalize(finding)}\n`);
  }
  return hash.digest('hex');
}

export function emptyCounts(): { byClass: Record<string, number>; bySeverity: Record<string, number> } {
  return {
    byClass: Object.fromEntries(FINDING_CLASSES.map((c) => [c, 0])),
    bySeverity: Object.fromEntries(SEVERITIES.map((s) => [s, 0])),
  };
}

/** The previous report's findings by key, to carry `since` forward and tell new from still open. */
export async function previousFindings(db: Database, tenantId: string) {
  const [previous] = await db.execute<{ id: string; seq: number; hash: string }>(sql`
    SELECT id::text, seq, hash FROM drift_reports WHERE tenant_id = ${tenantId} ORDER BY seq DESC LIMIT 1`);
  const since = new Map<string, string>();
  if (previous) {
    const rows = await db.execute<{ key: string; since: string }>(sql`
      SELECT key, to_json(since)#>>'{}' AS since FROM drift_findings WHERE report_id = ${previous.id}`);
    for (const row of rows) since.set(row.key, new Date(row.since).toISOString());
  }
  return { previous, since };
}

/** Writes a report and its findings in one transaction; the seq constraint refuses a forked chain. */
export async function storeReport(
  db: Database,
  tenantId: string,
  report: { id: string; seq: number; summary: ReportSummary; previousHash: string | null; hash: string },
  findings: StoredFinding[],
  /**
   * Alerts the report raises (drift.critical), written in the report's own transaction: the report and
   * its alert commit together or not at all, so a crash between them cannot lose the alert for good.
   */
  alerts: Alert[] = [],
): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(sql`
      INSERT INTO drift_reports (id, tenant_id, seq, started_at, connector, summary, previous_hash, hash)
      VALUES (${report.id}, ${tenantId}, ${report.seq}, ${report.summary.startedAt}::timestamptz, ${report.summary.connector},
        ${JSON.stringify(report.summary)}::jsonb, ${report.previousHash}, ${report.hash})`);
    for (let i = 0; i < findings.length; i += 5_000) {
      await tx.execute(sql`
        INSERT INTO drift_findings (report_id, key, class, severity, account, user_id, team, app, expected, actual, since, action, status)
        SELECT ${report.id}, f.key, f.class, f.severity, f.account, f."userId", f.team, f.app, f.expected, f.actual, f.since, f.action, f.status
        FROM jsonb_to_recordset(${JSON.stringify(findings.slice(i, i + 5_000))}::jsonb) AS f(
          key text, class text, severity text, account text, "userId" uuid, team text, app text,
          expected text, actual text, since timestamptz, action text, status text)`);
    }
    for (const alert of alerts) await notify(tx, alert);
  });
}

export interface FindingFilter {
  class?: string;
  severity?: string;
  team?: string;
  app?: string;
  /** Part of the account, case-insensitive. */
  user?: string;
  /** Only findings whose key this other report does not have. */
  absentFrom?: string;
}

export async function reportHeader(db: Database, tenantId: string, reportId?: string): Promise<ReportHeader> {
  const [row] = await db.execute<{
    id: string;
    seq: number;
    created_at: string;
    connector: string;
    summary: ReportSummary;
    previous_hash: string | null;
    hash: string;
  }>(sql`
    SELECT id::text, seq, to_json(created_at)#>>'{}' AS created_at, connector, summary, previous_hash, hash
    FROM drift_reports WHERE tenant_id = ${tenantId}
      ${reportId ? sql`AND id::text = ${reportId}` : sql``}
    ORDER BY seq DESC LIMIT 1`);
  if (!row)
    throw notFound(reportId ? `no drift report ${reportId}` : 'no drift report yet: run `idsync drift scan`');
  return {
    id: row.id,
    seq: row.seq,
    createdAt: new Date(row.created_at).toISOString(),
    connector: row.connector,
    summary: row.summary,
    previousHash: row.previous_hash,
    hash: row.hash,
  };
}

/** Findings of a report, filtered in SQL, most severe first. */
export async function reportFindings(
  db: Database,
  reportId: string,
  filter: FindingFilter = {},
  limit = 100_000,
): Promise<StoredFinding[]> {
  const rows = await db.execute<{
    key: string;
    class: Finding['class'];
    severity: Finding['severity'];
    account: string;
    user_id: string | null;
    team: string | null;
    app: string | null;
    expected: string | null;
    actual: string | null;
    since: string;
    action: string;
    status: 'new' | 'open';
  }>(sql`
    SELECT key, class, severity, account, user_id::text, team, app, expected, actual,
      to_json(since)#>>'{}' AS since, action, status
    FROM drift_findings WHERE report_id = ${reportId}
      ${filter.class ? sql`AND class = ${filter.class}` : sql``}
      ${filter.severity ? sql`AND severity = ${filter.severity}` : sql``}
      ${filter.team ? sql`AND team = ${filter.team}` : sql``}
      ${filter.app ? sql`AND app = ${filter.app}` : sql``}
      ${filter.absentFrom ? sql`AND NOT EXISTS (SELECT 1 FROM drift_findings o WHERE o.report_id = ${filter.absentFrom} AND o.key = drift_findings.key)` : sql``}
      ${filter.user ? sql`AND account ILIKE ${`%${filter.user.replace(/[\\%_]/g, '\\$&')}%`}` : sql``}
    ORDER BY array_position(ARRAY['critical','high','medium','low','info'], severity), class, account, key
    LIMIT ${limit}`);
  return rows.map((r) => ({
    key: r.key,
    class: r.class,
    severity: r.severity,
    account: r.account,
    userId: r.user_id,
    team: r.team,
    app: r.app,
    expected: r.expected,
    actual: r.actual,
    since: new Date(r.since).toISOString(),
    action: r.action,
    status: r.status,
  }));
}

/** Findings of the previous report that this one no longer has (compared in SQL). */
export async function resolvedSince(
  db: Database,
  report: ReportHeader,
  limit = 100_000,
): Promise<StoredFinding[]> {
  const previous = report.summary.difference.previousReportId;
  return previous ? reportFindings(db, previous, { absentFrom: report.id }, limit) : [];
}

export interface ChainCheck {
  reports: number;
  valid: boolean;
  /** The first report whose stored hash does not match its content or its predecessor. */
  brokenAt?: { seq: number; id: string; problem: string };
}

/** Recomputes every report's hash from its content and checks each links to its predecessor. */
export async function verifyChain(db: Database, tenantId: string): Promise<ChainCheck> {
  const headers = await chainHeaders(db, tenantId);
  let previousHash: string | null = null;
  for (const header of headers) {
    const problem = await checkReport(db, header, previousHash);
    if (problem)
      return { reports: headers.length, valid: false, brokenAt: { seq: header.seq, id: header.id, problem } };
    previousHash = header.hash;
  }
  return { reports: headers.length, valid: true };
}

/**
 * Checks the latest report only (its content and its link to the one before): cheap enough for a
 * page view; `verifyChain` checks them all.
 */
export async function verifyLatest(db: Database, tenantId: string): Promise<ChainCheck> {
  const [latest, previous] = await chainHeaders(db, tenantId, 2);
  if (!latest) return { reports: 0, valid: true };
  const problem = await checkReport(db, latest, previous?.hash ?? null);
  return problem
    ? { reports: 1, valid: false, brokenAt: { seq: latest.seq, id: latest.id, problem } }
    : { reports: 1, valid: true };
}

type ChainHeader = {
  id: string;
  seq: number;
  summary: ReportSummary;
  previous_hash: string | null;
  hash: string;
};

/** Reports in chain order; with `last`, only the last ones (newest first). */
async function chainHeaders(db: Database, tenantId: string, last?: number): Promise<ChainHeader[]> {
  return db.execute<ChainHeader>(sql`
    SELECT id::text, seq, summary, previous_hash, hash FROM drift_reports WHERE tenant_id = ${tenantId}
    ${last ? sql`ORDER BY seq DESC LIMIT ${last}` : sql`ORDER BY seq`}`);
}

async function checkReport(
  db: Database,
  header: ChainHeader,
  previousHash: string | null,
): Promise<string | undefined> {
  if (header.previous_hash !== previousHash) return 'does not link to the report before it';
  const findings = await reportFindings(db, header.id);
  if (reportHash(previousHash, header.summary, findings) !== header.hash)
    return 'content does not match its hash';
  return undefined;
}
