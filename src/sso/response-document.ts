import { DOMParser } from '@xmldom/xmldom';
import { SamlRefusal } from './refusal.js';

/*
 * The first look at a posted SAMLResponse, before any signature is checked: refuse shapes no IdP sends
 * and that only serve attacks, and learn which IdP's keys must verify it and whether the Response
 * element carries its own signature (which must then verify, whatever the connection requires).
 */

export const SAMLP = 'urn:oasis:names:tc:SAML:2.0:protocol';
export const SAML = 'urn:oasis:names:tc:SAML:2.0:assertion';
export const DSIG = 'http://www.w3.org/2000/09/xmldsig#';

/** Bigger than any real response (Entra caps group claims at 150); node-saml parses it again. */
const MAX_RESPONSE_BYTES = 256 * 1024;

export interface ResponseDocument {
  /** The Issuer of the one assertion, unverified: it only chooses whose certificates must verify it. */
  claimedIssuer: string | undefined;
  /** The Response element has a ds:Signature child: it must verify. */
  responseSigned: boolean;
  /** The parsed Response, for the checks after node-saml verified the signatures over the same bytes. */
  response: Element;
}

export function readResponseDocument(samlResponse: string): ResponseDocument {
  const xml = Buffer.from(samlResponse, 'base64').toString('utf8');
  if (xml.length === 0) throw new SamlRefusal('the SAMLResponse is not base64 XML');
  if (xml.length > MAX_RESPONSE_BYTES) throw new SamlRefusal('the SAMLResponse is too large');
  // A DTD can define entities (expansion bombs, external references) and no IdP sends one.
  if (/<!DOCTYPE/i.test(xml)) throw new SamlRefusal('the response has a DOCTYPE');
  // Canonicalisation drops comments, so a comment inside NameID (`admin@x.com<!---->.evil.com`) keeps the
  // signature valid while some parsers read only the text before it. No IdP needs comments.
  if (xml.includes('<!--')) throw new SamlRefusal('the response contains XML comments');
  const errors: string[] = [];
  const document = new DOMParser({
    errorHandler: { warning: () => {}, error: (m) => errors.push(m), fatalError: (m) => errors.push(m) },
  }).parseFromString(xml, 'text/xml') as unknown as Document;
  const response = document.documentElement as Element | null;
  if (errors.length > 0 || !response) throw new SamlRefusal('the response is not well-formed XML');
  if (response.localName !== 'Response' || response.namespaceURI !== SAMLP)
    throw new SamlRefusal('not a SAML Response');
  // Exactly one Assertion in the whole document, wherever it hides (ds:Signature, ds:Object,
  // samlp:Extensions…): a second, unsigned copy is what signature-wrapping attacks plant for a parser
  // that reads a different element than the one whose signature was checked.
  const assertions = document.getElementsByTagNameNS(SAML, 'Assertion');
  if (assertions.length !== 1)
    throw new SamlRefusal(
      `the response has ${assertions.length} Assertion elements; exactly one is accepted`,
    );
  if (document.getElementsByTagNameNS(SAML, 'EncryptedAssertion').length > 0)
    throw new SamlRefusal('encrypted assertions are not accepted');
  const assertion = assertions[0] as Element;
  if (assertion.parentNode !== response)
    throw new SamlRefusal('the Assertion is not a child of the Response');
  return {
    claimedIssuer: childText(assertion, SAML, 'Issuer'),
    responseSigned: children(response, DSIG, 'Signature').length > 0,
    response,
  };
}

export function children(parent: Element, ns: string, name: string): Element[] {
  const found: Element[] = [];
  for (let node = parent.firstChild; node; node = node.nextSibling) {
    const element = node as Element;
    if (node.nodeType === 1 && element.localName === name && element.namespaceURI === ns) found.push(element);
  }
  return found;
}

export function childText(parent: Element, ns: string, name: string): string | undefined {
  return children(parent, ns, name)[0]?.textContent?.trim() || undefined;
}
