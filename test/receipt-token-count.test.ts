import { afterEach, describe, expect, it } from 'vitest';
import { connectDatabase } from '../src/db/client.js';
import { revokeTokens } from '../src/reconcile/receipts.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/*
 * An offboarding's receipt says how many tokens it revoked. The revocation and the count are one
 * statement: a worker killed between two statements left the tokens revoked and the receipt at 0, and
 * the retry found nothing left to revoke.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function offboardee(database: TestDatabase) {
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'gone@example.com', 'scim', false)
    RETURNING id::text`;
  await database.sql`
    INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash)
    SELECT ${tenant.id}, ${user!.id}, 'api', md5(random()::text), 'h' FROM generate_series(1, 3)`;
  const [receipt] = await database.sql`
    INSERT INTO receipts (tenant_id, user_id, account, idp_event, idp_event_at)
    VALUES (${tenant.id}, ${user!.id}, 'gone@example.com', 'user.deactivated', now()) RETURNING id::text`;
  return { userId: user!.id as string, receiptId: receipt!.id as string };
}

const liveTokens = async (database: TestDatabase) =>
  (await database.sql`SELECT count(*)::int AS n FROM tokens WHERE revoked_at IS NULL`)[0]!.n;
const counted = async (database: TestDatabase, receiptId: string) =>
  (await database.sql`SELECT tokens_revoked FROM receipts WHERE id = ${receiptId}`)[0]!.tokens_revoked;

describe('revoking an offboardee’s tokens', () => {
  it('counts them on the receipt once, and a retry revokes and counts nothing more', async () => {
    const database = await createTestDatabase();
    cleanups.push(() => database.close());
    const { userId, receiptId } = await offboardee(database);
    expect(await revokeTokens(database.db, userId, 'deprovisioned: test', receiptId)).toBe(3);
    expect(await revokeTokens(database.db, userId, 'deprovisioned: test', receiptId)).toBe(0);
    expect(await liveTokens(database)).toBe(0);
    expect(await counted(database, receiptId)).toBe(3);
  });

  it('revokes nothing when the count cannot be written: the two commit together or not at all', async () => {
    const database = await createTestDatabase();
    cleanups.push(() => database.close());
    const { userId, receiptId } = await offboardee(database);
    // The receipt row is held by another transaction; the revocation's count must wait for it, and a
    // statement timeout cuts it off, as a killed worker would be cut off.
    const holder = await database.sql.reserve();
    await holder`BEGIN`;
    await holder`SELECT id FROM receipts WHERE id = ${receiptId} FOR UPDATE`;
    cleanups.push(async () => {
      await holder`ROLLBACK`;
      holder.release();
    });
    const impatient = connectDatabase(database.url, { statementTimeoutMs: 300 });
    cleanups.push(() => impatient.close());
    await expect(revokeTokens(impatient.db, userId, 'deprovisioned: test', receiptId)).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/statement timeout/) },
    });
    expect(await liveTokens(database)).toBe(3);
    expect(await counted(database, receiptId)).toBe(0);
  });
});
