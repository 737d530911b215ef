import validator from '@authenio/samlify-xmllint-wasm';
import samlify from 'samlify';
import selfsigned from 'selfsigned';

/*
 * A real SAML identity provider for tests: samlify's IdentityProvider renders and signs every response
 * with a key and certificate generated here. Tests only choose values (NameID, attributes, and for the
 * refusal cases a wrong audience, an old timestamp, SHA-1…); the XML and its signature are samlify's.
 */
samlify.setSchemaValidator(validator);

const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';

export interface TestIdp {
  entityId: string;
  certificate: string;
  /** The IdP's signing key (PEM), for tests that sign other messages as this IdP (Single Logout). */
  privateKey: string;
  /** The IdP's SAML metadata, as samlify publishes it. */
  metadata(): string;
  /** A base64 SAMLResponse for this login. */
  respond(login: {
    nameId: string;
    attributes?: Record<string, string | string[]>;
    inResponseTo?: string;
    /** Replace template values, e.g. Audience or Destination, to build refusal cases. */
    overrides?: Record<string, string>;
    signatureAlgorithm?: string;
    signAssertion?: boolean;
    /** Also sign the Response element (Okta can; Entra signs the assertion only). */
    signResponse?: boolean;
  }): Promise<string>;
}

export async function createTestIdp(
  sp: { entityId: string; acsUrl: string },
  entityId = 'https://idp.example.test',
): Promise<TestIdp> {
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'idsync test IdP' }], {
    keySize: 2048,
    algorithm: 'sha256',
  });
  const provider = (signatureAlgorithm: string) =>
    samlify.IdentityProvider({
      entityID: entityId,
      signingCert: pems.cert,
      privateKey: pems.private,
      isAssertionEncrypted: false,
      singleSignOnService: [
        { Binding: samlify.Constants.namespace.binding.redirect, Location: `${entityId}/sso` },
      ],
      singleLogoutService: [
        { Binding: samlify.Constants.namespace.binding.redirect, Location: `${entityId}/slo` },
      ],
      requestSignatureAlgorithm: signatureAlgorithm,
    });
  const serviceProvider = (signAssertion: boolean, signResponse: boolean) =>
    samlify.ServiceProvider({
      entityID: sp.entityId,
      assertionConsumerService: [{ Binding: samlify.Constants.namespace.binding.post, Location: sp.acsUrl }],
      wantAssertionsSigned: signAssertion,
      wantMessageSigned: signResponse,
    });

  return {
    entityId,
    certificate: pems.cert,
    privateKey: pems.private,
    metadata: () => provider(RSA_SHA256).getMetadata(),
    async respond(login) {
      const idp = provider(login.signatureAlgorithm ?? RSA_SHA256);
      const target = serviceProvider(login.signAssertion ?? true, login.signResponse ?? false);
      const attributes = Object.entries(login.attributes ?? {});
      const values: Record<string, string> = {};
      // One Attribute per name with one AttributeValue per value; samlify escapes every value.
      const statement = attributes.length
        ? `<saml:AttributeStatement>${attributes
            .map(([name, value], i) => {
              const list = Array.isArray(value) ? value : [value];
              list.forEach((v, j) => {
                values[`attr${i}v${j}`] = v;
              });
              return `<saml:Attribute Name="${name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified">${list
                .map((_, j) => `<saml:AttributeValue>{attr${i}v${j}}</saml:AttributeValue>`)
                .join('')}</saml:Attribute>`;
            })
            .join('')}</saml:AttributeStatement>`
        : '';
      const now = new Date();
      const later = new Date(now.getTime() + 5 * 60_000).toISOString();
      const response = await idp.createLoginResponse(
        target,
        { extract: { request: { id: login.inResponseTo ?? '' } } } as never,
        'post',
        { email: login.nameId },
        (template: string) => {
          const withStatement = template.replace(
            '{AttributeStatement}',
            `<saml:AuthnStatement AuthnInstant="${now.toISOString()}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>${statement}`,
          );
          const id = `_${Math.random().toString(36).slice(2)}`;
          const context = samlify.SamlLib.replaceTagsByValue(withStatement, {
            ID: id,
            AssertionID: `_${Math.random().toString(36).slice(2)}`,
            Destination: sp.acsUrl,
            Audience: sp.entityId,
            SubjectRecipient: sp.acsUrl,
            Issuer: entityId,
            IssueInstant: now.toISOString(),
            StatusCode: 'urn:oasis:names:tc:SAML:2.0:status:Success',
            ConditionsNotBefore: now.toISOString(),
            ConditionsNotOnOrAfter: later,
            SubjectConfirmationDataNotOnOrAfter: later,
            NameIDFormat: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
            NameID: login.nameId,
            InResponseTo: login.inResponseTo ?? '',
            AuthnStatement: '',
            ...values,
            ...login.overrides,
          });
          return { id, context };
        },
      );
      return (response as { context: string }).context;
    },
  };
}
