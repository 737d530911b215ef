import { type DatabaseHandle, onEachConnection } from '../db/client.js';
import { settlesWithin } from '../jobs/settles-within.js';
import type { Logger } from '../log.js';
import { DEFAULT_PAGE_SIZE } from '../scim/router.js';
import { planUserPageScans, prepareUserReads } from '../scim/user-queries.js';

/**
 * Opens the SCIM edge's read pools and readies their statements (user-queries.ts) before the port opens,
 * for the default page size, which an IdP's import uses when it sends no `count`. Best effort: a failure
 * leaves the first reads to prepare their own statements, as they would anyway, and start goes on; so
 * does a warm-up not done within `deadlineMs` (a wedged database), which finishes in the background.
 */
export async function warmEdgeReads(
  pools: { pipelinedReads: DatabaseHandle; pageScans: DatabaseHandle },
  baseUrl: string,
  log: Logger,
  deadlineMs: number,
): Promise<void> {
  const warming = Promise.allSettled([
    onEachConnection(pools.pipelinedReads, ({ db }) => prepareUserReads(db, DEFAULT_PAGE_SIZE, baseUrl)),
    onEachConnection(pools.pageScans, ({ db }) => planUserPageScans(db, DEFAULT_PAGE_SIZE, baseUrl)),
  ]).then((results) => {
    for (const result of results)
      if (result.status === 'rejected')
        log.warn({ err: result.reason }, 'could not ready the SCIM read statements; the first reads will');
  });
  if (!(await settlesWithin(warming, deadlineMs)))
    log.warn({ deadlineMs }, 'readying the SCIM read statements is taking long; serving without waiting');
}
