import { type SQL, sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';

/**
 * Called on a sign-in through idsync. A grant the platform refused because the person had no account
 * there yet (Heroku: "Couldn't find that user" until their first SSO login creates it) waits in
 * platform_pending_accounts; the sign-in is the moment to try again. Returns whether the account was
 * waiting, so the caller queues a reconcile of the user in the same transaction.
 */
export async function releasePendingAccount(
  tx: Pick<Database, 'execute'>,
  tenantId: string,
  account: string,
): Promise<boolean> {
  const rows = await tx.execute(releasePendingAccountStatement(tenantId, account));
  return rows.length > 0;
}

/**
 * The same release as a data-modifying statement returning one row when the account was waiting, for a
 * caller that runs it as a CTE beside its own statement (the SAML login does, to save a round trip).
 */
export function releasePendingAccountStatement(tenantId: string, account: string): SQL {
  return sql`
    DELETE FROM platform_pending_accounts WHERE tenant_id = ${tenantId} AND account = lower(${account})
    RETURNING account`;
}
