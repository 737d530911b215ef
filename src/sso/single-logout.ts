import { randomBytes, verify as verifySignature } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { type Profile, SAML, ValidateInResponseTo } from '@node-saml/node-saml';
import { validateSignature } from '@node-saml/node-saml/lib/xml.js';
import { DOMParser } from '@xmldom/xmldom';
import { sql } from 'drizzle-orm';
import type { Request, Response } from 'express';
import type { Redis } from 'ioredis';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { escapeHtml, htmlPage } from '../http/html.js';
import { parseCredential, secretMatches } from '../security/credentials.js';
import type { SecretBox } from '../security/secret-box.js';
import type { Tenant } from '../tenants/tenants.js';
import { type Connection, findConnection, toPem } from './connections.js';
import { SamlRefusal } from './refusal.js';
import { children, childText, DSIG, SAML as SAML_NS, SAMLP } from './response-document.js';
import { CLOCK_SKEW_MS, serviceProviderUrls } from './service-provider.js';
import { clearSessionCookie, readCookie, type SamlSessionLink, SESSION_COOKIE } from './sessions.js';
import { spCertificate, spSigningKey } from './sp-signing-key.js';

/*
 * SAML Single Logout (SAML 2.0 Profiles §4.4) with the IdP a session came from, at `/sso/<tenant>/slo`:
 *
 * - IdP-initiated: the IdP sends a signed LogoutRequest (HTTP-Redirect or HTTP-POST); idsync verifies it
 *   with that IdP's certificates, ends the sessions that IdP started for that NameID (and SessionIndex, when
 *   given) and answers with a signed LogoutResponse (HTTP-Redirect).
 * - SP-initiated: signing out of idsync ends the session and sends the browser to the IdP with a signed
 *   LogoutRequest naming the NameID and SessionIndex of the login; the IdP's LogoutResponse (either
 *   binding) must be signed by that IdP and answer a request idsync sent, once.
 *
 * node-saml builds, signs and verifies the messages. It accepts an unsigned HTTP-Redirect message and
 * RSA-SHA1, so this module first requires a signature and a SHA-2 algorithm. It also finds the signed
 * parts of a Redirect query by a substring match on the raw query while the message it reads comes from
 * the parsed one: a percent-encoded or repeated `SAMLRequest` let a captured signature vouch for another
 * message. So this module reads the Redirect parameters from the raw query itself, each once and spelled
 * as is, verifies the signature over exactly those bytes, and hands node-saml only them. A logout message
 * must name this endpoint as its Destination, be recent, and (a LogoutRequest) is used once. Sessions are
 * linked to their login in saml_sessions, so only the IdP that started a session can end it.
 */

const LOGOUT_REQUEST_TTL_MS = 10 * 60_000;
/** How old a logout message from the IdP may be (its IssueInstant), beside the clock skew. */
const LOGOUT_MESSAGE_MAX_AGE_MS = 10 * 60_000;
const MAX_MESSAGE_BYTES = 64 * 1024;
const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
const SHA2_SIGNATURES = new Map([
  ['http://www.w3.org/2001/04/xmldsig-more#rsa-sha256', 'sha256'],
  ['http://www.w3.org/2001/04/xmldsig-more#rsa-sha384', 'sha384'],
  ['http://www.w3.org/2001/04/xmldsig-more#rsa-sha512', 'sha512'],
]);

export interface SingleLogoutOptions {
  db: Database;
  redis: Redis;
  publicUrl: string;
  /** Opens the SP signing key; undefined when no key is configured (SLO is then not offered). */
  secretBox: SecretBox | undefined;
}

export function singleLogoutUrl(publicUrl: string, tenant: Pick<Tenant, 'name'>): string {
  return `${serviceProviderUrls(publicUrl, tenant).entityId}/slo`;
}

/** Which IdP login a new session comes from: NameID, its format, and the SessionIndex. */
export function samlSessionLink(
  connection: Pick<Connection, 'id'>,
  assertion: Element,
): SamlSessionLink | undefined {
  const subject = children(assertion, SAML_NS, 'Subject')[0];
  const nameIdElement = subject ? children(subject, SAML_NS, 'NameID')[0] : undefined;
  const nameId = nameIdElement?.textContent?.trim();
  if (!nameId) return undefined;
  return {
    connectionId: connection.id,
    nameId,
    nameIdFormat: nameIdElement?.getAttribute('Format') || null,
    sessionIndex: children(assertion, SAML_NS, 'AuthnStatement')[0]?.getAttribute('SessionIndex') || null,
  };
}

/**
 * What the SP metadata adds for Single Logout: the signing certificate and the SLO endpoint in both
 * bindings. Empty when no signing key can be opened.
 */
export async function singleLogoutMetadata(options: SingleLogoutOptions, tenant: Tenant): Promise<string> {
  if (!options.secretBox) return '';
  await spSigningKey(options.db, options.secretBox, tenant.id);
  const certificate = await spCertificate(options.db, tenant.id);
  const body = certificate!.replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, '');
  const location = escapeHtml(singleLogoutUrl(options.publicUrl, tenant));
  return (
    `<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="${DSIG}"><ds:X509Data><ds:X509Certificate>${body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>` +
    `<md:SingleLogoutService Binding="${REDIRECT}" Location="${location}"/>` +
    `<md:SingleLogoutService Binding="${POST}" Location="${location}"/>`
  );
}

/**
 * SP-initiated: where to send the browser after its idsync session `tokenId` ended, so the IdP ends its
 * session too; undefined when the session did not come from an IdP that does Single Logout.
 */
export async function spInitiatedLogoutUrl(
  options: SingleLogoutOptions,
  tenant: Tenant,
  sessionTokenId: string,
): Promise<string | undefined> {
  if (!options.secretBox) return undefined;
  const [link] = await options.db.execute<{
    connection_id: string;
    name_id: string;
    name_id_format: string | null;
    session_index: string | null;
    idp_entity_id: string;
  }>(sql`
    SELECT s.connection_id::text, s.name_id, s.name_id_format, s.session_index, c.idp_entity_id
    FROM saml_sessions s JOIN sso_connections c ON c.id = s.connection_id
    WHERE s.token_id = ${sessionTokenId} AND s.tenant_id = ${tenant.id} AND c.slo_url IS NOT NULL`);
  if (!link) return undefined;
  // One logout per login: a browser coming back with the same cookie is not sent to the IdP again.
  await options.db.execute(sql`DELETE FROM saml_sessions WHERE token_id = ${sessionTokenId}`);
  const connection = await findConnection(options.db, tenant.id, link.idp_entity_id);
  if (!connection?.sloUrl) return undefined;
  const requestId = `_${randomBytes(20).toString('hex')}`;
  await options.redis.set(pendingKey(tenant.id, requestId), connection.id, 'PX', LOGOUT_REQUEST_TTL_MS);
  const saml = await logoutSaml(options, tenant, connection, requestId);
  const profile = {
    issuer: connection.idpEntityId,
    nameID: link.name_id,
    nameIDFormat: link.name_id_format ?? 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
    ...(link.session_index ? { sessionIndex: link.session_index } : {}),
  } as Profile;
  return saml.getLogoutUrlAsync(profile, '', {});
}

/**
 * A browser still holding the session of a user the IdP offboarded through SCIM (deactivated or
 * deleted): where to send it so the IdP's own session of that login ends too, when the IdP does Single
 * Logout. SCIM reaches idsync without the browser, so the IdP session ends at the browser's next visit.
 */
export async function offboardedUserLogoutUrl(
  options: SingleLogoutOptions,
  tenant: Tenant,
  req: Request,
): Promise<string | undefined> {
  const token = readCookie(req, SESSION_COOKIE);
  const parsed = token ? parseCredential(token) : undefined;
  if (parsed?.kind !== 'sess' || !options.secretBox) return undefined;
  const [row] = await options.db.execute<{ id: string; secret_hash: string }>(sql`
    SELECT t.id::text, t.secret_hash FROM tokens t
    JOIN users u ON u.id = t.user_id
    JOIN saml_sessions s ON s.token_id = t.id
    WHERE t.token_id = ${parsed.tokenId} AND t.tenant_id = ${tenant.id} AND t.kind = 'session'
      AND (NOT u.active OR u.deprovisioned_at IS NOT NULL)`);
  if (!row || !secretMatches(parsed.secret, row.secret_hash)) return undefined;
  return spInitiatedLogoutUrl(options, tenant, row.id);
}

/** `GET|POST /sso/<tenant>/slo`: a LogoutRequest from the IdP, or its LogoutResponse to ours. */
export async function handleSingleLogout(
  options: SingleLogoutOptions,
  req: Request,
  res: Response,
  tenant: Tenant,
): Promise<void> {
  if (!options.secretBox) throw new SamlRefusal('Single Logout needs IDSYNC_SECRET_KEY (no SP signing key)');
  const binding = req.method === 'GET' ? 'redirect' : 'post';
  const queryStart = req.originalUrl.indexOf('?');
  const rawQuery = queryStart < 0 ? '' : req.originalUrl.slice(queryStart + 1);
  const redirect = binding === 'redirect' ? readRedirectQuery(rawQuery) : undefined;
  const params = (redirect ? redirect.values : req.body) as Record<string, unknown>;
  const isRequest = typeof params.SAMLRequest === 'string';
  if (isRequest && params.SAMLResponse !== undefined)
    throw new SamlRefusal('a logout message carries either SAMLRequest or SAMLResponse, not both');
  const encoded = isRequest ? params.SAMLRequest : params.SAMLResponse;
  if (typeof encoded !== 'string') throw new SamlRefusal('no SAMLRequest or SAMLResponse');
  const message = readLogoutMessage(encoded, binding, isRequest ? 'LogoutRequest' : 'LogoutResponse');
  const connection = await findConnection(options.db, tenant.id, message.issuer);
  if (!connection)
    throw new SamlRefusal(`no identity provider "${message.issuer}" is configured for this tenant`);
  requireSha2Signature(binding, params, message.root);
  if (redirect && !redirectSignatureVerifies(redirect, connection.certificates))
    throw new SamlRefusal('logout message refused: invalid signature on the HTTP-Redirect query');
  checkDestinationAndAge(message, singleLogoutUrl(options.publicUrl, tenant));
  const saml = await logoutSaml(options, tenant, connection);
  const verify = <T>(work: Promise<T>) =>
    work.catch((error: Error) => {
      throw new SamlRefusal(`logout message refused: ${error.message}`);
    });

  if (isRequest) {
    const { profile } =
      binding === 'redirect'
        ? await verify(saml.validateRedirectAsync(redirect!.values, redirect!.signedQuery))
        : await verify(saml.validatePostRequestAsync(req.body as Record<string, string>));
    if (!profile?.nameID) throw new SamlRefusal('the LogoutRequest names no NameID');
    // Spent only once its signature verified, so nobody else's forgery can use up a real request.
    const requestId = message.root.getAttribute('ID') ?? '';
    const spentKey = `idsync:saml:logout-request:${tenant.id}:${connection.id}:${requestId}`;
    const spent = await options.redis.set(
      spentKey,
      '1',
      'PX',
      LOGOUT_MESSAGE_MAX_AGE_MS + 2 * CLOCK_SKEW_MS,
      'NX',
    );
    if (requestId === '' || spent !== 'OK')
      throw new SamlRefusal('the LogoutRequest was already used (or names no ID)');
    // A request whose sessions could not be ended (the database away) is not spent: the IdP may send it again.
    const ended = await endIdpSessions(options.db, tenant.id, connection, profile, String(req.id)).catch(
      async (error: unknown) => {
        await options.redis.del(spentKey).catch(() => undefined);
        throw error;
      },
    );
    req.log.info({ sessionsEnded: ended, idp: connection.idpEntityId }, 'SAML logout from the IdP');
    clearSessionCookie(res);
    const relayState = typeof params.RelayState === 'string' ? params.RelayState : '';
    if (connection.sloUrl) {
      res.redirect(302, await saml.getLogoutResponseUrlAsync(profile, relayState, {}, true));
      return;
    }
    res.type('html').send(htmlPage('Signed out', '<p>Your identity provider signed you out of idsync.</p>'));
    return;
  }

  if (redirect) {
    await verify(saml.validateRedirectAsync(redirect.values, redirect.signedQuery));
  } else {
    if (!validateSignature(message.xml, message.root, connection.certificates))
      throw new SamlRefusal('logout message refused: invalid signature on the LogoutResponse');
    const status = children(
      children(message.root, SAMLP, 'Status')[0] ?? message.root,
      SAMLP,
      'StatusCode',
    )[0];
    if (status?.getAttribute('Value') !== 'urn:oasis:names:tc:SAML:2.0:status:Success')
      throw new SamlRefusal('the IdP did not sign the user out (LogoutResponse status is not Success)');
  }
  const inResponseTo = message.root.getAttribute('InResponseTo') ?? '';
  // Read before spending: a response from another IdP must not use up the request it does not answer.
  const key = pendingKey(tenant.id, inResponseTo);
  const answers = async (read: Promise<string | null>) =>
    inResponseTo !== '' && (await read) === connection.id;
  if (!(await answers(options.redis.get(key))) || !(await answers(options.redis.getdel(key))))
    throw new SamlRefusal(
      'the LogoutResponse answers no logout idsync sent to this IdP (unknown, expired or used)',
    );
  res
    .type('html')
    .send(
      htmlPage(
        'Signed out',
        `<p id="signed-out">You are signed out of idsync and of your identity provider.</p><p><a href="/sso/${escapeHtml(tenant.name)}/me">Sign in again</a></p>`,
      ),
    );
}

const pendingKey = (tenantId: string, requestId: string) => `idsync:saml:logout:${tenantId}:${requestId}`;

async function logoutSaml(
  options: SingleLogoutOptions,
  tenant: Tenant,
  connection: Connection,
  requestId?: string,
): Promise<SAML> {
  const key = await spSigningKey(options.db, options.secretBox!, tenant.id);
  const urls = serviceProviderUrls(options.publicUrl, tenant);
  return new SAML({
    entryPoint: connection.ssoUrl,
    issuer: urls.entityId,
    audience: urls.entityId,
    callbackUrl: urls.acsUrl,
    idpCert: connection.certificates,
    // node-saml checks a logout message's Issuer against idpIssuer: only this IdP may end its sessions.
    idpIssuer: connection.idpEntityId,
    logoutUrl: connection.sloUrl ?? connection.ssoUrl,
    logoutCallbackUrl: singleLogoutUrl(options.publicUrl, tenant),
    privateKey: key.privateKey,
    publicCert: key.certificate,
    signatureAlgorithm: 'sha256',
    digestAlgorithm: 'sha256',
    wantAssertionsSigned: true,
    validateInResponseTo: ValidateInResponseTo.never,
    ...(requestId ? { generateUniqueId: () => requestId } : {}),
  });
}

interface LogoutMessage {
  xml: string;
  root: Element;
  issuer: string;
}

/** A first look before any signature is checked: the right message, no DTD or comments, its Issuer. */
function readLogoutMessage(
  encoded: string,
  binding: 'redirect' | 'post',
  expected: 'LogoutRequest' | 'LogoutResponse',
): LogoutMessage {
  let xml: string;
  try {
    const bytes = Buffer.from(encoded, 'base64');
    xml = (
      binding === 'redirect' ? inflateRawSync(bytes, { maxOutputLength: MAX_MESSAGE_BYTES }) : bytes
    ).toString('utf8');
  } catch {
    throw new SamlRefusal('the logout message is not base64 (deflated, for HTTP-Redirect) XML');
  }
  if (xml.length === 0 || xml.length > MAX_MESSAGE_BYTES)
    throw new SamlRefusal('the logout message is empty or too large');
  if (/<!DOCTYPE/i.test(xml) || xml.includes('<!--'))
    throw new SamlRefusal('the logout message has a DOCTYPE or comments');
  const errors: string[] = [];
  const document = new DOMParser({
    errorHandler: { warning: () => {}, error: (m) => errors.push(m), fatalError: (m) => errors.push(m) },
  }).parseFromString(xml, 'text/xml') as unknown as Document;
  const root = document.documentElement as Element | null;
  if (errors.length > 0 || !root) throw new SamlRefusal('the logout message is not well-formed XML');
  if (root.localName !== expected || root.namespaceURI !== SAMLP)
    throw new SamlRefusal(`not a SAML ${expected}`);
  const issuer = childText(root, SAML_NS, 'Issuer');
  if (!issuer) throw new SamlRefusal(`the ${expected} names no Issuer`);
  return { xml, root, issuer };
}

const REDIRECT_PARAMETERS = ['SAMLRequest', 'SAMLResponse', 'RelayState', 'SigAlg', 'Signature'] as const;
type RedirectParameter = (typeof REDIRECT_PARAMETERS)[number];

interface RedirectQuery {
  /** Each parameter decoded, as the message is read. */
  values: Partial<Record<RedirectParameter, string>>;
  /** Each parameter as it came, percent-encoded: what the IdP signed (SAML Bindings §3.4.4.1). */
  raw: Partial<Record<RedirectParameter, string>>;
  /** The query of only these parameters, in the signed order, for node-saml's own check. */
  signedQuery: string;
}

/**
 * The HTTP-Redirect binding's parameters from the raw query: each at most once and spelled as is, so the
 * bytes whose signature is checked are the message that is read. Other parameters are ignored.
 */
function readRedirectQuery(query: string): RedirectQuery {
  const values: RedirectQuery['values'] = {};
  const raw: RedirectQuery['raw'] = {};
  for (const token of query.split('&')) {
    const equals = token.indexOf('=');
    const rawName = equals < 0 ? token : token.slice(0, equals);
    const name = REDIRECT_PARAMETERS.find((p) => p.toLowerCase() === decodeQueryPart(rawName).toLowerCase());
    if (!name) continue;
    if (rawName !== name)
      throw new SamlRefusal(`the logout query spells the parameter ${name} as "${rawName}"`);
    if (raw[name] !== undefined) throw new SamlRefusal(`the logout query repeats the parameter ${name}`);
    raw[name] = equals < 0 ? '' : token.slice(equals + 1);
    values[name] = decodeQueryPart(raw[name]);
  }
  const message = raw.SAMLRequest !== undefined ? 'SAMLRequest' : 'SAMLResponse';
  const signedQuery = [
    `${message}=${raw[message] ?? ''}`,
    ...(raw.RelayState !== undefined ? [`RelayState=${raw.RelayState}`] : []),
    `SigAlg=${raw.SigAlg ?? ''}`,
    `Signature=${raw.Signature ?? ''}`,
  ].join('&');
  return { values, raw, signedQuery };
}

function decodeQueryPart(part: string): string {
  try {
    return decodeURIComponent(part.replace(/\+/g, ' '));
  } catch {
    throw new SamlRefusal('the logout query is not valid percent-encoding');
  }
}

/** SAML Bindings §3.4.4.1: the signature covers `SAMLRequest=…[&RelayState=…]&SigAlg=…` as sent. */
function redirectSignatureVerifies(query: RedirectQuery, certificates: string[]): boolean {
  const hash = SHA2_SIGNATURES.get(query.values.SigAlg ?? '');
  if (!hash || query.values.Signature === undefined) return false;
  const signed = Buffer.from(query.signedQuery.slice(0, query.signedQuery.lastIndexOf('&Signature=')));
  const signature = Buffer.from(query.values.Signature, 'base64');
  return certificates.some((certificate) => {
    try {
      return verifySignature(hash, signed, toPem(certificate), signature);
    } catch {
      return false;
    }
  });
}

/**
 * A signed logout message names where it was sent (SAML Bindings §3.4.5.2, §3.5.5.2): here, not another
 * tenant's endpoint the same IdP serves. It is recent, and a LogoutRequest not past its NotOnOrAfter.
 */
function checkDestinationAndAge(message: LogoutMessage, endpoint: string, now = Date.now()): void {
  const destination = message.root.getAttribute('Destination');
  if (destination !== endpoint)
    throw new SamlRefusal(
      destination
        ? `the logout message was sent to ${destination}, not to this tenant's ${endpoint}`
        : 'the logout message names no Destination',
    );
  // SAML times are UTC (SAML Core §1.3.3), with or without `Z`; Date.parse would read one without a
  // zone in the host's.
  const utc = (value: string | null) =>
    value ? Date.parse(/(Z|[+-]\d\d:\d\d)$/i.test(value) ? value : `${value}Z`) : Number.NaN;
  const issued = utc(message.root.getAttribute('IssueInstant'));
  if (Number.isNaN(issued)) throw new SamlRefusal('the logout message has no valid IssueInstant');
  if (issued > now + CLOCK_SKEW_MS) throw new SamlRefusal('the logout message is issued in the future');
  if (issued < now - LOGOUT_MESSAGE_MAX_AGE_MS - CLOCK_SKEW_MS)
    throw new SamlRefusal('the logout message is too old');
  const notOnOrAfter = message.root.getAttribute('NotOnOrAfter');
  if (notOnOrAfter) {
    const until = utc(notOnOrAfter);
    if (Number.isNaN(until) || until <= now - CLOCK_SKEW_MS)
      throw new SamlRefusal('the logout message has expired (NotOnOrAfter)');
  }
}

/** Logout messages must be signed (SAML Profiles §4.4.3), with RSA and SHA-2. */
function requireSha2Signature(
  binding: 'redirect' | 'post',
  params: Record<string, unknown>,
  root: Element,
): void {
  if (binding === 'redirect') {
    if (typeof params.Signature !== 'string' || typeof params.SigAlg !== 'string')
      throw new SamlRefusal('the logout message is not signed');
    if (!SHA2_SIGNATURES.has(params.SigAlg))
      throw new SamlRefusal(
        `the logout message is signed with ${params.SigAlg}; RSA-SHA256 or stronger is required`,
      );
    return;
  }
  const signature = children(root, DSIG, 'Signature')[0];
  const signedInfo = signature ? children(signature, DSIG, 'SignedInfo')[0] : undefined;
  const method = signedInfo
    ? children(signedInfo, DSIG, 'SignatureMethod')[0]?.getAttribute('Algorithm')
    : undefined;
  if (!method) throw new SamlRefusal('the logout message is not signed');
  if (!SHA2_SIGNATURES.has(method))
    throw new SamlRefusal(`the logout message is signed with ${method}; RSA-SHA256 or stronger is required`);
}

/** Ends the sessions this IdP started for the NameID (and SessionIndex): never another IdP's. */
async function endIdpSessions(
  db: Database,
  tenantId: string,
  connection: Connection,
  profile: Profile,
  correlationId: string,
): Promise<number> {
  const sessionIndex = typeof profile.sessionIndex === 'string' ? profile.sessionIndex : null;
  const ended = await db.execute<{ user_id: string }>(sql`
    UPDATE tokens t SET revoked_at = now(), revoked_reason = 'signed out at the identity provider'
    FROM saml_sessions s
    WHERE s.token_id = t.id AND s.tenant_id = ${tenantId} AND s.connection_id = ${connection.id}
      AND lower(s.name_id) = lower(${profile.nameID})
      AND (${sessionIndex}::text IS NULL OR s.session_index = ${sessionIndex})
      AND t.revoked_at IS NULL
    RETURNING t.user_id::text`);
  await recordAudit(
    db,
    [...new Set(ended.map((row) => row.user_id))].map((userId) => ({
      tenantId,
      actor: 'saml',
      action: 'saml.logout',
      subjectType: 'user' as const,
      subjectId: userId,
      after: {
        idp: connection.idpEntityId,
        sessionsEnded: ended.filter((row) => row.user_id === userId).length,
      },
      correlationId,
    })),
  );
  return ended.length;
}
