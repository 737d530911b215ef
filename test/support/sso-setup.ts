import { afterAll } from 'vitest';
import type { Config } from '../../src/config.js';
import { createTenant } from '../../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './daemon.js';
import { createTestDatabase } from './database.js';
import { capturingLogger } from './log-capture.js';
import { freePort } from './ports.js';
import { ssoClient } from './sso-client.js';
import { createTestIdp, type TestIdp } from './test-idp.js';

/**
 * What every SAML test starts from: its own database with tenant `acme`, a daemon on a known public URL
 * (`serve`: the API alone, no job ever runs; `start`: workers too), stopped after the file, and a
 * browser for the ACS. Call it at the top of a `describe`.
 */
export async function startSsoTest(
  options: {
    mode?: 'serve' | 'start';
    logLevel?: string;
    config?: Partial<Config>;
    databaseSettings?: Record<string, string>;
  } = {},
) {
  const database = await createTestDatabase({ settings: options.databaseSettings });
  const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const { log, output } = capturingLogger(options.logLevel ?? 'info');
  const daemon = await startTestDaemon({
    mode: options.mode ?? 'serve',
    config: testConfig(database.url, { port, publicUrl, ...options.config }),
    log,
  });
  afterAll(() => daemon.stop());
  const sp = { entityId: `${publicUrl}/sso/acme`, acsUrl: `${publicUrl}/sso/acme/acs` };
  return {
    database,
    tenant,
    scimToken,
    port,
    publicUrl,
    log,
    output,
    daemon,
    sp,
    browser: ssoClient(publicUrl, 'acme'),
    /** A signing test IdP for this SP (`entityId`: pose as a given vendor's IdP). */
    createIdp: (entityId?: string) => createTestIdp(sp, entityId),
    /** Trusts `idp` for tenant `acme`, as `idsync sso add` would, with its SSO URL under its entity id. */
    trust: async (idp: TestIdp) => {
      await database.sql`
        INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates)
        VALUES (${tenant.id}, ${idp.entityId}, ${`${idp.entityId}/sso`}, ${[idp.certificate]})`;
    },
  };
}
