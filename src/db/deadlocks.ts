import { isDeadlock } from '../errors.js';

const DEADLOCK_ATTEMPTS = 3;

/**
 * Runs a write transaction again when PostgreSQL aborted it to break a deadlock (nothing of it was
 * written), up to DEADLOCK_ATTEMPTS times in all, with fresh reads each time (an If-Match that no longer
 * matches then answers 412). For writes whose lock order cannot be made the same as every other
 * writer's: the callers say which orders meet.
 */
export async function againAfterDeadlock<T>(write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (error) {
      if (!isDeadlock(error) || attempt >= DEADLOCK_ATTEMPTS) throw error;
    }
  }
}
