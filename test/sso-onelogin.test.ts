import { describe, expect, it } from 'vitest';
import { type ConnectionInput, parseIdpMetadata, saveConnection } from '../src/sso/connections.js';
import { isOneLoginEntityId, splitOneLoginGroupValues } from '../src/sso/idp-dialects.js';
import { startSsoTest } from './support/sso-setup.js';

/*
 * OneLogin as a SAML IdP: its metadata (default md namespace, one entity id per app under
 * app.onelogin.com, SSO by Redirect, POST and SOAP on the customer's subdomain, SLO by Redirect), its
 * group parameter (User Roles, semicolon-delimited) and its NameID formats. Assertions come from the
 * samlify test IdP signing as that OneLogin entity.
 */
const APP_ID = '6f3c0b1e-4a7d-4c55-9d0e-0a3f5e1c2b7d';
const ONELOGIN_ENTITY_ID = `https://app.onelogin.com/saml/metadata/${APP_ID}`;
const SUBDOMAIN = 'https://acme-corp.onelogin.com/trust/saml2';

function oneLoginMetadata(certificatePem: string): string {
  const certificate = certificatePem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, '');
  return `<?xml version="1.0"?>
<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="${ONELOGIN_ENTITY_ID}">
  <IDPSSODescriptor xmlns:ds="http://www.w3.org/2000/09/xmldsig#" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
        <ds:X509Data><ds:X509Certificate>${certificate}</ds:X509Certificate></ds:X509Data>
      </ds:KeyInfo>
    </KeyDescriptor>
    <SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="${SUBDOMAIN}/http-redirect/slo/1234567"/>
    <NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</NameIDFormat>
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="${SUBDOMAIN}/http-redirect/sso/${APP_ID}"/>
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="${SUBDOMAIN}/http-post/sso/${APP_ID}"/>
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" Location="${SUBDOMAIN}/soap/sso/${APP_ID}"/>
  </IDPSSODescriptor>
</EntityDescriptor>`;
}

describe('OneLogin SAML dialect', () => {
  it('OneLogin: recognises its entity ids, in the US and EU clouds, and nothing else', () => {
    expect(isOneLoginEntityId(ONELOGIN_ENTITY_ID)).toBe(true);
    expect(isOneLoginEntityId('https://app.eu.onelogin.com/saml/metadata/12345')).toBe(true);
    expect(isOneLoginEntityId('https://app.onelogin.com.evil.test/saml/metadata/1')).toBe(false);
    expect(isOneLoginEntityId('http://www.okta.com/exk1')).toBe(false);
  });

  it('OneLogin: semicolon-delimited User Roles become several groups; other IdPs keep their values', () => {
    const claims = {
      nameId: 'ada@example.com',
      email: undefined,
      givenName: undefined,
      familyName: undefined,
      displayName: undefined,
      groups: { format: 'names' as const, values: ['Engineering; Ops', 'Everyone', 'Ops'] },
      overage: false,
    } as Parameters<typeof splitOneLoginGroupValues>[0];
    expect(splitOneLoginGroupValues(claims, ONELOGIN_ENTITY_ID).groups?.values).toEqual([
      'Engineering',
      'Ops',
      'Everyone',
    ]);
    expect(splitOneLoginGroupValues(claims, 'http://www.okta.com/exk1').groups?.values).toEqual([
      'Engineering; Ops',
      'Everyone',
      'Ops',
    ]);
  });
});

describe('OneLogin as the SAML IdP', async () => {
  const { database, tenant, publicUrl, output, browser, createIdp } = await startSsoTest();
  const idp = await createIdp(ONELOGIN_ENTITY_ID);

  it('imports OneLogin metadata: entity id, the HTTP-Redirect SSO endpoint and the signing certificate', async () => {
    const parsed = parseIdpMetadata(oneLoginMetadata(idp.certificate));
    expect(parsed.idpEntityId).toBe(ONELOGIN_ENTITY_ID);
    expect(parsed.ssoUrl).toBe(`${SUBDOMAIN}/http-redirect/sso/${APP_ID}`);
    expect(parsed.certificates).toHaveLength(1);
    const input: ConnectionInput = {
      ...parsed,
      wantResponseSigned: false,
      groupClaimFormat: 'names',
      attributeMap: {},
      allowedDomains: [],
    };
    await saveConnection(database.db, tenant.id, input);
    const response = await fetch(`${publicUrl}/sso/acme/login`, { redirect: 'manual' });
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toMatch(
      new RegExp(`^${SUBDOMAIN}/http-redirect/sso/${APP_ID}\\?SAMLRequest=`),
    );
  });

  it('signs in with an Email NameID and puts the user in each semicolon-delimited role', async () => {
    const response = await browser.post(
      await idp.respond({
        nameId: 'ada@example.com',
        inResponseTo: await browser.requestId(),
        attributes: { firstName: 'Ada', lastName: 'Lovelace', groups: 'Engineering;Release Managers' },
      }),
    );
    expect(response.status, await response.clone().text()).toBe(303);
    const groups = await database.sql`
      SELECT g.display_name FROM group_members m JOIN groups g ON g.id = m.group_id
      JOIN users u ON u.id = m.user_id WHERE u.user_name = 'ada@example.com' ORDER BY 1`;
    expect(groups.map((g) => g.display_name)).toEqual(['Engineering', 'Release Managers']);
  });

  it('accepts an unspecified or persistent NameID that carries the e-mail', async () => {
    for (const [i, format] of [
      'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
      'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
    ].entries()) {
      const response = await browser.post(
        await idp.respond({
          nameId: `format${i}@example.com`,
          inResponseTo: await browser.requestId(),
          overrides: { NameIDFormat: format },
        }),
      );
      expect(response.status).toBe(303);
    }
  });

  it('refuses a transient NameID and says how to configure OneLogin', async () => {
    const [{ count: before }] = (await database.sql`SELECT count(*)::int AS count FROM users`) as unknown as [
      { count: number },
    ];
    const response = await browser.post(
      await idp.respond({
        nameId: '_9f2c1e7a55b04d',
        inResponseTo: await browser.requestId(),
        overrides: { NameIDFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient' },
      }),
    );
    expect(response.status).toBe(403);
    expect(output()).toContain('the NameID is transient');
    expect(output()).toContain('SAML nameID format');
    const [{ count: after }] = (await database.sql`SELECT count(*)::int AS count FROM users`) as unknown as [
      { count: number },
    ];
    expect(after).toBe(before);
  });
});
