import express, { type NextFunction, type Request, type Response, Router } from 'express';
import type { Database } from '../db/client.js';
import { refuseHostileText } from '../http/hostile-input.js';
import { authenticateClient, type ClientScope, type OAuthClient } from '../security/oauth-clients.js';
import { OAuthError, oauthErrorHandler } from './oauth-errors.js';
import { introspect, revoke } from './tokens.js';

/*
 * RFC 7662 token introspection and RFC 7009 revocation for a tenant's platform services. Each endpoint
 * is a chain of small steps, as in node-oidc-provider: authenticate the client (HTTP Basic or
 * client_secret_post) → check its scope → read the `token` parameter → do the one thing → render.
 * Errors are thrown as OAuthError or DomainError and rendered in oauthErrorHandler, the one place.
 */

interface OAuthLocals {
  client: OAuthClient;
  token: string;
}

const BASIC_CHALLENGE = 'Basic realm="idsync"';

/** client_id and client_secret from HTTP Basic (RFC 6749 §2.3.1: each form-urlencoded) or the body. */
function presentedCredentials(req: Request): { id: string; secret: string; basic: boolean } | undefined {
  const header = req.get('Authorization');
  const bodyId = typeof req.body?.client_id === 'string' ? (req.body.client_id as string) : undefined;
  const bodySecret =
    typeof req.body?.client_secret === 'string' ? (req.body.client_secret as string) : undefined;
  if (header !== undefined) {
    if (bodySecret !== undefined)
      throw new OAuthError('invalid_request', 'use one client authentication method, not two');
    const encoded = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)?.[1];
    const decoded = encoded === undefined ? undefined : Buffer.from(encoded, 'base64').toString('utf8');
    const colon = decoded?.indexOf(':') ?? -1;
    if (decoded === undefined || colon < 0) {
      throw new OAuthError(
        'invalid_client',
        'authenticate with HTTP Basic client credentials',
        401,
        BASIC_CHALLENGE,
      );
    }
    try {
      const id = decodeURIComponent(decoded.slice(0, colon).replaceAll('+', ' '));
      const secret = decodeURIComponent(decoded.slice(colon + 1).replaceAll('+', ' '));
      return { id, secret, basic: true };
    } catch {
      throw new OAuthError(
        'invalid_client',
        'the client credentials are not form-encoded',
        401,
        BASIC_CHALLENGE,
      );
    }
  }
  if (bodyId !== undefined && bodySecret !== undefined)
    return { id: bodyId, secret: bodySecret, basic: false };
  return undefined;
}

function authenticate(db: Database) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const presented = presentedCredentials(req);
    const client = presented ? await authenticateClient(db, presented.id, presented.secret) : undefined;
    if (!client) {
      throw new OAuthError(
        'invalid_client',
        presented ? 'client authentication failed' : 'client authentication is required',
        401,
        presented?.basic === false ? undefined : BASIC_CHALLENGE,
      );
    }
    (res.locals as OAuthLocals).client = client;
    next();
  };
}

const requireScope = (scope: ClientScope) => (_req: Request, res: Response, next: NextFunction) => {
  if (!(res.locals as OAuthLocals).client.scopes.includes(scope))
    throw new OAuthError('unauthorized_client', `this client may not ${scope}`);
  next();
};

const tokenParameter = (req: Request, res: Response, next: NextFunction) => {
  if (typeof req.body?.token !== 'string' || req.body.token === '')
    throw new OAuthError('invalid_request', 'the "token" form parameter is required');
  (res.locals as OAuthLocals).token = req.body.token;
  next();
};

export function oauthRouter(options: { db: Database }): Router {
  const { db } = options;
  const router = Router();
  router.use(express.urlencoded({ extended: false, limit: '16kb' }));
  router.use(refuseHostileText);
  router.post(
    '/introspect',
    authenticate(db),
    requireScope('introspect'),
    tokenParameter,
    async (_req: Request, res: Response) => {
      const { client, token } = res.locals as OAuthLocals;
      res.setHeader('Cache-Control', 'no-store');
      res.json(await introspect(db, token, client.tenantId));
    },
  );
  router.post(
    '/revoke',
    authenticate(db),
    requireScope('revoke'),
    tokenParameter,
    async (_req: Request, res: Response) => {
      const { client, token } = res.locals as OAuthLocals;
      await revoke(db, token, client.tenantId, `client:${client.name}`);
      res.status(200).end();
    },
  );
  router.use(oauthErrorHandler);
  return router;
}
