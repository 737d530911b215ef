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

/** Attempts before a job fails for good; a deprovision keeps trying for hours, a reconcile for minutes. */
export const ATTEMPTS: Record<Lane, number> = { deprovision: 40, reconcile: 10, scan: 10 };

/** Longest wait between two attempts: back-off doubles from a second up to this. */
export const MAX_BACKOFF_MS = 5 * 60_000;

/**
 * Exponential back-off from one second, capped at MAX_BACKOFF_MS, with jitter so that jobs failing
 * together (a platform outage) do not all come back at the same moment. 40 deprovision attempts wait
 * about 2.6 hours in all.
 */
export function backoffDelay(attemptsMade: number): number {
  const base = Math.min(1_000 * 2 ** Math.max(attemptsMade - 1, 0), MAX_BACKOFF_MS);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** The back-off type the workers resolve with `backoffDelay` (BullMQ's own exponential is uncapped). */
export const BACKOFF_TYPE = 'capped-exponential';

/**
 * Options every job gets. Deduplication by subject key with keepLastIfActive: while a job for a user is
 * waiting, more events for that user add nothing (the job reads the latest state when it runs); while one
 * is running, exactly one follow-up is kept, so an event that arrives mid-run is never lost and two
 * workers never reconcile the same subject at the same time. The job id comes from the outbox row and
 * how often it was relayed, so a row the sweeper sends again (its job lost with Redis) is a new job.
 */
export function jobOptions(payload: JobPayload, lane: Lane, relayCount = 1): JobsOptions {
  return {
    ...(payload.outboxId !== undefined
      ? { jobId: relayCount > 1 ? `outbox-${payload.outboxId}-${relayCount}` : `outbox-${payload.outboxId}` }
      : {}),
    deduplication: { id: subjectKey(payload), keepLastIfActive: true },
    attempts: ATTEMPTS[lane],
    backoff: { type: BACKOFF_TYPE },
    removeOnComplete: { age: 24 * 3600, count: 50_000 },
    // A job that keeps failing stays visible (`idsync jobs failed`) until someone retries or clears it.
    removeOnFail: false,
  };
}
