import { sql } from 'drizzle-orm';

/**
 * When a change to a resource is written, as its `meta.lastModified` shows it: PostgreSQL's clock when
 * the statement runs. Not Node's, so every stamp comes from one clock whichever process wrote it; not
 * the transaction's start (`now()`), so a write that waited on a lock for another write is stamped
 * after it. The stamp still precedes the commit: a transaction that commits after a later-stamped one
 * can show an earlier lastModified than that one (a sync by `meta.lastModified gt …` should overlap its
 * windows by a moment).
 */
export const changeStamp = sql`clock_timestamp()`;
