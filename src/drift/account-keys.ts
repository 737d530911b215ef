import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { PlatformSlice } from '../platform/connector.js';
import type { AppPermission, TeamRole } from '../reconcile/model.js';

// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
const ASCII = /^[\x00-\x7f]*$/;

/**
 * `account_key()` of each platform account, the normal form `users.user_name_key` holds, so a scan
 * matches platform accounts to users the way every other lookup does. For ASCII names full case
 * folding is lower-casing and NFC changes nothing, so they are folded here; any other name asks
 * PostgreSQL, the one definition (drizzle/0011).
 */
export async function accountKeys(db: Database, accounts: readonly string[]): Promise<Map<string, string>> {
  const keys = new Map<string, string>();
  const others: string[] = [];
  for (const account of accounts) {
    if (ASCII.test(account)) keys.set(account, account.trim().toLowerCase());
    else others.push(account);
  }
  if (others.length > 0) {
    const rows = await db.execute<{ account: string; key: string }>(sql`
      SELECT a AS account, account_key(a) AS key FROM unnest(${sql.param(others)}::text[]) AS a`);
    for (const row of rows) keys.set(row.account, row.key);
  }
  return keys;
}

/** The slice with every account replaced by its account key (names of teams and apps unchanged). */
export async function keyedSlice(db: Database, slice: PlatformSlice): Promise<PlatformSlice> {
  switch (slice.kind) {
    case 'unreadable':
      return slice;
    case 'enterprise': {
      const keys = await accountKeys(
        db,
        slice.members.map((m) => m.account),
      );
      return { ...slice, members: slice.members.map((m) => ({ ...m, account: keys.get(m.account)! })) };
    }
    case 'team': {
      const keys = await accountKeys(db, [...slice.members.map(([a]) => a), ...(slice.implied ?? [])]);
      return {
        ...slice,
        members: slice.members.map(([account, role]): [string, TeamRole] => [keys.get(account)!, role]),
        ...(slice.implied ? { implied: slice.implied.map((a) => keys.get(a)!) } : {}),
      };
    }
    case 'app': {
      const keys = await accountKeys(db, [...slice.collaborators.map(([a]) => a), ...(slice.implied ?? [])]);
      return {
        ...slice,
        collaborators: slice.collaborators.map(([account, permissions]): [string, AppPermission[]] => [
          keys.get(account)!,
          permissions,
        ]),
        ...(slice.implied ? { implied: slice.implied.map((a) => keys.get(a)!) } : {}),
      };
    }
  }
}
