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
 * The unfinished outbox rows announcing a subject, read by a job before it reads the subject's state:
 * each was committed with its change, so the job sees every change they announce, and finishing the job
 * completes exactly these rows. (Not "every row up to the highest id": a row with a lower id can commit
 * later, and its change would then be unseen.)
 */
export async function openAnnouncements(
  executor: Executor,
  tenantId: string,
  subjectType: SubjectType,
  subjectId: string,
): Promise<number[]> {
  const rows = await executor.execute<{ id: string }>(sql`
    SELECT id::text FROM outbox
    WHERE tenant_id = ${tenantId} AND subject_type = ${subjectType} AND subject_id = ${subjectId}
      AND completed_at IS NULL`);
  return rows.map((r) => Number(r.id));
}

/**
 * Marks done what a finished job covered (a row not relayed yet need not be: its change was seen); the
 * sweeper sends again rows relayed but never completed.
 */
export async function completeAnnouncements(executor: Executor, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await executor.execute(sql`
    UPDATE outbox SET completed_at = now(), relayed_at = COALESCE(relayed_at, now())
    WHERE id = ANY(${sql.param(ids.map(String))}::bigint[]) AND completed_at IS NULL`);
}
