import { DOMParser } from '@xmldom/xmldom';

/*
 * What @node-saml/node-saml 5.1.0 does not check and idsync must (see shared/guides/architecture.md):
 * the Response Destination, the SubjectConfirmationData Recipient, the assertion Issuer, a non-Success
 * status beside a signed assertion, and the signature and digest algorithms (it accepts RSA-SHA1).
 * These run on XML node-saml has already validated: the signed assertion it extracted, and the response.
 */

export class SamlRefusal extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'SamlRefusal';
  }
}

const SAMLP = 'urn:oasis:names:tc:SAML:2.0:protocol';
const SAML = 'urn:oasis:names:tc:SAML:2.0:assertion';
const DSIG = 'http://www.w3.org/2000/09/xmldsig#';
const SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';
const WEAK_ALGORITHMS = [
  'http://www.w3.org/2000/09/xmldsig#rsa-sha1',
  'http://www.w3.org/2000/09/xmldsig#dsa-sha1',
  'http://www.w3.org/2000/09/xmldsig#sha1',
];

function parse(xml: string): Document {
  return new DOMParser().parseFromString(xml, 'text/xml') as unknown as Document;
}

function only(parent: Document | Element, ns: string, name: string): Element | undefined {
  const found = parent.getElementsByTagNameNS(ns, name);
  return found.length > 0 ? (found[0] as Element) : undefined;
}

export interface AssertionFacts {
  id: string;
  /** When the assertion stops being usable: the replay cache keeps its id until then. */
  notOnOrAfter: Date | undefined;
}

export function checkResponse(
  responseXml: string,
  assertionXml: string,
  expected: { acsUrl: string; idpEntityId: string },
): AssertionFacts {
  // Canonicalisation drops comments, so a comment inside NameID (`admin@x.com<!---->.evil.com`) keeps the
  // signature valid while some parsers read only the text before it. No IdP needs comments: refuse them.
  if (responseXml.includes('<!--') || assertionXml.includes('<!--'))
    throw new SamlRefusal('the response contains XML comments');
  const response = parse(responseXml).documentElement as unknown as Element;
  if (response.localName !== 'Response' || response.namespaceURI !== SAMLP)
    throw new SamlRefusal('not a SAML Response');
  const destination = response.getAttribute('Destination');
  if (destination !== expected.acsUrl) {
    throw new SamlRefusal(
      `Response Destination ${destination ? `"${destination}"` : 'is missing'}; expected our ACS URL`,
    );
  }
  const statusCode = only(response, SAMLP, 'StatusCode')?.getAttribute('Value');
  if (statusCode !== SUCCESS) throw new SamlRefusal(`IdP status is ${statusCode ?? 'missing'}, not Success`);

  const assertion = parse(assertionXml).documentElement as unknown as Element;
  const issuer = only(assertion, SAML, 'Issuer')?.textContent?.trim();
  if (issuer !== expected.idpEntityId) {
    throw new SamlRefusal(`assertion Issuer "${issuer ?? ''}" is not the configured IdP`);
  }
  const confirmation = only(assertion, SAML, 'SubjectConfirmationData');
  if (confirmation?.getAttribute('Recipient') !== expected.acsUrl) {
    throw new SamlRefusal('SubjectConfirmationData Recipient is not our ACS URL');
  }
  for (const document of [assertion, response]) {
    for (const tag of ['SignatureMethod', 'DigestMethod']) {
      const nodes = document.getElementsByTagNameNS(DSIG, tag);
      for (let i = 0; i < nodes.length; i++) {
        const algorithm = (nodes[i] as Element).getAttribute('Algorithm') ?? '';
        if (WEAK_ALGORITHMS.includes(algorithm))
          throw new SamlRefusal(`signature uses ${algorithm}; SHA-256 or stronger is required`);
      }
    }
  }
  const id = assertion.getAttribute('ID');
  if (!id) throw new SamlRefusal('assertion has no ID');
  const notOnOrAfter =
    confirmation?.getAttribute('NotOnOrAfter') ??
    only(assertion, SAML, 'Conditions')?.getAttribute('NotOnOrAfter');
  return { id, notOnOrAfter: notOnOrAfter ? new Date(notOnOrAfter) : undefined };
}
