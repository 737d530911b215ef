import { chromium as playwrightChromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { startIdpServer } from './support/idp-server.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';
import { chromium, missing } from './support/prerequisites.js';

describe('signing in through the IdP in a real browser', async () => {
  if (missing(chromium)) return;
  const database = await createTestDatabase();
  const { tenant, scimToken } = await createTenant(database.db, 'acme', 'test');
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const { log } = capturingLogger('silent');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { port, publicUrl }),
    log,
  });
  const sp = { entityId: `${publicUrl}/sso/acme`, acsUrl: `${publicUrl}/sso/acme/acs` };
  const idpServer = await startIdpServer(sp, () => ['Engineering']);
  await database.sql`
    INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates)
    VALUES (${tenant.id}, ${idpServer.url}, ${`${idpServer.url}/sso`}, ${[idpServer.idp.certificate]})`;
  await database.sql`
    INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role) VALUES (${tenant.id}, 'Engineering', 'team', 'core', 'member')`;
  const browser = await playwrightChromium.launch({
    executablePath: chromium.location,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  afterAll(async () => {
    await browser.close();
    await idpServer.close();
    await daemon.stop();
  });

  it('goes from a protected page to the IdP and back signed in, then is signed out once SCIM deactivates the user', async () => {
    const page = await browser.newPage();
    await page.goto(`${publicUrl}/sso/acme/me`);
    expect(page.url()).toContain(`${idpServer.url}/sso`);
    await page.fill('#username', 'ada@example.com');
    await page.click('#sign-in');
    await page.waitForURL(`${publicUrl}/sso/acme/me`);
    expect(await page.textContent('#user')).toBe('ada@example.com');
    // The reconciler grants the team a moment later; the page shows it on reload.
    await expect
      .poll(
        async () => {
          await page.reload();
          return page.textContent('body');
        },
        { timeout: 10_000, interval: 200 },
      )
      .toMatch(/core\s*member/);

    const [user] = await database.sql`SELECT id::text FROM users WHERE user_name = 'ada@example.com'`;
    const deactivated = await fetch(`${publicUrl}/scim/v2/Users/${user!.id}`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
      body: JSON.stringify({
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
        Operations: [{ op: 'replace', value: { active: false } }],
      }),
    });
    expect(deactivated.status).toBe(200);
    await page.reload();
    expect(page.url()).toContain(`${idpServer.url}/sso`);
    expect(await page.textContent('h1')).toBe('Test IdP');
    // A browser round trip through two servers and the reconciler: as its sibling, not the default 30 s.
  }, 90_000);
  it('refuses a response obtained in one browser when another browser posts it (login CSRF), and lets the first finish', async () => {
    const attacker = await browser.newContext();
    const victim = await browser.newContext();
    try {
      const attackerPage = await attacker.newPage();
      let captured = '';
      await attackerPage.route(`${publicUrl}/sso/acme/acs`, async (route) => {
        captured = route.request().postData() ?? '';
        await route.abort();
      });
      await attackerPage.goto(`${publicUrl}/sso/acme/login`);
      await attackerPage.fill('#username', 'mallory@example.com');
      await attackerPage.click('#sign-in');
      await expect.poll(() => captured, { timeout: 10_000 }).toContain('SAMLResponse=');
      const fields = new URLSearchParams(captured);

      // The attacker's page makes the victim's browser post the attacker's response to the ACS.
      const victimPage = await victim.newPage();
      await victimPage.goto(`${idpServer.url}/sso?SAMLRequest=`);
      await victimPage.evaluate(
        ({ acs, samlResponse }) => {
          const form = document.createElement('form');
          form.method = 'post';
          form.action = acs;
          const input = document.createElement('input');
          input.name = 'SAMLResponse';
          input.value = samlResponse;
          form.append(input);
          document.body.append(form);
          form.submit();
        },
        { acs: `${publicUrl}/sso/acme/acs`, samlResponse: fields.get('SAMLResponse')! },
      );
      await victimPage.waitForURL(`${publicUrl}/sso/acme/acs`);
      expect(await victimPage.textContent('h1')).toBe('Sign-in failed');
      expect((await victim.cookies()).map((c) => c.name)).not.toContain('idsync_session');
      expect((await database.sql`SELECT 1 FROM users WHERE user_name = 'mallory@example.com'`).length).toBe(
        0,
      );

      // The browser that started a login finishes it.
      await attackerPage.unroute(`${publicUrl}/sso/acme/acs`);
      await attackerPage.goto(`${publicUrl}/sso/acme/me`);
      await attackerPage.fill('#username', 'mallory@example.com');
      await attackerPage.click('#sign-in');
      await attackerPage.waitForURL(`${publicUrl}/sso/acme/me`);
      expect(await attackerPage.textContent('#user')).toBe('mallory@example.com');
    } finally {
      await attacker.close();
      await victim.close();
    }
  }, 90_000);
});
