import { createVerify, randomBytes, sign } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { signXml } from '@node-saml/node-saml/lib/xml.js';

/*
 * SAML logout messages as an IdP sends them (SAML 2.0 Bindings §3.4.4.1 for HTTP-Redirect: the signature
 * covers `SAMLRequest=…&RelayState=…&SigAlg=…` as sent; §3.5 for HTTP-POST: an enveloped XML signature),
 * signed with the test IdP's key, and the checks an IdP makes on what idsync sends back.
 */

export const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
export const RSA_SHA1 = 'http://www.w3.org/2000/09/xmldsig#rsa-sha1';

export interface SigningIdp {
  entityId: string;
  privateKey: string;
}

const now = () => new Date().toISOString();
const later = () => new Date(Date.now() + 5 * 60_000).toISOString();
const newId = () => `_${randomBytes(16).toString('hex')}`;

export function logoutRequestXml(
  idp: SigningIdp,
  to: string,
  login: { nameId: string; sessionIndex?: string },
): string {
  return (
    `<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ` +
    `ID="${newId()}" Version="2.0" IssueInstant="${now()}" Destination="${to}" NotOnOrAfter="${later()}">` +
    `<saml:Issuer>${idp.entityId}</saml:Issuer>` +
    `<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${login.nameId}</saml:NameID>` +
    (login.sessionIndex ? `<samlp:SessionIndex>${login.sessionIndex}</samlp:SessionIndex>` : '') +
    '</samlp:LogoutRequest>'
  );
}

export function logoutResponseXml(idp: SigningIdp, to: string, inResponseTo: string): string {
  return (
    `<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ` +
    `ID="${newId()}" Version="2.0" IssueInstant="${now()}" Destination="${to}" InResponseTo="${inResponseTo}">` +
    `<saml:Issuer>${idp.entityId}</saml:Issuer>` +
    '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>' +
    '</samlp:LogoutResponse>'
  );
}

/** The query string of an HTTP-Redirect message; `sigAlg: null` leaves it unsigned. */
export function redirectQuery(
  idp: SigningIdp,
  kind: 'SAMLRequest' | 'SAMLResponse',
  xml: string,
  options: { sigAlg?: string | null; relayState?: string } = {},
): string {
  const sigAlg = options.sigAlg === undefined ? RSA_SHA256 : options.sigAlg;
  let query = `${kind}=${encodeURIComponent(deflateRawSync(Buffer.from(xml)).toString('base64'))}`;
  if (options.relayState) query += `&RelayState=${encodeURIComponent(options.relayState)}`;
  if (sigAlg === null) return query;
  query += `&SigAlg=${encodeURIComponent(sigAlg)}`;
  const hash = sigAlg === RSA_SHA1 ? 'sha1' : 'sha256';
  return `${query}&Signature=${encodeURIComponent(sign(hash, Buffer.from(query), idp.privateKey).toString('base64'))}`;
}

/** The base64 body field of an HTTP-POST message, signed in the XML. */
export function postMessage(idp: SigningIdp, xml: string): string {
  const root = xml.startsWith('<samlp:LogoutRequest') ? 'LogoutRequest' : 'LogoutResponse';
  const signed = signXml(
    xml,
    `/*[local-name(.)='${root}']`,
    { reference: `/*[local-name(.)='${root}']/*[local-name(.)='Issuer']`, action: 'after' },
    { privateKey: idp.privateKey, signatureAlgorithm: 'sha256', digestAlgorithm: 'sha256' },
  );
  return Buffer.from(signed).toString('base64');
}

/** What an IdP checks on a message idsync redirects to it: the query signature, with the SP's certificate. */
export function readSignedRedirect(
  location: string,
  spCertificate: string,
): { kind: 'SAMLRequest' | 'SAMLResponse'; xml: string; signatureValid: boolean; sigAlg: string | null } {
  const url = new URL(location);
  const raw = url.search.slice(1).split('&');
  const kind = raw.some((p) => p.startsWith('SAMLRequest=')) ? 'SAMLRequest' : 'SAMLResponse';
  const pick = (name: string) => raw.find((p) => p.startsWith(`${name}=`));
  const signedPart = [pick(kind), pick('RelayState'), pick('SigAlg')].filter(Boolean).join('&');
  const signature = url.searchParams.get('Signature');
  const signatureValid =
    signature !== null &&
    createVerify('RSA-SHA256').update(signedPart).verify(spCertificate, Buffer.from(signature, 'base64'));
  const xml = inflateRawSync(Buffer.from(url.searchParams.get(kind)!, 'base64')).toString();
  return { kind, xml, signatureValid, sigAlg: url.searchParams.get('SigAlg') };
}
