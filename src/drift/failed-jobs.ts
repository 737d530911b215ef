import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { LANES, type LaneQueues } from '../jobs/queues.js';
import type { FailedJob } from './scan.js';

/** The tenant's jobs that failed every attempt, with the user's name where the subject is a user. */
export async function failedJobsOf(db: Database, queues: LaneQueues, tenantId: string): Promise<FailedJob[]> {
  const failed = (
    await Promise.all(
      LANES.map(async (lane) => (await queues[lane].getFailed(0, 9_999)).map((job) => ({ lane, job }))),
    )
  )
    .flat()
    .filter(({ job }) => job?.data.tenantId === tenantId);
  const userIds = failed
    .filter(({ job }) => job.data.subjectType === 'user')
    .map(({ job }) => job.data.subjectId);
  const names = new Map(
    (
      await db.execute<{ id: string; account: string }>(sql`
        SELECT id::text, user_name_key AS account FROM users
        WHERE tenant_id = ${tenantId} AND id::text = ANY(${sql.param(userIds)}::text[])`)
    ).map((r) => [r.id, r.account]),
  );
  return failed.map(({ lane, job }) => {
    const isUser = job.data.subjectType === 'user';
    return {
      id: job.id ?? '',
      lane,
      subject: (isUser && names.get(job.data.subjectId)) || `${job.data.subjectType}:${job.data.subjectId}`,
      userId: isUser ? job.data.subjectId : null,
      reason: job.failedReason ?? 'unknown',
      failedAt: new Date(job.finishedOn ?? job.timestamp).toISOString(),
    };
  });
}
