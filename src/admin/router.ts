import { type NextFunction, type Request, type Response, Router } from 'express';
import type { Database } from '../db/client.js';
import { isUuid } from '../db/uuid.js';
import { findingsCsv, offboardingCsv, seatsCsv } from '../drift/csv.js';
import { offboardingView } from '../drift/offboarding.js';
import { readDays, readFindingFilter, readPeriod, requestScan } from '../drift/queries.js';
import { reportFindings, reportHeader, resolvedSince, verifyChain } from '../drift/reports.js';
import { inactiveSeats } from '../drift/seats.js';
import { notFound } from '../errors.js';
import { jsonBody, refuseHostileText } from '../http/hostile-input.js';
import { jsonErrorHandler } from '../http/json-errors.js';
import { approveChange, listHeldChanges } from '../reconcile/brake.js';
import { latestReceipt } from '../reconcile/receipts.js';
import { planUser, type ReconcileDependencies } from '../reconcile/reconciler.js';
import { addRule, listRules, readRuleInput, removeRule } from '../reconcile/rules.js';
import { adminTokenMatches } from '../security/admin-token.js';
import { findTenantByName, type Tenant } from '../tenants/tenants.js';
import { issueApiToken } from '../tokens/tokens.js';

/*
 * The admin API (JSON) behind IDSYNC_ADMIN_TOKEN: assignment rules, dry-run plans, offboarding receipts.
 * Without a configured token the API is closed (503 saying how to open it), never open by default.
 */

export interface AdminRouterOptions {
  db: Database;
  adminToken: string | undefined;
  reconcile: ReconcileDependencies;
}

function authenticate(adminToken: string | undefined) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (!adminToken) {
      res.status(503).json({
        error: { code: 'admin_api_disabled', message: 'set IDSYNC_ADMIN_TOKEN to enable the admin API' },
      });
      return;
    }
    const presented = /^Bearer\s+(\S+)$/i.exec(req.get('Authorization') ?? '')?.[1];
    if (!adminTokenMatches(presented, adminToken)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="idsync admin"');
      res
        .status(401)
        .json({ error: { code: 'unauthorized', message: 'a valid admin bearer token is required' } });
      return;
    }
    next();
  };
}

export function adminRouter(options: AdminRouterOptions): Router {
  const { db } = options;
  const router = Router();
  router.use(jsonBody({ limit: '256kb' }));
  router.use(authenticate(options.adminToken));
  router.use(refuseHostileText);

  const tenantOf = async (req: Request): Promise<Tenant> => findTenantByName(db, String(req.params.tenant));

  router.get('/tenants/:tenant/rules', async (req, res) => {
    res.json({ rules: await listRules(db, (await tenantOf(req)).id) });
  });
  router.post('/tenants/:tenant/rules', async (req, res) => {
    const tenant = await tenantOf(req);
    res.status(201).json(await addRule(db, tenant.id, readRuleInput(req.body), 'admin-api'));
  });
  router.delete('/tenants/:tenant/rules/:id', async (req, res) => {
    await removeRule(db, (await tenantOf(req)).id, String(req.params.id), 'admin-api');
    res.status(204).end();
  });
  router.get('/tenants/:tenant/users/:id/receipt', async (req, res) => {
    res.json(await latestReceipt(db, (await tenantOf(req)).id, String(req.params.id)));
  });
  router.post('/tenants/:tenant/users/:id/tokens', async (req, res) => {
    const tenant = await tenantOf(req);
    const body = (req.body ?? {}) as { scopes?: unknown; expiresInSeconds?: unknown; label?: unknown };
    const scopes = Array.isArray(body.scopes) ? body.scopes.map(String) : [];
    const expiresInSeconds = typeof body.expiresInSeconds === 'number' ? body.expiresInSeconds : undefined;
    const label = typeof body.label === 'string' ? body.label : undefined;
    res.status(201).json(
      await issueApiToken(db, tenant.id, String(req.params.id), {
        scopes,
        expiresInSeconds,
        label,
        actor: 'admin-api',
      }),
    );
  });
  router.get('/tenants/:tenant/changes', async (req, res) => {
    res.json({ changes: await listHeldChanges(db, (await tenantOf(req)).id) });
  });
  router.post('/tenants/:tenant/changes/:id/approve', async (req, res) => {
    const queued = await approveChange(db, (await tenantOf(req)).id, String(req.params.id), 'admin-api');
    res.json({ approved: req.params.id, usersQueued: queued });
  });
  router.get('/tenants/:tenant/users/:id/plan', async (req, res) => {
    const tenant = await tenantOf(req);
    const userId = String(req.params.id);
    const planned = isUuid(userId) ? await planUser(options.reconcile, tenant.id, userId) : undefined;
    if (!planned) throw notFound(`no user ${userId}`);
    res.json({ user: planned.subject.userName, offboarding: planned.offboarding, ...planned.plan });
  });

  const wantsCsv = (req: Request) => req.query.format === 'csv';
  const sendCsv = (res: Response, filename: string, body: string) =>
    res.type('text/csv; charset=utf-8').attachment(filename).send(body);

  const driftReport = async (req: Request, res: Response) => {
    const tenant = await tenantOf(req);
    const header = await reportHeader(db, tenant.id, req.params.id ? String(req.params.id) : undefined);
    const findings = await reportFindings(db, header.id, readFindingFilter(req.query));
    if (wantsCsv(req))
      return sendCsv(res, `drift-${tenant.name}-${header.seq}.csv`, findingsCsv(header.id, findings));
    res.json({ ...header, findings });
  };
  router.get('/tenants/:tenant/drift', driftReport);
  router.post('/tenants/:tenant/drift/scan', async (req, res) => {
    await requestScan(db, (await tenantOf(req)).id, 'admin-api');
    res.status(202).json({ queued: true });
  });
  router.get('/tenants/:tenant/drift/verify', async (req, res) => {
    res.json(await verifyChain(db, (await tenantOf(req)).id));
  });
  router.get('/tenants/:tenant/drift/:id', driftReport);
  router.get('/tenants/:tenant/drift/:id/difference', async (req, res) => {
    const tenant = await tenantOf(req);
    const header = await reportHeader(db, tenant.id, String(req.params.id));
    const findings = await reportFindings(db, header.id);
    res.json({
      report: header.id,
      previousReport: header.summary.difference.previousReportId,
      new: findings.filter((f) => f.status === 'new'),
      stillOpen: findings.filter((f) => f.status === 'open'),
      resolved: await resolvedSince(db, header),
    });
  });
  router.get('/tenants/:tenant/offboarding', async (req, res) => {
    const tenant = await tenantOf(req);
    const { from, to } = readPeriod(req.query);
    const view = await offboardingView(db, tenant.id, from, to);
    if (wantsCsv(req)) return sendCsv(res, `offboarding-${tenant.name}.csv`, offboardingCsv(view));
    res.json(view);
  });
  router.get('/tenants/:tenant/seats/inactive', async (req, res) => {
    const tenant = await tenantOf(req);
    const view = await inactiveSeats(db, tenant.id, readDays(req.query.days));
    if (wantsCsv(req)) return sendCsv(res, `inactive-seats-${tenant.name}.csv`, seatsCsv(view));
    res.json(view);
  });

  router.use(jsonErrorHandler);
  return router;
}
