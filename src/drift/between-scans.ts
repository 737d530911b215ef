import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { AuditFinding } from './audit-trail.js';

export interface FindingBetweenScans extends AuditFinding {
  foundAt: string;
  /** The audit log row: where the next page (`before`) starts. */
  auditId: string;
}

/**
 * What the audit-trail poll found since the latest scan started: the scan's report does not hold these
 * yet, and the security team must not wait an hour to see a grant made by hand. Read from the audit
 * log (the poll writes one `drift.found` row per finding) newest first, through (tenant_id, at); a page
 * continues strictly after the row `before` (keyset on (at, id): rows written meanwhile do not shift it).
 */
export async function findingsBetweenScans(
  db: Database,
  tenantId: string,
  since: string | undefined,
  limit: number,
  before?: string,
): Promise<FindingBetweenScans[]> {
  const rows = await db.execute<{ id: string; at: Date | string; after: AuditFinding }>(sql`
    SELECT id::text, at, after FROM audit_log
    WHERE tenant_id = ${tenantId} AND action = 'drift.found'
      AND at > ${since ?? '-infinity'}::timestamptz
      ${
        before === undefined
          ? sql``
          : sql`AND (at, id) < (SELECT at, id FROM audit_log WHERE id = ${before}::bigint AND tenant_id = ${tenantId})`
      }
    ORDER BY at DESC, id DESC LIMIT ${limit}`);
  return rows.map((row) => ({ ...row.after, foundAt: new Date(row.at).toISOString(), auditId: row.id }));
}

export interface FindingsSinceLastScan {
  /** When the latest scan started (its report holds what was there then); null before the first scan. */
  since: string | null;
  findings: FindingBetweenScans[];
  /** Give as `before` for the next (older) page; null on the last page. */
  next: string | null;
}

/**
 * One page of the findings the latest scan's report does not hold yet, for the admin API and the CLI
 * (the console reads the same rows with the report it already has).
 */
export async function findingsSinceLastScan(
  db: Database,
  tenantId: string,
  page: { limit: number; before?: string | undefined },
): Promise<FindingsSinceLastScan> {
  const [latest] = await db.execute<{ started_at: string }>(sql`
    SELECT to_json(started_at)#>>'{}' AS started_at FROM drift_reports
    WHERE tenant_id = ${tenantId} ORDER BY seq DESC LIMIT 1`);
  const since = latest ? new Date(latest.started_at).toISOString() : null;
  // One row more than the page says whether another page follows, without a count over the range.
  const rows = await findingsBetweenScans(db, tenantId, since ?? undefined, page.limit + 1, page.before);
  const findings = rows.slice(0, page.limit);
  return {
    since,
    findings,
    next: rows.length > page.limit ? findings[findings.length - 1]!.auditId : null,
  };
}
