import { sql } from 'drizzle-orm';
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
 * and keeps it until it commits. A verdict needs one moment, after the event it judges committed and in
 * a statement before the ones that read the user and the rules, at which no change holds the lock
 * (`rule_matching_awaited` waits for that moment, `rule_matching_idle` only looks; migration 0025).
 * Any change that held the lock before that moment has committed, and the verdict's reads see it; any
 * change that takes it afterwards lists its users after the join committed, and queues the joiner. The
 * verdict never holds the lock, so a change never waits for a job's reads, a relay's Redis calls or
 * anything a user's lock holds up; and a job waits for a change before it takes the user's lock, so a
 * deprovision of that user does not wait behind the change.
 */

/** Taken by a change to what rules match, in its transaction, before it reads the users it matches. */
export async function lockRuleMatchingForChange(tx: Executor, tenantId: string): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${`rule-matching:${tenantId}`}, 0))`);
}
