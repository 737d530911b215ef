import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { chromium as playwrightChromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { runDriftScan } from '../src/drift/scan.js';
import { BuiltinConnector } from '../src/platform/builtin.js';
import { addRule } from '../src/reconcile/rules.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { startIdpServer } from './support/idp-server.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';
import { chromium, missing } from './support/prerequisites.js';

const ADMIN_TOKEN = randomBytes(24).toString('hex');

/* What a security reviewer sees in a real browser: the console behind the admin token, a known orphan
 * in the findings table, a filter that narrows it, and a CSV that downloads. */
describe('the security console in a real browser', async () => {
  if (missing(chromium)) return;
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  await addRule(
    database.db,
    tenant.id,
    { target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' },
    'test',
  );
  await database.sql`DELETE FROM outbox`;
  const [user] =
    await database.sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenant.id}, 'ada@example.com', 'scim') RETURNING id`;
  await database.sql`
    WITH g AS (INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'Engineering') RETURNING id)
    INSERT INTO group_members (tenant_id, group_id, user_id) SELECT ${tenant.id}, g.id, ${user!.id} FROM g`;
  const builtin = new BuiltinConnector(database.db, tenant.id);
  for (const account of ['ada@example.com', 'mallory@example.com']) {
    await builtin.apply({ kind: 'add-team-member', account, team: 'core', role: 'member' });
  }
  await builtin.apply({ kind: 'add-team-member', account: 'eve@example.com', team: 'ops', role: 'admin' });
  await runDriftScan({ database, connector: builtin }, tenant.id, 'test');

  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const { log } = capturingLogger('silent');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { port, publicUrl, adminToken: ADMIN_TOKEN }),
    log,
  });
  const sp = { entityId: `${publicUrl}/sso/acme`, acsUrl: `${publicUrl}/sso/acme/acs` };
  const idpServer = await startIdpServer(sp, (user) =>
    user.startsWith('sec') ? ['Security'] : ['Engineering'],
  );
  await database.sql`
    INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates)
    VALUES (${tenant.id}, ${idpServer.url}, ${`${idpServer.url}/sso`}, ${[idpServer.idp.certificate]})`;
  await database.sql`UPDATE tenants SET console_group = 'Security' WHERE id = ${tenant.id}`;
  const browser = await playwrightChromium.launch({
    executablePath: chromium.location,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  afterAll(async () => {
    await browser.close();
    await idpServer.close();
    await daemon.stop();
  });

  it('asks who you are, then shows the orphans; the filter narrows; the CSV downloads', async () => {
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    const response = await page.goto(`${publicUrl}/console`);
    expect(response!.status()).toBe(401);
    expect(await page.textContent('body')).toContain('Sign in with SSO');

    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    // click() waits for the answer's page to start loading only: read it once it has loaded.
    await page.waitForLoadState();
    expect(await page.textContent('body')).toContain('That is not an admin token for this tenant.');
    await page.fill('input[name=token]', ADMIN_TOKEN);
    await page.click('button[type=submit]');
    await page.waitForSelector('#findings');

    const rows = async () =>
      (await page.locator('#findings tbody tr').allTextContents()).map((r) => r.replace(/\s+/g, ' ').trim());
    const before = await rows();
    expect(
      before.some(
        (r) => r.includes('orphan') && r.includes('mallory@example.com') && r.includes('team core'),
      ),
    ).toBe(true);
    expect(before.some((r) => r.includes('eve@example.com') && r.includes('team ops'))).toBe(true);
    // …and Ada, whom the rules put in the Enterprise Account, is missing from it.
    expect(before.some((r) => r.includes('missing-access') && r.includes('ada@example.com'))).toBe(true);
    expect(before).toHaveLength(3);

    await page.selectOption('select[name=team]', 'core');
    await page.click('form.filters button[type=submit]');
    await page.waitForURL(/team=core/);
    const after = await rows();
    expect(after).toHaveLength(1);
    expect(after[0]).toContain('mallory@example.com');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('text=Download CSV >> nth=0'),
    ]);
    expect(download.suggestedFilename()).toBe('drift-acme-1.csv');
    const csv = await readFile((await download.path())!, 'utf8');
    expect(csv).toContain('orphan,medium,new,mallory@example.com');
    expect(csv).not.toContain('eve@example.com');

    expect(await page.textContent('#offboarding')).toContain('Nobody was offboarded in this period.');
    expect(await page.textContent('#drift')).toContain('hash and link to the previous report verified');
    await context.close();
  }, 60_000);

  it('refuses a scan request that does not come from the console page', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${publicUrl}/console/acme`);
    await page.fill('input[name=token]', ADMIN_TOKEN);
    await page.click('button[type=submit]');
    await page.waitForSelector('#findings');
    const cookies = await context.cookies();
    const cookie = cookies.map((c) => `${c.name}=${c.value}`).join('; ');
    const forged = await fetch(`${publicUrl}/console/acme/scan`, {
      method: 'POST',
      headers: { cookie, origin: 'https://evil.example' },
    });
    expect(forged.status).toBe(403);
    await page.click('text=Scan now');
    await page.waitForURL(/scan=queued/);
    await expect
      .poll(async () => (await database.sql`SELECT count(*)::int AS n FROM drift_reports`)[0]!.n, {
        timeout: 20_000,
      })
      .toBe(2);
    await context.close();
  }, 60_000);

  it('behind SSO: members of the console group get in, other employees are refused', async () => {
    for (const [user, allowed] of [
      ['sec-lead@example.com', true],
      ['dev@example.com', false],
    ] as const) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${publicUrl}/console/acme`);
      await page.click('text=Sign in with SSO');
      await page.fill('#username', user);
      await page.click('#sign-in');
      await page.waitForURL(`${publicUrl}/console/acme`);
      const body = await page.textContent('body');
      if (allowed) {
        expect(body).toContain(`Signed in as ${user}`);
        expect(await page.locator('#findings').count()).toBe(1);
      } else {
        expect(body).toContain('is for members of the IdP group Security');
        expect(await page.locator('#findings').count()).toBe(0);
      }
      await context.close();
    }
  }, 60_000);

  it('lists an offboarding with its time to effect and opens its receipt', async () => {
    await database.sql.begin(async (tx) => {
      await tx`UPDATE users SET active = false WHERE id = ${user!.id}`;
      await tx`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
        VALUES (${tenant.id}, 'deprovision', 'user', ${user!.id}, ${JSON.stringify({ event: 'user.deactivated', at: new Date().toISOString() })}::jsonb)`;
    });
    await expect
      .poll(
        async () =>
          (await database.sql`SELECT count(*)::int AS n FROM receipts WHERE completed_at IS NOT NULL`)[0]!.n,
        {
          timeout: 20_000,
        },
      )
      .toBe(1);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${publicUrl}/console/acme`);
    await page.fill('input[name=token]', ADMIN_TOKEN);
    await page.click('button[type=submit]');
    await page.waitForLoadState();
    const row = (await page.locator('#offboardings tbody tr').first().textContent())!.replace(/\s+/g, ' ');
    expect(row).toContain('ada@example.com');
    expect(row).toContain('complete');
    expect(await page.textContent('#offboarding')).toMatch(/1 offboarded .* 1 complete/);
    await page.click('#offboardings a');
    await page.waitForSelector('#edges');
    expect(await page.textContent('h1')).toBe('Offboarding receipt — ada@example.com');
    expect(await page.textContent('#edges')).toContain('remove ada@example.com from team core');
    await context.close();
  }, 60_000);
});
