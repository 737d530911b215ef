import express, { type NextFunction, type Request, type Response, Router } from 'express';
import type { Database } from '../db/client.js';
import { adminTokenMatches } from '../security/admin-token.js';
import { introspect, revoke } from './tokens.js';

/**
 * RFC 7662 token introspection and RFC 7009 revocation for platform services. The caller (a platform
 * client) authenticates with the admin bearer token; a token to check arrives as a form field.
 */
export function oauthRouter(options: { db: Database; adminToken: string | undefined }): Router {
  const router = Router();
  router.use(express.urlencoded({ extended: false, limit: '16kb' }));
  router.use((req: Request, res: Response, next: NextFunction) => {
    const presented = /^Bearer\s+(\S+)$/i.exec(req.get('Authorization') ?? '')?.[1];
    if (!adminTokenMatches(presented, options.adminToken)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="idsync"');
      res
        .status(401)
        .json({ error: 'invalid_client', error_description: 'authenticate with the platform client token' });
      return;
    }
    next();
  });
  /** The `token` form field, or a 400 in the OAuth error format (RFC 6749 §5.2) and undefined. */
  const tokenOf = (req: Request, res: Response) => {
    if (typeof req.body?.token === 'string' && req.body.token !== '') return req.body.token as string;
    res
      .status(400)
      .json({ error: 'invalid_request', error_description: 'the "token" form parameter is required' });
    return undefined;
  };
  router.post('/introspect', async (req, res) => {
    const token = tokenOf(req, res);
    if (!token) return;
    res.setHeader('Cache-Control', 'no-store');
    res.json(await introspect(options.db, token));
  });
  router.post('/revoke', async (req, res) => {
    const token = tokenOf(req, res);
    if (!token) return;
    await revoke(options.db, token, 'oauth-revoke');
    res.status(200).end();
  });
  return router;
}
