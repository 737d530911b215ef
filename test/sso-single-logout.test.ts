import { describe, expect, it } from 'vitest';
import {
  logoutRequestXml,
  logoutResponseXml,
  postMessage,
  RSA_SHA1,
  readSignedRedirect,
  redirectQuery,
} from './support/logout-messages.js';
import { ssoClient } from './support/sso-client.js';
import { startSsoTest } from './support/sso-setup.js';

/*
 * SAML Single Logout against the real /slo endpoint: logout messages signed as the test IdP (samlify's
 * key), in both bindings; what idsync sends back is checked as an IdP would, with the certificate the SP
 * metadata publishes.
 */
describe('SAML Single Logout', async () => {
  const { database, tenant, publicUrl, output, sp, createIdp } = await startSsoTest({
    config: { secretKey: 'single-logout-test-key-0123456789abcdef' },
  });
  const sloUrl = `${publicUrl}/sso/acme/slo`;
  const idp = await createIdp('https://idp.example.test');
  const other = await createIdp('https://other-idp.example.test');
  for (const each of [idp, other]) {
    await database.sql`
      INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates, slo_url)
      VALUES (${tenant.id}, ${each.entityId}, ${`${each.entityId}/sso`}, ${[each.certificate]}, ${`${each.entityId}/slo`})`;
  }

  const metadata = await (await fetch(`${publicUrl}/sso/acme/metadata`)).text();
  const spCertificate = `-----BEGIN CERTIFICATE-----\n${/<ds:X509Certificate>([^<]+)</.exec(metadata)?.[1]}\n-----END CERTIFICATE-----\n`;

  /** Signs ada in through `through` (SP-initiated) and returns the browser's session cookie. */
  const signIn = async (nameId: string, through = idp) => {
    const browser = ssoClient(publicUrl, 'acme');
    const response = await browser.post(
      await through.respond({ nameId, inResponseTo: await browser.requestId(through.entityId) }),
    );
    expect(response.status).toBe(303);
    return response.headers.get('set-cookie')!.split(';')[0]!;
  };
  const signedIn = async (cookie: string) =>
    (await fetch(`${publicUrl}/sso/acme/me`, { headers: { Cookie: cookie }, redirect: 'manual' })).status ===
    200;

  it('publishes the SP signing certificate and SingleLogoutService in both bindings', () => {
    expect(metadata).toContain('<md:KeyDescriptor use="signing">');
    expect(metadata).toContain(
      `<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="${sloUrl}"/>`,
    );
    expect(metadata).toContain(
      `<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="${sloUrl}"/>`,
    );
    expect(metadata.indexOf('SingleLogoutService')).toBeLessThan(
      metadata.indexOf('AssertionConsumerService'),
    );
  });

  it('IdP-initiated, HTTP-Redirect: ends the session and answers with a signed LogoutResponse', async () => {
    const cookie = await signIn('ada@example.com');
    expect(await signedIn(cookie)).toBe(true);
    const request = logoutRequestXml(idp, sloUrl, { nameId: 'ADA@example.com' });
    const response = await fetch(
      `${sloUrl}?${redirectQuery(idp, 'SAMLRequest', request, { relayState: 'r1' })}`,
      {
        redirect: 'manual',
      },
    );
    expect(response.status).toBe(302);
    const location = response.headers.get('location')!;
    expect(location.startsWith(`${idp.entityId}/slo?`)).toBe(true);
    const answer = readSignedRedirect(location, spCertificate);
    expect(answer).toMatchObject({ kind: 'SAMLResponse', signatureValid: true });
    expect(answer.sigAlg).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    expect(answer.xml).toContain('urn:oasis:names:tc:SAML:2.0:status:Success');
    expect(new URL(location).searchParams.get('RelayState')).toBe('r1');
    expect(await signedIn(cookie)).toBe(false);
    const [audit] =
      await database.sql`SELECT after FROM audit_log WHERE action = 'saml.logout' ORDER BY id DESC LIMIT 1`;
    expect(audit?.after).toMatchObject({ idp: idp.entityId, sessionsEnded: 1 });
  });

  it('IdP-initiated, HTTP-POST: a signed LogoutRequest in the form body ends the session', async () => {
    const cookie = await signIn('grace@example.com');
    const response = await fetch(sloUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        SAMLRequest: postMessage(idp, logoutRequestXml(idp, sloUrl, { nameId: 'grace@example.com' })),
      }).toString(),
      redirect: 'manual',
    });
    expect(response.status).toBe(302);
    expect(readSignedRedirect(response.headers.get('location')!, spCertificate).signatureValid).toBe(true);
    expect(await signedIn(cookie)).toBe(false);
  });

  it('refuses unsigned, SHA-1, forged and foreign logout requests, and ends nothing', async () => {
    const cookie = await signIn('alan@example.com');
    const request = () => logoutRequestXml(idp, sloUrl, { nameId: 'alan@example.com' });
    const refusedGet = async (query: string, reason: string) => {
      const response = await fetch(`${sloUrl}?${query}`, { redirect: 'manual' });
      expect(response.status).toBe(403);
      expect(output()).toContain(reason);
      expect(await signedIn(cookie)).toBe(true);
    };
    await refusedGet(
      redirectQuery(idp, 'SAMLRequest', request(), { sigAlg: null }),
      'the logout message is not signed',
    );
    await refusedGet(
      redirectQuery(idp, 'SAMLRequest', request(), { sigAlg: RSA_SHA1 }),
      'RSA-SHA256 or stronger',
    );
    // Signed with another IdP's key while claiming to be this IdP.
    await refusedGet(
      redirectQuery({ entityId: idp.entityId, privateKey: other.privateKey }, 'SAMLRequest', request()),
      'invalid signature on the HTTP-Redirect query',
    );
    // A POST whose signed XML was altered after signing.
    const tampered = Buffer.from(postMessage(idp, request()), 'base64')
      .toString()
      .replace('alan@example.com', 'grace@example.com');
    const post = await fetch(sloUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ SAMLRequest: Buffer.from(tampered).toString('base64') }).toString(),
      redirect: 'manual',
    });
    expect(post.status).toBe(403);
    // Another configured IdP, correctly signed, cannot end a session this IdP started.
    const foreign = logoutRequestXml(other, sloUrl, { nameId: 'alan@example.com' });
    const response = await fetch(`${sloUrl}?${redirectQuery(other, 'SAMLRequest', foreign)}`, {
      redirect: 'manual',
    });
    expect(response.status).toBe(302);
    expect(await signedIn(cookie)).toBe(true);
  });

  it('refuses a captured signature vouching for another message, a replay, another Destination and an old message', async () => {
    let cookie = await signIn('victim@example.com');
    // Each refusal's reason is looked for in what the log gained during that request only; the
    // victim's current session survives it.
    const refusedGet = async (query: string, reason: string) => {
      const logged = output().length;
      const response = await fetch(`${sloUrl}?${query}`, { redirect: 'manual' });
      expect(response.status, reason).toBe(403);
      expect(output().slice(logged)).toContain(reason);
      expect(await signedIn(cookie)).toBe(true);
    };
    // What any employee holds: a signed LogoutResponse the IdP sent through their own browser.
    const captured = redirectQuery(idp, 'SAMLResponse', logoutResponseXml(idp, sloUrl, '_theirs'));
    const forged = redirectQuery(
      idp,
      'SAMLRequest',
      logoutRequestXml(idp, sloUrl, { nameId: 'victim@example.com' }),
      {
        sigAlg: null,
      },
    ).slice('SAMLRequest='.length);
    await refusedGet(`SAML%52equest=${forged}&${captured}`, 'spells the parameter SAMLRequest');
    await refusedGet(`samlrequest=${forged}&${captured}`, 'spells the parameter SAMLRequest');
    // A signed request of the attacker's own, and an unsigned one beside it (hidden past the 1,000
    // parameters a query parser reads, or not).
    const own = redirectQuery(
      idp,
      'SAMLRequest',
      logoutRequestXml(idp, sloUrl, { nameId: 'mallory@example.com' }),
    );
    await refusedGet(`${own}&SAMLRequest=${forged}`, 'repeats the parameter SAMLRequest');
    await refusedGet(
      `SAMLRequest=${forged}&${'x=1&'.repeat(1001)}${own}`,
      'repeats the parameter SAMLRequest',
    );

    // A signed request ends the sessions once; replayed after the user signed in again, it ends nothing.
    const real = redirectQuery(
      idp,
      'SAMLRequest',
      logoutRequestXml(idp, sloUrl, { nameId: 'victim@example.com' }),
    );
    expect((await fetch(`${sloUrl}?${real}`, { redirect: 'manual' })).status).toBe(302);
    expect(await signedIn(cookie)).toBe(false);
    cookie = await signIn('victim@example.com');
    await refusedGet(real, 'the LogoutRequest was already used');

    const signed = (xml: string) => redirectQuery(idp, 'SAMLRequest', xml);
    const toVictim = () => logoutRequestXml(idp, sloUrl, { nameId: 'victim@example.com' });
    await refusedGet(
      signed(logoutRequestXml(idp, `${publicUrl}/sso/other/slo`, { nameId: 'victim@example.com' })),
      "not to this tenant's",
    );
    await refusedGet(signed(toVictim().replace(/ Destination="[^"]*"/, '')), 'names no Destination');
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
    await refusedGet(
      signed(toVictim().replace(/IssueInstant="[^"]*"/, `IssueInstant="${hourAgo}"`)),
      'too old',
    );
    await refusedGet(
      signed(
        toVictim().replace(
          /NotOnOrAfter="[^"]*"/,
          `NotOnOrAfter="${new Date(Date.now() - 120_000).toISOString()}"`,
        ),
      ),
      'has expired',
    );
  });

  it('SP-initiated: signing out sends a signed LogoutRequest to the IdP, whose signed answer is accepted once', async () => {
    const cookie = await signIn('joan@example.com');
    const logout = await fetch(`${publicUrl}/sso/acme/logout`, {
      method: 'POST',
      headers: { Cookie: cookie },
      redirect: 'manual',
    });
    expect(logout.status).toBe(303);
    expect(await signedIn(cookie)).toBe(false);
    const sent = readSignedRedirect(logout.headers.get('location')!, spCertificate);
    expect(logout.headers.get('location')!.startsWith(`${idp.entityId}/slo?`)).toBe(true);
    expect(sent).toMatchObject({ kind: 'SAMLRequest', signatureValid: true });
    expect(sent.xml).toContain('joan@example.com</saml:NameID>');
    expect(sent.xml).toContain(
      `<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">${sp.entityId}</saml:Issuer>`,
    );
    const requestId = /ID="([^"]+)"/.exec(sent.xml)![1]!;

    const answer = redirectQuery(idp, 'SAMLResponse', logoutResponseXml(idp, sloUrl, requestId));
    const done = await fetch(`${sloUrl}?${answer}`, { redirect: 'manual' });
    expect(done.status).toBe(200);
    expect(await done.text()).toContain('signed out of idsync and of your identity provider');
    const again = await fetch(`${sloUrl}?${answer}`, { redirect: 'manual' });
    expect(again.status).toBe(403);
    expect(output()).toContain('answers no logout idsync sent');
  });

  it('SP-initiated, HTTP-POST answer: a LogoutResponse signed in the XML is accepted; one from another IdP is not', async () => {
    const cookie = await signIn('mary@example.com');
    const logout = await fetch(`${publicUrl}/sso/acme/logout`, {
      method: 'POST',
      headers: { Cookie: cookie },
      redirect: 'manual',
    });
    const requestId = /ID="([^"]+)"/.exec(
      readSignedRedirect(logout.headers.get('location')!, spCertificate).xml,
    )![1]!;
    const postAnswer = (from: typeof idp) =>
      fetch(sloUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          SAMLResponse: postMessage(from, logoutResponseXml(from, sloUrl, requestId)),
        }).toString(),
        redirect: 'manual',
      });
    expect((await postAnswer(other)).status).toBe(403);
    expect((await postAnswer(idp)).status).toBe(200);
  });
});
