import { type Profile, SAML, ValidateInResponseTo } from '@node-saml/node-saml';
import { sql } from 'drizzle-orm';
import express, { type Request, type Response, Router } from 'express';
import type { Redis } from 'ioredis';
import type { Database } from '../db/client.js';
import { refuseHostileText } from '../http/hostile-input.js';
import { escapeHtml, htmlPage } from '../http/html.js';
import { htmlErrorHandler } from '../http/html-errors.js';
import { PlatformMirror } from '../platform/mirror.js';
import { findTenantByName, type Tenant } from '../tenants/tenants.js';
import { issueApiToken } from '../tokens/tokens.js';
import { accountPage } from './account-page.js';
import { firstUse, requestIdCache } from './caches.js';
import {
  ENTRA_GROUPS_CLAIM,
  ENTRA_GROUPS_OVERAGE_CLAIM,
  type JitMode,
  type LoginClaims,
  provisionLogin,
} from './jit.js';
import { checkResponse, SamlRefusal } from './saml-checks.js';
import {
  clearSessionCookie,
  currentSession,
  endSession,
  type Session,
  setSessionCookie,
  startSession,
} from './sessions.js';

/*
 * The SAML edge: SP metadata, SP-initiated login (HTTP-Redirect) and the Assertion Consumer Service
 * (HTTP-POST). node-saml checks signatures, audience, time conditions and InResponseTo; saml-checks.ts
 * adds what it leaves out; caches.ts keeps request ids and used assertion ids in Redis so several API
 * processes agree. Any failure is a plain error page with a reference; the reason goes to the log,
 * the assertion never does.
 */

const CLOCK_SKEW_MS = 60_000;
const REQUEST_TTL_MS = 10 * 60_000;

type Connection = {
  id: string;
  idp_entity_id: string;
  sso_url: string;
  certificates: string[];
  want_response_signed: boolean;
  attribute_map: Record<string, string>;
  group_claim_format: 'names' | 'object-ids';
};

export interface SsoRouterOptions {
  db: Database;
  redis: Redis;
  publicUrl: string;
}

export function ssoRouter(options: SsoRouterOptions): Router {
  const { db, redis, publicUrl } = options;
  const router = Router();
  router.use(express.urlencoded({ extended: false, limit: '512kb' }));
  router.use(refuseHostileText);

  const urls = (tenant: Tenant) => ({
    entityId: `${publicUrl}/sso/${tenant.name}`,
    acsUrl: `${publicUrl}/sso/${tenant.name}/acs`,
  });

  /**
   * The tenant's IdP named by entity id (a response's Issuer, or `?idp=` on /login), else its first one.
   * Choosing by the unverified Issuer is safe: that IdP's own certificates must then verify the response.
   */
  async function connectionOf(tenant: Tenant, idpEntityId?: string): Promise<Connection> {
    const [connection] = await db.execute<Connection>(sql`
      SELECT id::text, idp_entity_id, sso_url, certificates, want_response_signed, attribute_map, group_claim_format::text
      FROM sso_connections WHERE tenant_id = ${tenant.id}
        ${idpEntityId ? sql`AND idp_entity_id = ${idpEntityId}` : sql``}
      ORDER BY created_at LIMIT 1`);
    if (!connection) throw new SamlRefusal('single sign-on is not configured for this tenant');
    return { ...connection, certificates: pgTextArray(connection.certificates) };
  }

  function samlFor(tenant: Tenant, connection: Connection): SAML {
    const { entityId, acsUrl } = urls(tenant);
    return new SAML({
      entryPoint: connection.sso_url,
      issuer: entityId,
      audience: entityId,
      callbackUrl: acsUrl,
      idpCert: connection.certificates,
      wantAssertionsSigned: true,
      wantAuthnResponseSigned: connection.want_response_signed,
      signatureAlgorithm: 'sha256',
      acceptedClockSkewMs: CLOCK_SKEW_MS,
      // IdP-initiated logins (no InResponseTo) only where the tenant allows them.
      validateInResponseTo: tenant.idpInitiatedSso
        ? ValidateInResponseTo.ifPresent
        : ValidateInResponseTo.always,
      requestIdExpirationPeriodMs: REQUEST_TTL_MS,
      cacheProvider: requestIdCache(redis, tenant.id, REQUEST_TTL_MS),
      identifierFormat: null,
      disableRequestedAuthnContext: true,
    });
  }

  router.get('/:tenant/metadata', async (req, res) => {
    const tenant = await findTenantByName(db, String(req.params.tenant));
    const { entityId, acsUrl } = urls(tenant);
    res
      .type('application/samlmetadata+xml')
      .send(
        `<?xml version="1.0"?>\n<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="${escapeHtml(entityId)}">` +
          `<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">` +
          `<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="${escapeHtml(acsUrl)}" index="1"/>` +
          '</md:SPSSODescriptor></md:EntityDescriptor>\n',
      );
  });

  router.get('/:tenant/login', async (req, res) => {
    try {
      const tenant = await findTenantByName(db, String(req.params.tenant));
      const relayState = safeRelayState(req.query.RelayState, publicUrl);
      const chosen = typeof req.query.idp === 'string' ? req.query.idp : undefined;
      const url = await samlFor(tenant, await connectionOf(tenant, chosen)).getAuthorizeUrlAsync(
        relayState,
        undefined,
        {},
      );
      res.redirect(302, url);
    } catch (error) {
      refuse(req, res, error);
    }
  });

  router.post('/:tenant/acs', async (req, res) => {
    try {
      const tenant = await findTenantByName(db, String(req.params.tenant));
      const samlResponse = typeof req.body?.SAMLResponse === 'string' ? req.body.SAMLResponse : undefined;
      if (!samlResponse) throw new SamlRefusal('no SAMLResponse in the request');
      const connection = await connectionOf(tenant, claimedIssuer(samlResponse));
      // Whatever node-saml rejects (signature, audience, time, InResponseTo, DOCTYPE…) is a refusal.
      const { profile } = await samlFor(tenant, connection)
        .validatePostResponseAsync({ SAMLResponse: samlResponse })
        .catch((error: Error) => {
          throw new SamlRefusal(error.message);
        });
      if (!profile) throw new SamlRefusal('the response carried no login');
      const responseXml = profile.getSamlResponseXml?.();
      const assertionXml = profile.getAssertionXml?.();
      if (!responseXml || !assertionXml) throw new SamlRefusal('the response carried no assertion');
      const facts = checkResponse(responseXml, assertionXml, {
        acsUrl: urls(tenant).acsUrl,
        idpEntityId: connection.idp_entity_id,
      });
      if (!(await firstUse(redis, tenant.id, facts.id, facts.notOnOrAfter, CLOCK_SKEW_MS))) {
        throw new SamlRefusal('this assertion was already used (replay)');
      }
      const claims = claimsOf(profile, connection);
      const login = await provisionLogin(db, tenant.id, tenant.jitMode as JitMode, claims, String(req.id));
      req.log.info({ userId: login.userId, created: login.created }, 'SAML login accepted');
      setSessionCookie(res, await startSession(db, tenant.id, login.userId), publicUrl);
      res.redirect(
        303,
        safeRelayState(req.body?.RelayState, publicUrl) || `${publicUrl}/sso/${tenant.name}/me`,
      );
    } catch (error) {
      refuse(req, res, error);
    }
  });
  router.get('/:tenant/me', async (req, res) => {
    const tenant = await findTenantByName(db, String(req.params.tenant));
    const session = await currentSession(db, tenant.id, req);
    if (!session) {
      res.redirect(
        302,
        `${publicUrl}/sso/${tenant.name}/login?RelayState=${encodeURIComponent(`/sso/${tenant.name}/me`)}`,
      );
      return;
    }
    res.type('html').send(accountPage(await accountView(db, tenant, session)));
  });

  router.post('/:tenant/me/tokens', async (req, res) => {
    const tenant = await findTenantByName(db, String(req.params.tenant));
    const session = await sameOriginSession(req, res, tenant);
    if (!session) return;
    const scopes = String(req.body?.scopes ?? '')
      .split(/[\s,]+/)
      .filter(Boolean);
    const label = String(req.body?.label ?? '').slice(0, 80) || undefined;
    const issued = await issueApiToken(db, tenant.id, session.userId, {
      scopes,
      expiresInSeconds: 90 * 24 * 3600,
      label,
      actor: `user:${session.userName}`,
    });
    res
      .type('html')
      .send(accountPage({ ...(await accountView(db, tenant, session)), newToken: issued.token }));
  });

  router.post('/:tenant/me/tokens/:id/revoke', async (req, res) => {
    const tenant = await findTenantByName(db, String(req.params.tenant));
    const session = await sameOriginSession(req, res, tenant);
    if (!session) return;
    // Only the user's own API tokens: the user id is part of the condition.
    await db.execute(sql`
      UPDATE tokens SET revoked_at = now(), revoked_reason = 'revoked by its owner'
      WHERE id::text = ${String(req.params.id)} AND user_id = ${session.userId} AND kind = 'api' AND revoked_at IS NULL`);
    res.redirect(303, `${publicUrl}/sso/${tenant.name}/me`);
  });

  router.post('/:tenant/logout', async (req, res) => {
    const tenant = await findTenantByName(db, String(req.params.tenant));
    const session = await currentSession(db, tenant.id, req);
    if (session) await endSession(db, session.id);
    clearSessionCookie(res);
    res.type('html').send(htmlPage('Signed out', '<p>You are signed out of idsync.</p>'));
  });

  /** A session for a state-changing request, which must come from idsync's own pages. */
  async function sameOriginSession(req: Request, res: Response, tenant: Tenant) {
    const origin = req.get('Origin');
    const session = await currentSession(db, tenant.id, req);
    if (!session || (origin !== undefined && origin !== new URL(publicUrl).origin)) {
      res
        .status(403)
        .type('html')
        .send(htmlPage('Not allowed', '<p>Sign in again from idsync’s own page.</p>'));
      return undefined;
    }
    return session;
  }

  router.use(htmlErrorHandler);
  return router;
}

async function accountView(db: Database, tenant: Tenant, session: Session) {
  const access = await new PlatformMirror(db, tenant.id).readAccess(session.userName.toLowerCase());
  const tokens = await db.execute<{
    id: string;
    label: string | null;
    scopes: string;
    created_at: string;
    expires_at: string | null;
  }>(sql`
    SELECT id::text, label, array_to_string(scopes, ' ') AS scopes,
      to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' AS created_at,
      to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS expires_at
    FROM tokens WHERE user_id = ${session.userId} AND kind = 'api' AND revoked_at IS NULL
      AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at`);
  return {
    tenant: tenant.name,
    userName: session.userName,
    access,
    tokens: tokens.map((t) => ({
      id: t.id,
      label: t.label,
      scopes: t.scopes,
      createdAt: t.created_at,
      expiresAt: t.expires_at,
    })),
  };
}

function refuse(req: Request, res: Response, error: unknown): void {
  const reason = error instanceof SamlRefusal ? error.reason : (error as Error).message;
  const reference = String(req.id ?? '');
  // The reason is logged for the operator; the browser gets only a reference to quote.
  req.log.warn({ reference, reason }, 'SAML login refused');
  const status = error instanceof SamlRefusal ? 403 : 500;
  res
    .status((error as { kind?: string }).kind === 'not_found' ? 404 : status)
    .type('html')
    .send(
      htmlPage(
        'Sign-in failed',
        `<p>We could not sign you in. If this keeps happening, give your administrator this reference:</p><p><code>${escapeHtml(reference)}</code></p>`,
      ),
    );
}

/** The Issuer a response claims, read without trusting it, to pick which IdP's keys must verify it. */
function claimedIssuer(samlResponse: string): string | undefined {
  const xml = Buffer.from(samlResponse, 'base64').toString('utf8').slice(0, 4096);
  return /<(?:[A-Za-z0-9]+:)?Issuer[^>]*>\s*([^<\s]+)\s*</.exec(xml)?.[1];
}

/** RelayState may only send the browser back to idsync's own origin (no open redirect). */
function safeRelayState(value: unknown, publicUrl: string): string {
  if (typeof value !== 'string' || value === '') return '';
  try {
    const target = new URL(value, publicUrl);
    return target.origin === new URL(publicUrl).origin ? target.toString() : '';
  } catch {
    return '';
  }
}

function first(profile: Profile, names: string[]): string | undefined {
  for (const name of names) {
    const value =
      (profile as Record<string, unknown>)[name] ??
      (profile.attributes as Record<string, unknown> | undefined)?.[name];
    if (typeof value === 'string' && value !== '') return value;
    if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  }
  return undefined;
}

function claimsOf(profile: Profile, connection: Connection): LoginClaims {
  const map = connection.attribute_map;
  const nameId = profile.nameID;
  if (!nameId) throw new SamlRefusal('the assertion has no NameID');
  const attribute = (name: string) =>
    (profile as Record<string, unknown>)[name] ??
    (profile.attributes as Record<string, unknown> | undefined)?.[name];
  const groupsClaim =
    connection.group_claim_format === 'object-ids' ? ENTRA_GROUPS_CLAIM : (map.groups ?? 'groups');
  const rawGroups = attribute(groupsClaim);
  const overage = attribute(ENTRA_GROUPS_OVERAGE_CLAIM) !== undefined;
  // A single group arrives as a string, several as an array; missing (or overage) means "unknown", not "none".
  const values =
    rawGroups === undefined ? undefined : (Array.isArray(rawGroups) ? rawGroups : [rawGroups]).map(String);
  return {
    nameId,
    email: first(profile, [
      map.email ?? 'email',
      'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress',
    ]),
    givenName: first(profile, [
      map.givenName ?? 'firstName',
      'givenName',
      'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname',
    ]),
    familyName: first(profile, [
      map.familyName ?? 'lastName',
      'familyName',
      'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname',
    ]),
    displayName: first(profile, [
      map.displayName ?? 'displayName',
      'http://schemas.microsoft.com/identity/claims/displayname',
    ]),
    groups: overage || values === undefined ? undefined : { format: connection.group_claim_format, values },
    overage,
  };
}

function pgTextArray(value: string[] | string): string[] {
  if (Array.isArray(value)) return value;
  return value
    .replace(/^\{|\}$/g, '')
    .split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)
    .map((v) => v.replace(/^"|"$/g, '').replace(/\\n/g, '\n'))
    .filter(Boolean);
}
