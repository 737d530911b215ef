import type { Database } from '../db/client.js';
import { outbox } from '../db/schema.js';
import type { Lane, SubjectType } from './queues.js';

/** A drizzle transaction or the database itself: the outbox row joins whatever transaction it is given. */
export type Executor = Pick<Database, 'insert'>;

export interface OutboxEntry {
  tenantId: string;
  lane: Lane;
  subjectType: SubjectType;
  subjectId: string;
  cause: Record<string, unknown>;
}

/**
 * Records, inside the caller's transaction, that a subject needs reconciling. Written with the change
 * itself, so the reconciler hears of every committed change even if Redis is down at that moment.
 */
export async function recordForReconcile(executor: Executor, entries: OutboxEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await executor.insert(outbox).values(entries);
}
