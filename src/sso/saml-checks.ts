import { DOMParser } from '@xmldom/xmldom';
import { SamlRefusal } from './refusal.js';
import { children, childText, DSIG, SAML, SAMLP } from './response-document.js';

/*
 * What @node-saml/node-saml 5.1.0 does not check and idsync must (see shared/guides/architecture.md),
 * run on XML node-saml has already validated: the signed assertion it extracted, and the response.
 *
 * Only signed content decides a login. When the Response element is not signed (Entra's default) its
 * Destination, InResponseTo and Status are the attacker's to write, so InResponseTo, Recipient and the
 * time bounds are taken from the signed assertion's bearer SubjectConfirmationData; an InResponseTo on
 * an unsigned Response that the assertion does not carry is refused rather than believed.
 */

const SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';
const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';
const WEAK_ALGORITHMS = [
  'http://www.w3.org/2000/09/xmldsig#rsa-sha1',
  'http://www.w3.org/2000/09/xmldsig#dsa-sha1',
  'http://www.w3.org/2000/09/xmldsig#sha1',
];
/** No tenant may accept an assertion older than this, so no assertion id needs remembering longer. */
export const MAX_ASSERTION_AGE_LIMIT_MS = 24 * 3600_000;

function parseElement(xml: string): Element {
  return (new DOMParser().parseFromString(xml, 'text/xml') as unknown as Document)
    .documentElement as unknown as Element;
}

function instant(value: string | null | undefined, what: string): Date | undefined {
  if (!value) return undefined;
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) throw new SamlRefusal(`${what} is not a date and time`);
  return at;
}

export interface SignedAssertion {
  element: Element;
  id: string;
  issuer: string | undefined;
  issueInstant: Date;
  /** Until when this assertion could be accepted by any rule: its id is remembered that long. */
  usableUntil: Date;
}

/** Reads the identity of an assertion node-saml verified; enough to record it as used at once. */
export function readSignedAssertion(assertionXml: string): SignedAssertion {
  const element = parseElement(assertionXml);
  if (element.localName !== 'Assertion' || element.namespaceURI !== SAML)
    throw new SamlRefusal('the signed content is not an Assertion');
  const id = element.getAttribute('ID');
  if (!id) throw new SamlRefusal('the assertion has no ID');
  const issueInstant = instant(element.getAttribute('IssueInstant'), 'assertion IssueInstant');
  if (!issueInstant) throw new SamlRefusal('the assertion has no IssueInstant');
  // The latest NotOnOrAfter anywhere in it (Conditions, every SubjectConfirmationData), bounded by the
  // longest maximum age a tenant may set: after that no rule can accept it again.
  let latest = 0;
  const all = element.getElementsByTagNameNS('*', '*');
  for (let i = 0; i < all.length; i++) {
    const at = instant((all[i] as Element).getAttribute('NotOnOrAfter'), 'NotOnOrAfter');
    if (at && at.getTime() > latest) latest = at.getTime();
  }
  const limit = issueInstant.getTime() + MAX_ASSERTION_AGE_LIMIT_MS;
  return {
    element,
    id,
    issuer: childText(element, SAML, 'Issuer'),
    issueInstant,
    usableUntil: new Date(latest > 0 ? Math.min(latest, limit) : limit),
  };
}

export interface Expectations {
  acsUrl: string;
  idpEntityId: string;
  /** The Response element's own signature was present and node-saml verified it. */
  responseSigned: boolean;
  now: Date;
  skewMs: number;
  maxAgeMs: number;
}

export interface CheckedLogin {
  /** The AuthnRequest this answers, from signed content only; undefined: IdP-initiated (unsolicited). */
  inResponseTo: string | undefined;
}

/** `response` is the Response element readResponseDocument parsed from the bytes node-saml verified. */
export function checkLogin(
  response: Element,
  assertion: SignedAssertion,
  expected: Expectations,
): CheckedLogin {
  for (const element of [assertion.element, response]) rejectWeakAlgorithms(element);

  if (assertion.issuer !== expected.idpEntityId)
    throw new SamlRefusal(
      `assertion Issuer "${assertion.issuer ?? ''}" is not the configured IdP`,
      'wrong-issuer',
    );
  const now = expected.now.getTime();
  if (assertion.issueInstant.getTime() > now + expected.skewMs)
    throw new SamlRefusal('the assertion was issued in the future', 'not-yet-valid');
  if (now - assertion.issueInstant.getTime() > expected.maxAgeMs + expected.skewMs)
    throw new SamlRefusal(
      `the assertion was issued ${Math.round((now - assertion.issueInstant.getTime()) / 1000)} s ago; this tenant accepts ${expected.maxAgeMs / 1000} s at most`,
      'expired',
    );

  const confirmation = bearerConfirmation(assertion.element);
  if (confirmation.getAttribute('Recipient') !== expected.acsUrl)
    throw new SamlRefusal('SubjectConfirmationData Recipient is not our ACS URL', 'wrong-recipient');
  const notOnOrAfter = instant(
    confirmation.getAttribute('NotOnOrAfter'),
    'SubjectConfirmationData NotOnOrAfter',
  );
  if (!notOnOrAfter) throw new SamlRefusal('SubjectConfirmationData has no NotOnOrAfter');
  if (now >= notOnOrAfter.getTime() + expected.skewMs)
    throw new SamlRefusal(
      'SubjectConfirmationData NotOnOrAfter has passed (the assertion expired)',
      'expired',
    );
  const notBefore = instant(confirmation.getAttribute('NotBefore'), 'SubjectConfirmationData NotBefore');
  if (notBefore && now < notBefore.getTime() - expected.skewMs)
    throw new SamlRefusal('SubjectConfirmationData NotBefore is in the future', 'not-yet-valid');

  // The envelope: checked always, but only decisive when signed (see the comment at the top).
  const destination = response.getAttribute('Destination');
  if (destination !== expected.acsUrl)
    throw new SamlRefusal(
      `Response Destination ${destination ? `"${destination}"` : 'is missing'}; expected our ACS URL`,
      'wrong-recipient',
    );
  const status = children(response, SAMLP, 'Status')[0];
  const statusCode = status ? children(status, SAMLP, 'StatusCode')[0]?.getAttribute('Value') : undefined;
  if (statusCode !== SUCCESS)
    throw new SamlRefusal(`IdP status is ${statusCode ?? 'missing'}, not Success`, 'idp-status');

  const signedInResponseTo = confirmation.getAttribute('InResponseTo') || undefined;
  const envelopeInResponseTo = response.getAttribute('InResponseTo') || undefined;
  if (envelopeInResponseTo !== undefined && signedInResponseTo !== undefined) {
    if (envelopeInResponseTo !== signedInResponseTo)
      throw new SamlRefusal('the Response and the assertion answer different requests (InResponseTo)');
  } else if (envelopeInResponseTo !== undefined && !expected.responseSigned) {
    throw new SamlRefusal(
      'InResponseTo is on the unsigned Response only; the signed assertion does not carry it',
    );
  }
  return { inResponseTo: signedInResponseTo ?? envelopeInResponseTo };
}

/** The one bearer SubjectConfirmation's data (Web Browser SSO profile: at least one; we accept one). */
function bearerConfirmation(assertion: Element): Element {
  const subject = children(assertion, SAML, 'Subject')[0];
  const bearers = subject
    ? children(subject, SAML, 'SubjectConfirmation').filter((c) => c.getAttribute('Method') === BEARER)
    : [];
  if (bearers.length !== 1)
    throw new SamlRefusal(
      `the assertion has ${bearers.length} bearer SubjectConfirmations; exactly one is accepted`,
    );
  const data = children(bearers[0]!, SAML, 'SubjectConfirmationData')[0];
  if (!data) throw new SamlRefusal('the bearer SubjectConfirmation has no SubjectConfirmationData');
  return data;
}

function rejectWeakAlgorithms(element: Element): void {
  for (const tag of ['SignatureMethod', 'DigestMethod']) {
    const nodes = element.getElementsByTagNameNS(DSIG, tag);
    for (let i = 0; i < nodes.length; i++) {
      const algorithm = (nodes[i] as Element).getAttribute('Algorithm') ?? '';
      if (WEAK_ALGORITHMS.includes(algorithm))
        throw new SamlRefusal(
          `signature uses ${algorithm}; SHA-256 or stronger is required`,
          'weak-algorithm',
        );
    }
  }
}
