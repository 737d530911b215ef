import { sql } from 'drizzle-orm';
import type { Sql } from '../db/client.js';
import type { Executor } from '../jobs/outbox.js';

/*
 * What a tenant's rules match changes in two ways: by the user's side (they join a group, gain an app
 * role: their own event judges them) and by the rules' side (a rule added or removed, a team newly listed
 * for "every team" rules: the change queues every user it matches, read in its own transaction). When
 * both happen at once, each can miss the other: the change's list of matched users is read before the
 * join commits, and the joiner's verdict (the relay's quiet check or the job's plan) reads the rules
 * before the change commits — and the user keeps a stale grant set until something else touches them.
 *
 * A per-tenant advisory lock closes it. A change takes it exclusively before it reads whom it matches
 * and keeps it until it commits; a verdict takes it shared, in a statement before the ones that read
 * the user and the rules (a statement reads from the snapshot of its start, so a lock taken in the same
 * statement would not make the change's commit visible). Then either the verdict ran first, and the
 * change, reading after it, sees the joined user; or the change committed first, and the verdict sees it.
 */

/** The lock key is this prefix and the tenant id (hashed by `hashtextextended(…, 0)`). */
export const RULE_MATCHING_PREFIX = 'rule-matching:';
const key = (tenantId: string) => `${RULE_MATCHING_PREFIX}${tenantId}`;

/** Taken by a change to what rules match, in its transaction, before it reads the users it matches. */
export async function lockRuleMatchingForChange(tx: Executor, tenantId: string): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${key(tenantId)}, 0))`);
}

/**
 * Runs `read` (the user's and the rules' side of a verdict) under the shared lock, on one reserved
 * connection: a session lock, released as soon as the reads are done, so a change never waits for a
 * job's platform calls.
 */
export async function readingRuleMatching<T>(
  connection: Sql,
  tenantId: string,
  read: () => Promise<T>,
): Promise<T> {
  await connection`SELECT pg_advisory_lock_shared(hashtextextended(${key(tenantId)}, 0))`;
  try {
    return await read();
  } finally {
    await connection`SELECT pg_advisory_unlock_shared(hashtextextended(${key(tenantId)}, 0))`;
  }
}
