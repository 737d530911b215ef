import { type DatabaseHandle, onEachConnection } from '../db/client.js';
import type { Logger } from '../log.js';
import { DEFAULT_PAGE_SIZE } from '../scim/router.js';
import { warmUserReads } from '../scim/user-queries.js';
import { PAGE_SCAN_CONNECTIONS, PIPELINED_READ_CONNECTIONS } from './pool-size.js';

/**
 * Opens the SCIM edge's read pools and prepares their statements (warmUserReads) before the port opens,
 * for the default page size, which an IdP's import uses when it sends no `count`. Best effort: a failure
 * leaves the first reads to prepare their own statements, as they would anyway, and start goes on.
 */
export async function warmEdgeReads(
  pools: { pipelinedReads: DatabaseHandle; pageScans: DatabaseHandle },
  baseUrl: string,
  log: Logger,
): Promise<void> {
  try {
    await Promise.all([
      onEachConnection(pools.pipelinedReads, PIPELINED_READ_CONNECTIONS, ({ db }) =>
        warmUserReads(db, 'pipelined', DEFAULT_PAGE_SIZE, baseUrl),
      ),
      onEachConnection(pools.pageScans, PAGE_SCAN_CONNECTIONS, ({ db }) =>
        warmUserReads(db, 'pageScans', DEFAULT_PAGE_SIZE, baseUrl),
      ),
    ]);
  } catch (error) {
    log.warn({ err: error }, 'could not prepare the SCIM read statements ahead; the first reads will');
  }
}
