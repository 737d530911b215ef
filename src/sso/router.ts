import { sql } from 'drizzle-orm';
import express, { type Request, type Response, Router } from 'express';
import type { Redis } from 'ioredis';
import type { Database } from '../db/client.js';
import { DomainError, rootCause, toDomainError } from '../errors.js';
import { refuseHostileText } from '../http/hostile-input.js';
import { escapeHtml, htmlPage } from '../http/html.js';
import { htmlErrorHandler, sendHtmlError } from '../http/html-errors.js';
import { measureLogin } from '../metrics/sso-logins.js';
import { PlatformMirror } from '../platform/mirror.js';
import type { SecretBox } from '../security/secret-box.js';
import { findTenantByName, type Tenant } from '../tenants/tenants.js';
import { DEFAULT_LIFETIME_SECONDS, issueApiToken } from '../tokens/tokens.js';
import { accountPage } from './account-page.js';
import { claimsOf } from './claims.js';
import { type AcsTenant, type Connection, findConnection, findTenantAndConnection } from './connections.js';
import { refuseTransientNameId, splitOneLoginGroupValues } from './idp-dialects.js';
import { type JitMode, provisionLogin } from './jit.js';
import { newRequestId, redeemLoginStart, rememberLoginStart } from './login-state.js';
import { SamlRefusal } from './refusal.js';
import { spendAssertion } from './replay-cache.js';
import { readResponseDocument } from './response-document.js';
import { checkLogin, readSignedAssertion } from './saml-checks.js';
import { CLOCK_SKEW_MS, samlFor, serviceProviderUrls } from './service-provider.js';
import {
  clearSessionCookie,
  currentSession,
  endSession,
  type Session,
  setSessionCookie,
  startSession,
} from './sessions.js';
import {
  handleSingleLogout,
  offboardedUserLogoutUrl,
  type SingleLogoutOptions,
  samlSessionLink,
  singleLogoutMetadata,
  spInitiatedLogoutUrl,
} from './single-logout.js';

/*
 * The SAML edge: SP metadata, SP-initiated login (HTTP-Redirect) and the Assertion Consumer Service
 * (HTTP-POST). The ACS is a chain of small steps: look at the document (response-document.ts), let
 * node-saml verify signatures, audience and Conditions, spend the assertion id (replay-cache.ts), check
 * what node-saml leaves out from signed content only (saml-checks.ts), tie an SP-initiated login to the
 * browser that started it (login-state.ts), read the claims (claims.ts), provision (jit.ts), start a
 * session. Any failure is a plain error page with a reference; the reason goes to the log, the
 * assertion never does.
 */

export interface SsoRouterOptions {
  db: Database;
  redis: Redis;
  publicUrl: string;
  /** Opens the SP key that signs Single Logout messages; without it SLO is not offered. */
  secretBox?: SecretBox | undefined;
}

type TenantHandler = (req: Request, res: Response, tenant: Tenant) => Promise<void>;

export function ssoRouter(options: SsoRouterOptions): Router {
  const { db, redis, publicUrl } = options;
  const logout: SingleLogoutOptions = { db, redis, publicUrl, secretBox: options.secretBox };
  const router = Router();
  router.use(express.urlencoded({ extended: false, limit: '512kb' }));
  router.use(refuseHostileText);

  /** Any failure of an SSO page is a refusal page (an unknown tenant: a 404 page). */
  const refusing =
    (handler: (req: Request, res: Response) => Promise<void>) =>
    async (req: Request, res: Response): Promise<void> => {
      try {
        await handler(req, res);
      } catch (error) {
        refuse(req, res, error);
      }
    };
  /** Every SSO page names its tenant. */
  const forTenant = (handler: TenantHandler) =>
    refusing(async (req, res) => handler(req, res, await findTenantByName(db, String(req.params.tenant))));

  async function connectionOf(tenant: Tenant, idpEntityId?: string): Promise<Connection> {
    const connection = await findConnection(db, tenant.id, idpEntityId);
    if (connection) return connection;
    throw new SamlRefusal(
      idpEntityId === undefined
        ? 'single sign-on is not configured for this tenant'
        : `no identity provider "${idpEntityId}" is configured for this tenant`,
    );
  }

  router.get(
    '/:tenant/metadata',
    forTenant(async (_req, res, tenant) => {
      const { entityId, acsUrl } = serviceProviderUrls(publicUrl, tenant);
      res
        .type('application/samlmetadata+xml')
        .send(
          `<?xml version="1.0"?>\n<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="${escapeHtml(entityId)}">` +
            `<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">` +
            (await singleLogoutMetadata(logout, tenant)) +
            `<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="${escapeHtml(acsUrl)}" index="1"/>` +
            '</md:SPSSODescriptor></md:EntityDescriptor>\n',
        );
    }),
  );

  router.get(
    '/:tenant/login',
    forTenant(async (req, res, tenant) => {
      const relayState = safeRelayState(req.query.RelayState, publicUrl);
      const chosen = typeof req.query.idp === 'string' ? req.query.idp : undefined;
      const connection = await connectionOf(tenant, chosen);
      const requestId = newRequestId();
      const url = await samlFor(serviceProviderUrls(publicUrl, tenant), connection, {
        requestId,
      }).getAuthorizeUrlAsync(relayState, undefined, {});
      await rememberLoginStart(redis, req, res, {
        tenantId: tenant.id,
        requestId,
        connectionId: connection.id,
        publicUrl,
      });
      res.redirect(302, url);
    }),
  );

  /** The posted response read for its shape, or why it cannot be (thrown once the tenant is known). */
  const postedResponse = (req: Request) => {
    const samlResponse = typeof req.body?.SAMLResponse === 'string' ? req.body.SAMLResponse : undefined;
    if (!samlResponse) return { refusal: new SamlRefusal('no SAMLResponse in the request') } as const;
    try {
      return { samlResponse, document: readResponseDocument(samlResponse) } as const;
    } catch (error) {
      return { refusal: error } as const;
    }
  };

  const consumeAssertion = measureLogin(
    async (
      req,
      res,
      tenant: AcsTenant,
      connection: Connection | undefined,
      posted: ReturnType<typeof postedResponse>,
    ) => {
      if ('refusal' in posted) throw posted.refusal;
      const { samlResponse, document } = posted;
      if (!connection)
        throw new SamlRefusal(
          `no identity provider "${document.claimedIssuer ?? ''}" is configured for this tenant`,
        );
      const urls = serviceProviderUrls(publicUrl, tenant);
      // Whatever node-saml rejects (signatures, audience, Conditions, …) is a refusal.
      const { profile } = await samlFor(urls, connection, { responseSigned: document.responseSigned })
        .validatePostResponseAsync({ SAMLResponse: samlResponse })
        .catch((error: Error) => {
          throw new SamlRefusal(error.message, 'signature-or-conditions');
        });
      const assertionXml = profile?.getAssertionXml?.();
      if (!assertionXml) throw new SamlRefusal('the response carried no assertion');
      const assertion = readSignedAssertion(assertionXml);
      if (!(await spendAssertion(redis, tenant.id, assertion.id, assertion.usableUntil, CLOCK_SKEW_MS)))
        throw new SamlRefusal('this assertion was already used (replay)', 'replay');
      const { inResponseTo } = checkLogin(document.response, assertion, {
        acsUrl: urls.acsUrl,
        idpEntityId: connection.idpEntityId,
        responseSigned: document.responseSigned,
        now: new Date(),
        skewMs: CLOCK_SKEW_MS,
        maxAgeMs: tenant.maxAssertionAgeSeconds * 1000,
      });
      if (inResponseTo !== undefined) {
        await redeemLoginStart(redis, req, {
          tenantId: tenant.id,
          requestId: inResponseTo,
          connectionId: connection.id,
        });
      } else if (!tenant.idpInitiatedSso) {
        throw new SamlRefusal(
          'unsolicited (IdP-initiated) response, and this tenant accepts only logins it started',
          'unsolicited',
        );
      }
      refuseTransientNameId(assertion.element);
      const claims = splitOneLoginGroupValues(
        claimsOf(assertion.element, connection),
        connection.idpEntityId,
      );
      // The session starts in the provisioning transaction: the login commits once.
      let sessionToken = '';
      const login = await provisionLogin(
        db,
        tenant.id,
        tenant.jitMode as JitMode,
        claims,
        String(req.id),
        async (tx, { userId }) => {
          sessionToken = await startSession(
            tx,
            tenant.id,
            userId,
            samlSessionLink(connection, assertion.element),
          );
        },
      );
      req.log.info({ userId: login.userId, created: login.created }, 'SAML login accepted');
      setSessionCookie(res, sessionToken, publicUrl);
      res.redirect(
        303,
        safeRelayState(req.body?.RelayState, publicUrl) || `${publicUrl}/sso/${tenant.name}/me`,
      );
    },
  );

  // The tenant and the IdP the response names are read in one statement; an unknown tenant is a 404
  // page before anything about the response is said (and is no login to count).
  router.post(
    '/:tenant/acs',
    refusing(async (req, res) => {
      const posted = postedResponse(req);
      const { tenant, connection } = await findTenantAndConnection(
        db,
        String(req.params.tenant),
        ('document' in posted ? posted.document?.claimedIssuer : undefined) ?? '',
      );
      await consumeAssertion(req, res, tenant, connection, posted);
    }),
  );

  router.get(
    '/:tenant/me',
    forTenant(async (req, res, tenant) => {
      const session = await currentSession(db, tenant.id, req);
      // The IdP offboarded this user through SCIM: end the IdP's session of this login too.
      const idpLogout = session ? undefined : await offboardedUserLogoutUrl(logout, tenant, req);
      if (idpLogout) {
        clearSessionCookie(res);
        res.redirect(303, idpLogout);
        return;
      }
      if (!session) {
        res.redirect(
          302,
          `${publicUrl}/sso/${tenant.name}/login?RelayState=${encodeURIComponent(`/sso/${tenant.name}/me`)}`,
        );
        return;
      }
      res.type('html').send(accountPage(await accountView(db, tenant, session)));
    }),
  );

  router.post(
    '/:tenant/me/tokens',
    forTenant(async (req, res, tenant) => {
      const session = await sameOriginSession(req, res, tenant);
      if (!session) return;
      const scopes = String(req.body?.scopes ?? '')
        .split(/[\s,]+/)
        .filter(Boolean);
      const label = String(req.body?.label ?? '').slice(0, 80) || undefined;
      const issued = await issueApiToken(db, tenant.id, session.userId, {
        scopes,
        expiresInSeconds: DEFAULT_LIFETIME_SECONDS,
        label,
        actor: `user:${session.userName}`,
      });
      res
        .type('html')
        .send(accountPage({ ...(await accountView(db, tenant, session)), newToken: issued.token }));
    }),
  );

  router.post(
    '/:tenant/me/tokens/:id/revoke',
    forTenant(async (req, res, tenant) => {
      const session = await sameOriginSession(req, res, tenant);
      if (!session) return;
      // Only the user's own API tokens: the user id is part of the condition.
      await db.execute(sql`
      UPDATE tokens SET revoked_at = now(), revoked_reason = 'revoked by its owner'
      WHERE id::text = ${String(req.params.id)} AND user_id = ${session.userId} AND kind = 'api' AND revoked_at IS NULL`);
      res.redirect(303, `${publicUrl}/sso/${tenant.name}/me`);
    }),
  );

  router.post(
    '/:tenant/logout',
    forTenant(async (req, res, tenant) => {
      const session = await currentSession(db, tenant.id, req);
      if (session) await endSession(db, session.id);
      clearSessionCookie(res);
      // Single Logout: the IdP that signed this session in ends its own session too.
      const atIdp = session ? await spInitiatedLogoutUrl(logout, tenant, session.id) : undefined;
      if (atIdp) {
        res.redirect(303, atIdp);
        return;
      }
      res.type('html').send(htmlPage('Signed out', '<p>You are signed out of idsync.</p>'));
    }),
  );

  const singleLogout = forTenant((req, res, tenant) => handleSingleLogout(logout, req, res, tenant));
  router.get('/:tenant/slo', singleLogout);
  router.post('/:tenant/slo', singleLogout);

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
  // Waiting outbox rows for this user: a reconcile is still to apply what they announce. The page
  // says so rather than blocking the request until a worker has run (which may take long under load).
  const [pending] = await db.execute<{ applying: boolean }>(sql`
    SELECT EXISTS (
      SELECT 1 FROM outbox WHERE tenant_id = ${tenant.id} AND subject_type = 'user'
        AND subject_id = ${session.userId} AND completed_at IS NULL
    ) AS applying`);
  return {
    tenant: tenant.name,
    userName: session.userName,
    access,
    applying: pending?.applying === true,
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
  // rootCause: a driver error's own message, never drizzle's, which repeats the query's values.
  const reason = error instanceof SamlRefusal ? error.reason : String((rootCause(error) as Error)?.message);
  const reference = String(req.id ?? '');
  // The reason is logged for the operator; the browser gets only a reference to quote.
  if (error instanceof DomainError && error.kind === 'not_found') {
    req.log.info({ reference, reason }, 'SSO page for an unknown tenant');
    res.status(404).type('html').send(htmlPage('Not found', '<p>There is no such sign-in page.</p>'));
    return;
  }
  // A caller's mistake on an SSO page (a scope the user may not give a token, a malformed form) is a
  // 4xx page saying what was wrong, not a failed sign-in.
  if (!(error instanceof SamlRefusal) && toDomainError(error)) {
    sendHtmlError(req, res, error);
    return;
  }
  const refused = error instanceof SamlRefusal;
  if (refused) req.log.warn({ reference, reason }, 'SAML login refused');
  else req.log.error({ reference, reason }, 'SAML request failed');
  res
    .status(refused ? 403 : 500)
    .type('html')
    .send(
      htmlPage(
        'Sign-in failed',
        `<p>We could not sign you in. If this keeps happening, give your administrator this reference:</p><p><code>${escapeHtml(reference)}</code></p>`,
      ),
    );
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
