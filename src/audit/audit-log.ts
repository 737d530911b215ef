import type { Database } from '../db/client.js';
import { auditLog } from '../db/schema.js';

/** A drizzle transaction, the pool, or a reserved session: the row joins whatever it is given. */
export type AuditExecutor = Pick<Database, 'insert'>;

/** One audit row, typed from the schema: who did what to which subject, before and after, and why. */
export type AuditEntry = typeof auditLog.$inferInsert;

/**
 * The one way to write the append-only audit log (a trigger refuses updates and deletes). Several rows
 * go in one statement, inside the caller's transaction when it passes one.
 */
export async function recordAudit(
  executor: AuditExecutor,
  entries: AuditEntry | AuditEntry[],
): Promise<void> {
  const rows = Array.isArray(entries) ? entries : [entries];
  if (rows.length === 0) return;
  await executor.insert(auditLog).values(rows);
}
