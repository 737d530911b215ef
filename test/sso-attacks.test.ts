import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';
import { ssoClient } from './support/sso-client.js';
import { startSsoTest } from './support/sso-setup.js';
import { createTestIdp } from './support/test-idp.js';

/*
 * The attacks of issue 11, each tried against the real ACS with responses a real signing IdP (samlify)
 * produced: every one is refused with a 403 page, sets no session cookie, and writes or changes no user,
 * membership, session or outbox row. Beside each, the legitimate login it must not break.
 */

const ENTRA_GROUPS = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/groups';
const decode = (samlResponse: string) => Buffer.from(samlResponse, 'base64').toString('utf8');
const encode = (xml: string) => Buffer.from(xml, 'utf8').toString('base64');
const minutes = (n: number) => new Date(Date.now() + n * 60_000).toISOString();

describe('SAML attacks against the ACS', async () => {
  const { database, tenant, scimToken, publicUrl, output, sp, browser, createIdp, trust } =
    await startSsoTest();
  const redis = new Redis(inject('redisUrl'));
  afterAll(() => redis.disconnect());
  const idp = await createIdp();
  await trust(idp);
  const setIdpInitiated = (on: boolean) =>
    database.sql`UPDATE tenants SET idp_initiated_sso = ${on} WHERE id = ${tenant.id}`;

  /** Everything a login could write: users, memberships, sessions, outbox. */
  const state = async () => {
    const [row] = await database.sql`
      SELECT (SELECT coalesce(json_agg(u ORDER BY u.id), '[]') FROM users u) AS users,
        (SELECT coalesce(json_agg(m ORDER BY m.group_id, m.user_id), '[]') FROM group_members m) AS members,
        (SELECT count(*)::int FROM tokens WHERE kind = 'session') AS sessions,
        (SELECT count(*)::int FROM outbox) AS outbox`;
    return row;
  };
  const expectRefused = async (attempt: () => Promise<Response>, reason: RegExp) => {
    const before = await state();
    const response = await attempt();
    expect(response.status).toBe(403);
    expect(response.headers.get('set-cookie') ?? '').not.toContain('idsync_session');
    const html = await response.text();
    expect(html).toContain('Sign-in failed');
    const reference = /<code>([^<]+)<\/code>/.exec(html)![1]!;
    expect(output()).toMatch(
      new RegExp(`"reference":"${reference}","reason":"[^"]*(?:${reason.source})`, reason.flags),
    );
    expect(await state()).toEqual(before);
  };
  const expectSignedIn = async (response: Response) => {
    expect(response.status).toBe(303);
    expect(response.headers.get('set-cookie')).toMatch(/^idsync_session=sess_/);
  };
  const groupsOf = async (userName: string) =>
    (
      await database.sql`
        SELECT g.display_name, gm.source::text FROM group_members gm JOIN groups g ON g.id = gm.group_id
        JOIN users u ON u.id = gm.user_id WHERE u.user_name = ${userName} ORDER BY g.display_name`
    ).map((r) => `${r.display_name}:${r.source}`);

  it('decides nothing from the unsigned Response: a captured unsolicited response with InResponseTo added is refused', async () => {
    await setIdpInitiated(false);
    const requestId = await browser.requestId();
    const captured = decode(await idp.respond({ nameId: 'victim@example.com' }));
    // The Response element comes first, so this sets only its (unsigned) InResponseTo.
    const forged = captured.replace('InResponseTo=""', `InResponseTo="${requestId}"`);
    expect(forged).not.toBe(captured);
    await expectRefused(() => browser.post(encode(forged)), /unsigned Response only/);
    await expectRefused(
      async () => browser.post(await idp.respond({ nameId: 'victim@example.com' })),
      /unsolicited/,
    );
    // Control: the same IdP answering a request this browser started signs the user in.
    await expectSignedIn(
      await browser.post(
        await idp.respond({ nameId: 'victim@example.com', inResponseTo: await browser.requestId() }),
      ),
    );
  });

  it('refuses a Response whose own signature does not verify, although the connection requires only the assertion’s', async () => {
    const signed = decode(
      await idp.respond({
        nameId: 'okta@example.com',
        inResponseTo: await browser.requestId(),
        signResponse: true,
      }),
    );
    // The first IssueInstant is the Response's: changing it breaks the Response signature only.
    const tampered = signed.replace(/IssueInstant="[^"]+"/, 'IssueInstant="2026-01-01T00:00:00.000Z"');
    await expectRefused(() => browser.post(encode(tampered)), /Invalid document signature/);
    await expectSignedIn(
      await browser.post(
        await idp.respond({
          nameId: 'okta@example.com',
          inResponseTo: await browser.requestId(),
          signResponse: true,
        }),
      ),
    );
  });

  it('binds an SP-initiated login to the browser that started it (login CSRF)', async () => {
    const attacker = ssoClient(publicUrl, 'acme');
    const victim = ssoClient(publicUrl, 'acme');
    await victim.requestId(); // the victim has a state cookie of their own
    const attackersLogin = await idp.respond({
      nameId: 'attacker@example.com',
      inResponseTo: await attacker.requestId(),
    });
    await expectRefused(() => victim.post(attackersLogin), /another browser/);
    const another = await idp.respond({
      nameId: 'attacker@example.com',
      inResponseTo: await attacker.requestId(),
    });
    await expectRefused(() => victim.post(another, { cookie: '' }), /another browser/);
    const malformed = await idp.respond({
      nameId: 'attacker@example.com',
      inResponseTo: await attacker.requestId(),
    });
    await expectRefused(
      () => victim.post(malformed, { cookie: 'idsync_saml_state=%E0%A4%A' }),
      /another browser/,
    );
    await expectSignedIn(
      await attacker.post(
        await idp.respond({ nameId: 'attacker@example.com', inResponseTo: await attacker.requestId() }),
      ),
    );
  });

  it('sets the login-state cookie for the IdP’s cross-site POST: SameSite=None; Secure over https, no SameSite on plain-http localhost', async () => {
    const local = await fetch(`${publicUrl}/sso/acme/login`, { redirect: 'manual' });
    const localCookie = local.headers.get('set-cookie')!;
    expect(localCookie).toMatch(/^idsync_saml_state=[A-Za-z0-9_-]{43};/);
    expect(localCookie).toContain('HttpOnly');
    expect(localCookie).toContain('Path=/sso/');
    expect(localCookie).not.toMatch(/SameSite|Secure/i);
    const httpsPort = await freePort();
    const behindTls = await startTestDaemon({
      mode: 'serve',
      config: testConfig(database.url, { port: httpsPort, publicUrl: 'https://idsync.example.test' }),
      log: capturingLogger('silent').log,
    });
    try {
      const response = await fetch(`http://127.0.0.1:${httpsPort}/sso/acme/login`, { redirect: 'manual' });
      const cookie = response.headers.get('set-cookie')!;
      expect(cookie).toMatch(/^idsync_saml_state=/);
      expect(cookie).toContain('Secure');
      expect(cookie).toContain('SameSite=None');
    } finally {
      await behindTls.stop();
    }
  });

  it('spends each assertion for its whole life, refused unsolicited ones included, and enforces SubjectConfirmationData NotOnOrAfter', async () => {
    await setIdpInitiated(true);
    const expiredConfirmation = await idp.respond({
      nameId: 'late@example.com',
      overrides: { SubjectConfirmationDataNotOnOrAfter: minutes(-2), ConditionsNotOnOrAfter: minutes(30) },
    });
    await expectRefused(
      () => browser.post(expiredConfirmation),
      /SubjectConfirmationData NotOnOrAfter has passed/,
    );

    const longLived = await idp.respond({
      nameId: 'late@example.com',
      overrides: { SubjectConfirmationDataNotOnOrAfter: minutes(5), ConditionsNotOnOrAfter: minutes(30) },
    });
    await expectSignedIn(await browser.post(longLived));
    const assertionId = /<saml:Assertion[^>]* ID="([^"]+)"/.exec(decode(longLived))![1]!;
    // Remembered until the latest NotOnOrAfter (Conditions, 30 min) plus skew — not the confirmation's 5 min.
    const ttl = await redis.pttl(`idsync:saml:assertion:${tenant.id}:${assertionId}`);
    expect(ttl).toBeGreaterThan(29 * 60_000);
    expect(ttl).toBeLessThanOrEqual(31 * 60_000);
    await expectRefused(() => browser.post(longLived), /already used/);

    await setIdpInitiated(false);
    const unsolicited = await idp.respond({ nameId: 'late@example.com' });
    await expectRefused(() => browser.post(unsolicited), /unsolicited/);
    await setIdpInitiated(true);
    await expectRefused(() => browser.post(unsolicited), /already used/);
    await setIdpInitiated(false);
  });

  it('refuses an assertion older than the tenant’s maximum age (10 minutes unless set)', async () => {
    const issuedAgo = async (minutesAgo: number) =>
      idp.respond({
        nameId: 'old@example.com',
        inResponseTo: await browser.requestId(),
        overrides: { IssueInstant: minutes(-minutesAgo), ConditionsNotBefore: minutes(-minutesAgo) },
      });
    await expectRefused(
      async () => browser.post(await issuedAgo(180)),
      /issued 10800 s ago; this tenant accepts 600 s/,
    );
    await expectRefused(async () => browser.post(await issuedAgo(12)), /this tenant accepts 600 s/);
    await database.sql`UPDATE tenants SET max_assertion_age_seconds = 900 WHERE id = ${tenant.id}`;
    await expectSignedIn(await browser.post(await issuedAgo(12)));
    await database.sql`UPDATE tenants SET max_assertion_age_seconds = 600 WHERE id = ${tenant.id}`;
  });

  it('signs in no spelling variant of a deactivated or deleted user, and SCIM creates none', async () => {
    await database.sql`
      INSERT INTO users (tenant_id, user_name, origin, active, deprovisioned_at) VALUES
        (${tenant.id}, 'dep.user@example.com', 'scim', false, NULL),
        (${tenant.id}, 'josé@example.com', 'scim', false, NULL),
        (${tenant.id}, 'gone.user@example.com', 'scim', false, now())`;
    const variants: [string, RegExp][] = [
      ['\n dep.user@example.com \n', /deactivated/],
      ['DEP.User@Example.COM', /deactivated/],
      ['jose\u0301@example.com', /deactivated/], // NFD spelling of the NFC name
      ['JOSÉ@EXAMPLE.COM', /deactivated/],
      ['\t Gone.User@example.com ', /deprovisioned/],
      ['dep.user\u200b@example.com', /invisible/],
      ['dep.user @example.com', /whitespace/],
    ];
    for (const [nameId, reason] of variants) {
      await expectRefused(
        async () =>
          browser.post(
            await idp.respond({
              nameId,
              inResponseTo: await browser.requestId(),
              attributes: { groups: ['Admins'] },
            }),
          ),
        reason,
      );
    }
    const scim = (method: string, path: string, body?: unknown) =>
      fetch(`${publicUrl}/scim/v2${path}`, {
        method,
        headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const schemas = ['urn:ietf:params:scim:schemas:core:2.0:User'];
    for (const userName of [' DEP.USER@example.com ', 'jose\u0301@example.com']) {
      const created = await scim('POST', '/Users', { schemas, userName });
      expect(created.status).toBe(409);
    }
    const invalid = await scim('POST', '/Users', { schemas, userName: 'dep user@example.com' });
    expect(invalid.status).toBe(400);
    expect(await invalid.json()).toMatchObject({ scimType: 'invalidValue' });
    // Okta looks a user up by filter before creating: every spelling finds the one user.
    const found = await (
      await scim('GET', `/Users?filter=${encodeURIComponent('userName eq "JOSE\u0301@example.com"')}`)
    ).json();
    expect(found.totalResults).toBe(1);
    expect(found.Resources[0].userName).toBe('josé@example.com');
  });

  it('accepts exactly one Assertion in the whole document: unsigned copies in ds:Signature, ds:Object or samlp:Extensions are refused', async () => {
    const signed = decode(
      await idp.respond({ nameId: 'honest@example.com', inResponseTo: await browser.requestId() }),
    );
    const assertion = /<saml:Assertion[\s\S]*<\/saml:Assertion>/.exec(signed)![0];
    const evil = assertion
      .replace(/<ds:Signature[\s\S]*<\/ds:Signature>/, '')
      .replace(/ID="[^"]+"/, 'ID="_evil"')
      .replace('honest@example.com', 'admin@example.com');
    const hidden = [
      signed.replace('</ds:SignatureValue>', `</ds:SignatureValue>${evil}`),
      signed.replace(
        '</ds:KeyInfo></ds:Signature>',
        `</ds:KeyInfo><ds:Object>${evil}</ds:Object></ds:Signature>`,
      ),
      signed.replace('<samlp:Status>', `<samlp:Extensions>${evil}</samlp:Extensions><samlp:Status>`),
    ];
    for (const xml of hidden) {
      expect(xml).not.toBe(signed);
      await expectRefused(() => browser.post(encode(xml)), /2 Assertion elements/);
    }
    expect((await database.sql`SELECT 1 FROM users WHERE user_name = 'admin@example.com'`).length).toBe(0);
    await expectSignedIn(await browser.post(encode(signed)));
  });

  it('refuses any DOCTYPE outright, even one that declares nothing', async () => {
    const signed = decode(
      await idp.respond({ nameId: 'doctype@example.com', inResponseTo: await browser.requestId() }),
    );
    await expectRefused(() => browser.post(encode(`<!DOCTYPE samlp:Response>${signed}`)), /DOCTYPE/);
  });

  it('reads attributes into a map without prototypes: __proto__ and constructor are names like any other', async () => {
    const attributes = Object.fromEntries([
      ['__proto__', ['Admins', 'Owners']],
      ['constructor', 'Admins'],
      ['groups', ['Everyone']],
    ]) as Record<string, string | string[]>;
    await expectSignedIn(
      await browser.post(
        await idp.respond({
          nameId: 'proto@example.com',
          inResponseTo: await browser.requestId(),
          attributes,
        }),
      ),
    );
    expect(await groupsOf('proto@example.com')).toEqual(['Everyone:saml']);
    const names = (await database.sql`SELECT display_name FROM groups`).map((r) => r.display_name);
    expect(names).not.toContain('[object Object]');
    expect(names).not.toContain('Admins');
  });

  it('refuses signed claims SCIM would refuse (control or unreadable characters, over-long values); keeps the groups known past 1,000 claimed', async () => {
    const login = async (nameId: string, attributes: Record<string, string | string[]>) =>
      browser.post(await idp.respond({ nameId, inResponseTo: await browser.requestId(), attributes }));
    await expectRefused(
      () => login('eve@example.com', { givenName: 'Eve\u0001' }),
      /given name attribute contains a NUL or control character/,
    );
    await expectRefused(
      () => login('eve@example.com', { groups: ['Ops\u0001'] }),
      /group claim contains a NUL or control character/,
    );
    await expectRefused(() => login('eve\uFFFE@example.com', {}), /NameID contains an unreadable character/);
    await expectRefused(
      () => login('eve@example.com', { groups: ['x'.repeat(513)] }),
      /group claim is longer than 512 characters/,
    );
    // At the limit, all are written; above it, like Entra's overage, the groups known are kept.
    await expectSignedIn(
      await login('eve@example.com', { groups: Array.from({ length: 1_000 }, (_, i) => `g${i}`) }),
    );
    expect(await groupsOf('eve@example.com')).toHaveLength(1_000);
    await expectSignedIn(
      await login('eve@example.com', { groups: Array.from({ length: 1_001 }, (_, i) => `h${i}`) }),
    );
    expect(await groupsOf('eve@example.com')).toHaveLength(1_000);
  });

  it('compares Entra group object ids case-insensitively: an upper-cased GUID keeps the membership', async () => {
    const entra = await createTestIdp(sp, 'https://sts.windows.example.test');
    await database.sql`
      INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates, group_claim_format)
      VALUES (${tenant.id}, ${entra.entityId}, ${`${entra.entityId}/sso`}, ${[entra.certificate]}, 'object-ids')`;
    const guid = '6a1b9c3e-0f4d-4e2a-9b7c-1d2e3f4a5b6c';
    await database.sql`INSERT INTO groups (tenant_id, display_name, external_id) VALUES (${tenant.id}, 'Entra Engineering', ${guid})`;
    const login = async (claimed: string) =>
      browser.post(
        await entra.respond({
          nameId: 'grace@example.com',
          inResponseTo: await browser.requestId(entra.entityId),
          attributes: { [ENTRA_GROUPS]: [claimed] },
        }),
      );
    await expectSignedIn(await login(guid));
    expect(await groupsOf('grace@example.com')).toEqual(['Entra Engineering:saml']);
    await expectSignedIn(await login(guid.toUpperCase()));
    expect(await groupsOf('grace@example.com')).toEqual(['Entra Engineering:saml']);
  });

  it('never removes what SCIM pushed: a login adds and withdraws only what SAML claims granted', async () => {
    const scim = (method: string, path: string, body?: unknown) =>
      fetch(`${publicUrl}/scim/v2${path}`, {
        method,
        headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const user = await (
      await scim('POST', '/Users', {
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
        userName: 'mixed@example.com',
      })
    ).json();
    const finance = await (
      await scim('POST', '/Groups', {
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
        displayName: 'Finance',
        members: [{ value: user.id }],
      })
    ).json();
    const login = async (groups: string[]) =>
      expectSignedIn(
        await browser.post(
          await idp.respond({
            nameId: 'mixed@example.com',
            inResponseTo: await browser.requestId(),
            attributes: { groups },
          }),
        ),
      );
    await login(['Engineering', 'Ops']);
    expect(await groupsOf('mixed@example.com')).toEqual(['Engineering:saml', 'Finance:scim', 'Ops:saml']);
    // SCIM now pushes Ops too: the membership becomes SCIM's.
    const ops = (await database.sql`SELECT id::text FROM groups WHERE display_name = 'Ops'`)[0]!.id;
    const patched = await scim('PATCH', `/Groups/${ops}`, {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
      Operations: [{ op: 'add', path: 'members', value: [{ value: user.id }] }],
    });
    expect(patched.status).toBeLessThan(300);
    await login([]);
    expect(await groupsOf('mixed@example.com')).toEqual(['Finance:scim', 'Ops:scim']);
    expect(finance.id).toBeDefined();
  });

  it('answers a 404 page for an unknown tenant on every SSO page', async () => {
    for (const [method, path] of [
      ['GET', '/sso/nobody/metadata'],
      ['GET', '/sso/nobody/me'],
      ['GET', '/sso/nobody/login'],
      ['POST', '/sso/nobody/acs'],
    ] as const) {
      const response = await fetch(`${publicUrl}${path}`, {
        method,
        redirect: 'manual',
        ...(method === 'POST'
          ? { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'SAMLResponse=x' }
          : {}),
      });
      expect(response.status, path).toBe(404);
      expect(response.headers.get('content-type')).toContain('text/html');
      expect(await response.text()).toContain('Not found');
    }
  });
});
