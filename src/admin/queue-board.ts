import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { type NextFunction, type Request, type RequestHandler, type Response, Router } from 'express';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { forbidden, rootCause, unauthorized } from '../errors.js';
import { fromOwnOrigin } from '../http/same-origin.js';
import { LANES, type LaneQueues } from '../jobs/queues.js';
import {
  type AdminPrincipal,
  adminActor,
  authenticateAdmin,
  roleIncludes,
} from '../security/admin-tokens.js';

/*
 * Bull Board (@bull-board/express) at /admin/queues: the queue dashboard operators already know, over
 * idsync's three lanes. Who may open it: an admin credential for all tenants (jobs of every tenant
 * share the lanes, so a tenant-scoped token would see other tenants' jobs). Auditors get a board whose
 * queues are read-only — Bull Board itself refuses retry, clean, promote and delete on them (405), not
 * just the buttons — and operators and owners get the full board.
 *
 * A browser cannot attach a bearer token to page loads, so the board also accepts HTTP Basic with the
 * admin token as the password (any user name): the browser asks once and sends it with every request.
 * Because a browser then sends it on its own, changes are only accepted from idsync's own origin.
 */

export const QUEUE_BOARD_PATH = '/admin/queues';

export interface QueueBoardOptions {
  db: Database;
  adminToken: string | undefined;
  queues: LaneQueues;
  publicUrl: string;
}

function boardFor(queues: LaneQueues, readOnlyMode: boolean): RequestHandler {
  const adapter = new ExpressAdapter();
  adapter.setBasePath(QUEUE_BOARD_PATH);
  createBullBoard({
    queues: LANES.map((lane) => new BullMQAdapter(queues[lane], { readOnlyMode })),
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: readOnlyMode ? 'idsync (read-only)' : 'idsync' } },
  });
  return adapter.getRouter() as RequestHandler;
}

/** The admin token from `Authorization: Bearer <token>` or `Basic base64(<any>:<token>)`. */
export function presentedAdminToken(header: string | undefined): string | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1];
  if (bearer) return bearer;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '')?.[1];
  if (!basic) return undefined;
  const decoded = Buffer.from(basic, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 && colon < decoded.length - 1 ? decoded.slice(colon + 1) : undefined;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function queueBoardRouter(options: QueueBoardOptions): Router {
  const { db } = options;
  const readOnly = boardFor(options.queues, true);
  const full = boardFor(options.queues, false);
  const ownOrigin = new URL(options.publicUrl).origin;
  const router = Router();

  router.use(async (req: Request, res: Response, next: NextFunction) => {
    const principal = await authenticateAdmin(
      db,
      presentedAdminToken(req.get('Authorization')),
      options.adminToken,
    );
    if (!principal) {
      res.setHeader('WWW-Authenticate', 'Basic realm="idsync queues", charset="UTF-8"');
      throw unauthorized('an admin token is required (Bearer, or Basic with the token as the password)');
    }
    if (principal.tenantId !== null)
      throw forbidden(
        'the queue dashboard shows every tenant’s jobs: it needs an admin token for all tenants',
      );
    const operator = roleIncludes(principal.role, 'operator');
    if (!SAFE_METHODS.has(req.method)) {
      // The read-only board hides the buttons and refuses queue actions; this also covers the board's
      // own requests that are not about a queue (pause all, purge the metrics history).
      if (!operator)
        throw forbidden(`changing the queues needs the operator role; the token is ${principal.role}`);
      // Same rule as the console's forms: a change without Origin or Referer is not let through either.
      if (!fromOwnOrigin(req, ownOrigin))
        throw forbidden(
          'changes to the queues are accepted from idsync’s own pages only (Origin or Referer must be idsync’s public URL)',
        );
      auditChange(db, req, res, principal);
    }
    (operator ? full : readOnly)(req, res, next);
  });
  return router;
}

/** A retry, clean or delete through the board is audited like any admin API change. */
function auditChange(db: Database, req: Request, res: Response, principal: AdminPrincipal): void {
  res.on('finish', () => {
    recordAudit(db, {
      tenantId: null,
      actor: adminActor(principal),
      action: `queue_board.${req.method.toLowerCase()}`,
      after: { path: req.baseUrl + req.path, status: res.statusCode, role: principal.role },
      correlationId: typeof req.id === 'string' ? req.id : null,
    }).catch((error: unknown) =>
      req.log?.error({ err: rootCause(error) }, 'could not audit a queue board change'),
    );
  });
}
