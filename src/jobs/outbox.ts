import { type SQL, sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { outbox } from '../db/schema.js';
import type { SubjectType } from './queues.js';

/** A drizzle transaction, the pool, or a reserved session: the outbox row joins whatever it is given. */
export type Executor = Pick<Database, 'insert' | 'execute'>;

/** One outbox row as a writer gives it, typed from the schema (ids and times are the database's). */
export type OutboxEntry = Required<
  Pick<typeof outbox.$inferInsert, 'tenantId' | 'lane' | 'subjectType' | 'subjectId' | 'cause'>
>;

/**
 * Records, inside the caller's transaction, that a subject needs reconciling. Written with the change
 * itself, so the reconciler hears of every committed change even if Redis is down at that moment. The
 * one way to write the outbox, with `recordForReconcileEach` for fan-outs computed in SQL.
 */
export async function recordForReconcile(executor: Executor, entries: OutboxEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await executor.insert(outbox).values(entries);
}

/**
 * One row per subject the query `subjects` yields (columns: tenant id, subject id), all with the same
 * lane and cause: a group's members, a rule's users, the sweeper's finds. The ids never leave the
 * database.
 */
export async function recordForReconcileEach(
  executor: Executor,
  template: Omit<OutboxEntry, 'subjectId' | 'tenantId'>,
  subjects: SQL,
): Promise<number> {
  const result = await executor.execute(sql`
    INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
    SELECT s.tenant_id, ${template.lane}::job_lane, ${template.subjectType}::subject_type,
      s.subject_id::text, ${JSON.stringify(template.cause)}::jsonb
    FROM (${subjects}) AS s(tenant_id, subject_id)`);
  return result.count;
}

/**
 * The newest outbox row announcing a subject, read by a job before it reads the subject's state: every
 * change announced up to that row is visible to the job, so finishing the job completes those rows.
 */
export async function lastAnnouncement(
  executor: Executor,
  tenantId: string,
  subjectType: SubjectType,
  subjectId: string,
): Promise<number | null> {
  const [row] = await executor.execute<{ id: string | null }>(sql`
    SELECT max(id)::text AS id FROM outbox
    WHERE tenant_id = ${tenantId} AND subject_type = ${subjectType} AND subject_id = ${subjectId}
      AND completed_at IS NULL`);
  return row?.id ? Number(row.id) : null;
}

/** Marks done what a finished job covered; the sweeper re-sends rows relayed but never completed. */
export async function completeAnnouncements(
  executor: Executor,
  tenantId: string,
  subjectType: SubjectType,
  subjectId: string,
  upToId: number | null,
): Promise<void> {
  if (upToId === null) return;
  await executor.execute(sql`
    UPDATE outbox SET completed_at = now(), relayed_at = COALESCE(relayed_at, now())
    WHERE tenant_id = ${tenantId} AND subject_type = ${subjectType} AND subject_id = ${subjectId}
      AND completed_at IS NULL AND id <= ${upToId}`);
}
