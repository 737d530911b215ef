import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { AuditFinding } from './audit-trail.js';

export interface FindingBetweenScans extends AuditFinding {
  foundAt: string;
}

/**
 * What the audit-trail poll found since the latest scan started: the scan's report does not hold these
 * yet, and the security team must not wait an hour to see a grant made by hand. Read from the audit
 * log (the poll writes one `drift.found` row per finding) newest first, through (tenant_id, at).
 */
export async function findingsBetweenScans(
  db: Database,
  tenantId: string,
  since: string | undefined,
  limit: number,
): Promise<FindingBetweenScans[]> {
  const rows = await db.execute<{ at: Date | string; after: AuditFinding }>(sql`
    SELECT at, after FROM audit_log
    WHERE tenant_id = ${tenantId} AND action = 'drift.found'
      AND at > ${since ?? '-infinity'}::timestamptz
    ORDER BY at DESC LIMIT ${limit}`);
  return rows.map((row) => ({ ...row.after, foundAt: new Date(row.at).toISOString() }));
}
