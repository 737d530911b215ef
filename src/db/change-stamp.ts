import { sql } from 'drizzle-orm';

/**
 * When a change to a resource is written, as its `meta.lastModified` shows it: PostgreSQL's clock when
 * the statement runs. Not Node's, so every stamp comes from one clock whichever process wrote it; not
 * the transaction's start (`now()`), so a write that waited on a lock is stamped after the write it
 * waited for, and a client syncing by `meta.lastModified gt …` does not skip it.
 */
export const changeStamp = sql`clock_timestamp()`;
