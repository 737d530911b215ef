import { type JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * Lanes by urgency, each its own BullMQ queue with its own workers: a backlog of scans or ordinary
 * reconciles can never delay an offboarding.
 */
export const LANES = ['deprovision', 'reconcile', 'scan'] as const;
export type Lane = (typeof LANES)[number];

export type SubjectType = 'user' | 'group' | 'team' | 'tenant';

/** What a job carries: a key to look at, never a diff, so a duplicate or replayed job is harmless. */
export interface JobPayload {
  tenantId: string;
  subjectType: SubjectType;
  subjectId: string;
  /** The outbox row that asked for this job, for tracing. */
  outboxId?: number;
  cause?: Record<string, unknown>;
}

export const queueName = (lane: Lane) => `idsync-${lane}`;

export const subjectKey = (payload: Pick<JobPayload, 'tenantId' | 'subjectType' | 'subjectId'>) =>
  `${payload.tenantId}:${payload.subjectType}:${payload.subjectId}`;

export type LaneQueues = Record<Lane, Queue<JobPayload>>;

export function openQueues(connection: Redis, prefix: string): LaneQueues {
  const open = (lane: Lane) => new Queue<JobPayload>(queueName(lane), { connection, prefix });
  return { deprovision: open('deprovision'), reconcile: open('reconcile'), scan: open('scan') };
}

export async function closeQueues(queues: LaneQueues): Promise<void> {
  await Promise.all(Object.values(queues).map((q) => q.close()));
}

/**
 * Options every job gets. Deduplication by subject key with keepLastIfActive: while a job for a user is
 * waiting, more events for that user add nothing (the job reads the latest state when it runs); while one
 * is running, exactly one follow-up is kept, so an event that arrives mid-run is never lost and two
 * workers never reconcile the same subject at the same time.
 */
export function jobOptions(payload: JobPayload): JobsOptions {
  return {
    ...(payload.outboxId !== undefined ? { jobId: `outbox-${payload.outboxId}` } : {}),
    deduplication: { id: subjectKey(payload), keepLastIfActive: true },
    attempts: 10,
    backoff: { type: 'exponential', delay: 1_000 },
    removeOnComplete: { age: 24 * 3600, count: 50_000 },
    // A job that keeps failing stays visible (`idsync jobs failed`) until someone retries or clears it.
    removeOnFail: false,
  };
}
