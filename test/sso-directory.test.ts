import { describe, expect, it } from 'vitest';
import type { DomainError } from '../src/errors.js';
import { saveConnection, toPem } from '../src/sso/connections.js';
import { SsoDirectory } from '../src/sso/sso-directory.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';

const CERT = toPem('A'.repeat(120));
const OTHER_CERT = toPem('B'.repeat(120));
const connection = (certificates: string[]) => ({
  idpEntityId: 'https://idp.example.test',
  ssoUrl: 'https://idp.example.test/sso',
  certificates,
  wantResponseSigned: false,
  groupClaimFormat: 'names' as const,
  attributeMap: {},
  allowedDomains: [],
});

describe('the SSO directory (cached tenant and IdP lookups of the ACS)', () => {
  it('serves lookups from its cache, and sees any writer’s change at once through the change trigger', async () => {
    const { db, sql } = await createTestDatabase();
    const { tenant } = await createTenant(db, 'acme', 'test');
    await saveConnection(db, tenant.id, connection([CERT]));
    const directory = new SsoDirectory(db);
    // A TTL far beyond the test: only the NOTIFY from the triggers can make a change visible.
    await directory.start(sql, 600_000);
    try {
      expect((await directory.tenant('acme')).idpInitiatedSso).toBe(false);
      expect((await directory.connection(tenant.id, 'https://idp.example.test'))?.certificates).toEqual([
        CERT,
      ]);
      const statementsBefore = await statementCount(sql);
      await directory.tenant('acme');
      await directory.connection(tenant.id, 'https://idp.example.test');
      expect(await statementCount(sql)).toBe(statementsBefore);

      // A plain UPDATE, as an operator or another module would run it: no application code notifies.
      await sql`UPDATE tenants SET idp_initiated_sso = true WHERE id = ${tenant.id}`;
      await expect.poll(async () => (await directory.tenant('acme')).idpInitiatedSso).toBe(true);
      await saveConnection(db, tenant.id, connection([OTHER_CERT]));
      await expect
        .poll(async () => (await directory.connection(tenant.id, 'https://idp.example.test'))?.certificates)
        .toEqual([OTHER_CERT]);
      await sql`DELETE FROM sso_connections WHERE tenant_id = ${tenant.id}`;
      await expect
        .poll(async () => directory.connection(tenant.id, 'https://idp.example.test'))
        .toBeUndefined();
      await sql`UPDATE tenants SET name = 'acme-renamed' WHERE id = ${tenant.id}`;
      await expect
        .poll(async () =>
          directory.tenant('acme').then(
            () => 'found',
            (e) => (e as DomainError).kind,
          ),
        )
        .toBe('not_found');
    } finally {
      await directory.stop();
    }
  });
});

/** Statements this session's database has run so far (xact_commit counts every autocommit statement). */
async function statementCount(sql: Awaited<ReturnType<typeof createTestDatabase>>['sql']): Promise<number> {
  const [row] = await sql<{ n: string }[]>`
    SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()`;
  return Number(row!.n);
}
