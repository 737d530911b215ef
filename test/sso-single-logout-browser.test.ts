import { chromium as playwrightChromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';
import { chromium, missing } from './support/prerequisites.js';
import { startSloIdpServer } from './support/slo-idp-server.js';

// A browser round trip through two servers takes seconds on a loaded 2-core machine.
describe('SAML Single Logout in a real browser', { timeout: 90_000 }, async () => {
  // A fresh clone without Chromium skips it with the reason (CI, IDSYNC_REQUIRE_ALL_TESTS=1, fails).
  if (missing(chromium)) return;
  const database = await createTestDatabase();
  const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const daemon = await startTestDaemon({
    mode: 'serve',
    config: testConfig(database.url, {
      port,
      publicUrl,
      secretKey: 'single-logout-browser-key-0123456789ab',
    }),
    log: capturingLogger('silent').log,
  });
  const base = `${publicUrl}/sso/acme`;
  const idpServer = await startSloIdpServer({
    entityId: base,
    acsUrl: `${base}/acs`,
    sloUrl: `${base}/slo`,
    metadataUrl: `${base}/metadata`,
  });
  await database.sql`
    INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates, slo_url)
    VALUES (${tenant.id}, ${idpServer.url}, ${`${idpServer.url}/sso`}, ${[idpServer.idp.certificate]}, ${`${idpServer.url}/slo`})`;
  const browser = await playwrightChromium.launch({
    executablePath: chromium.location,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-sync',
    ],
  });
  afterAll(async () => {
    await browser.close();
    await idpServer.close();
    await daemon.stop();
  });

  const signIn = async (page: import('playwright-core').Page, user: string) => {
    await page.goto(`${base}/me`);
    expect(page.url()).toContain(`${idpServer.url}/sso`);
    await page.fill('#username', user);
    await page.click('#sign-in');
    await page.waitForURL(`${base}/me`);
    expect(await page.textContent('#user')).toBe(user);
  };

  it('signing out of idsync also ends the IdP session (SP-initiated, HTTP-Redirect both ways)', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, 'ada@example.com');
    await page.click('button:has-text("Sign out")');
    await page.waitForSelector('#signed-out');
    expect(page.url()).toContain(`${base}/slo?SAMLResponse=`);
    // Both sessions are gone: idsync sends the browser to the IdP, which asks for the password again.
    await page.goto(`${base}/me`);
    expect(page.url()).toContain(`${idpServer.url}/sso`);
    expect(await page.isVisible('#username')).toBe(true);
    await context.close();
  });

  it('signing out at the IdP ends the idsync session (IdP-initiated, HTTP-POST)', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, 'grace@example.com');
    await page.goto(`${idpServer.url}/logout`);
    await page.waitForSelector('#idp-signed-out');
    const [session] = await database.sql`
      SELECT t.revoked_reason FROM tokens t JOIN users u ON u.id = t.user_id
      WHERE u.user_name = 'grace@example.com' AND t.kind = 'session'`;
    expect(session?.revoked_reason).toBe('signed out at the identity provider');
    await page.goto(`${base}/me`);
    expect(page.url()).toContain(`${idpServer.url}/sso`);
    expect(await page.isVisible('#username')).toBe(true);
    await context.close();
  });

  it('a SCIM deactivation ends the IdP session too, at the browser’s next visit', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, 'joan@example.com');
    const [user] = await database.sql`SELECT id::text FROM users WHERE user_name = 'joan@example.com'`;
    const deactivated = await fetch(`${publicUrl}/scim/v2/Users/${user!.id}`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
      body: JSON.stringify({
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
        Operations: [{ op: 'replace', path: 'active', value: false }],
      }),
    });
    expect(deactivated.status).toBe(200);
    await page.goto(`${base}/me`);
    await page.waitForSelector('#signed-out');
    // The IdP's session is gone: it asks for the password again instead of answering at once.
    await page.goto(`${base}/me`);
    expect(page.url()).toContain(`${idpServer.url}/sso`);
    expect(await page.isVisible('#username')).toBe(true);
    await context.close();
  });
});
