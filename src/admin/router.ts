import { sql } from 'drizzle-orm';
import { type NextFunction, type Request, type Response, Router } from 'express';
import {
  addWebhook,
  listWebhooks,
  recentDeliveries,
  removeWebhook,
  webhookInputSchema,
} from '../alerts/endpoints.js';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { accountKeyOf } from '../db/schema.js';
import { isUuid } from '../db/uuid.js';
import { findingsSinceLastScan } from '../drift/between-scans.js';
import { findingsCsv, offboardingCsv, seatsCsv } from '../drift/csv.js';
import { offboardingView } from '../drift/offboarding.js';
import { readDays, readFindingFilter, readPeriod, requestScan } from '../drift/queries.js';
import { reportFindings, reportHeader, resolvedSince, verifyChain } from '../drift/reports.js';
import { inactiveSeats } from '../drift/seats.js';
import { forbidden, invalid, notFound, rootCause, unauthorized } from '../errors.js';
import { jsonBody, refuseHostileText } from '../http/hostile-input.js';
import { jsonErrorHandler } from '../http/json-errors.js';
import { parsedOrInvalid } from '../http/validation.js';
import { readImportFile } from '../import/csv-rows.js';
import { importAssignments, importRefusal } from '../import/importer.js';
import { flag, readUpload } from '../import/upload.js';
import { readActivityInput, recordActivity } from '../platform/activity.js';
import { approveChange, listHeldChanges } from '../reconcile/brake.js';
import { latestReceipt } from '../reconcile/receipts.js';
import { planUser, type ReconcileDependencies } from '../reconcile/reconciler.js';
import { addRule, listRules, readRuleInput, removeRule } from '../reconcile/rules.js';
import {
  type AdminPrincipal,
  type AdminRole,
  adminActor,
  authenticateAdmin,
  createAdminToken,
  listAdminTokens,
  revokeAdminToken,
  roleIncludes,
} from '../security/admin-tokens.js';
import {
  createClient,
  listClients,
  readClientScopes,
  removeClient,
  rotateClient,
} from '../security/oauth-clients.js';
import type { SecretBox } from '../security/secret-box.js';
import { findTenantByName, type Tenant } from '../tenants/tenants.js';
import { issueApiToken } from '../tokens/tokens.js';
import {
  createAdminTokenBodySchema,
  createClientBodySchema,
  deliveriesQuerySchema,
  issueTokenBodySchema,
  sinceLastScanQuerySchema,
} from './schemas.js';

/*
 * The admin API (JSON). Every request names an admin principal (IDSYNC_ADMIN_TOKEN, the bootstrap
 * owner of all tenants, or an `idsync admin-token` with a role and maybe one tenant); each route says
 * the least role it needs; a tenant-scoped token asking for another tenant gets the same 404 as a tenant
 * that does not exist, so it learns nothing about which tenants exist. Every request is audited with
 * the principal's name.
 */

export interface AdminRouterOptions {
  db: Database;
  adminToken: string | undefined;
  reconcile: ReconcileDependencies;
  /** Seals webhook secrets; undefined when this process has no key every process shares. */
  secretBox?: SecretBox | undefined;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: a webhook URL may name a loopback/private address. */
  webhookAllowPrivateNetworks: boolean;
}

interface AdminLocals {
  principal: AdminPrincipal;
  /** The tenant the request is about, once resolved (for its audit row). */
  tenantId?: string;
}

const principalOf = (res: Response) => (res.locals as AdminLocals).principal;

function authenticate(db: Database, environmentToken: string | undefined) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(req.get('Authorization') ?? '')?.[1];
    const principal = await authenticateAdmin(db, presented, environmentToken);
    if (!principal) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="idsync admin"');
      throw unauthorized(
        'a valid admin bearer token is required (IDSYNC_ADMIN_TOKEN or `idsync admin-token create`)',
      );
    }
    (res.locals as AdminLocals).principal = principal;
    auditWhenDone(db, req, res);
    next();
  };
}

/** One audit row per admin request, written after the answer: who, what, and how it ended. */
function auditWhenDone(db: Database, req: Request, res: Response) {
  res.on('finish', () => {
    const { principal, tenantId } = res.locals as AdminLocals;
    recordAudit(db, {
      tenantId: tenantId ?? null,
      actor: adminActor(principal),
      action: `admin_api.${req.method.toLowerCase()}`,
      after: { path: req.baseUrl + req.path, status: res.statusCode, role: principal.role },
      correlationId: typeof req.id === 'string' ? req.id : null,
    }).catch((error: unknown) =>
      req.log?.error({ err: rootCause(error) }, 'could not audit an admin request'),
    );
  });
}

/** Refuses a principal whose role is below `needed` (403: the token is valid, the action is not). */
const requireRole = (needed: AdminRole) => (_req: Request, res: Response, next: NextFunction) => {
  const { role } = principalOf(res);
  if (!roleIncludes(role, needed)) throw forbidden(`this needs the ${needed} role; the token is ${role}`);
  next();
};

export function adminRouter(options: AdminRouterOptions): Router {
  const { db } = options;
  const router = Router();
  router.use(jsonBody({ limit: '256kb' }));
  router.use(authenticate(db, options.adminToken));
  router.use(refuseHostileText);

  const auditor = requireRole('auditor');
  const operator = requireRole('operator');
  const owner = requireRole('owner');

  /** The tenant named in the path, if this principal may see it. */
  const tenantOf = async (req: Request, res: Response): Promise<Tenant> => {
    const name = String(req.params.tenant);
    const { tenantId } = principalOf(res);
    const tenant = await findTenantByName(db, name);
    if (tenantId !== null && tenant.id !== tenantId) throw notFound(`no tenant named "${name}"`);
    (res.locals as AdminLocals).tenantId = tenant.id;
    return tenant;
  };
  const actor = (res: Response) => adminActor(principalOf(res));

  router.get('/tenants/:tenant/rules', operator, async (req, res) => {
    res.json({ rules: await listRules(db, (await tenantOf(req, res)).id) });
  });
  router.post('/tenants/:tenant/rules', operator, async (req, res) => {
    const tenant = await tenantOf(req, res);
    res.status(201).json(await addRule(db, tenant.id, readRuleInput(req.body), actor(res)));
  });
  router.delete('/tenants/:tenant/rules/:id', operator, async (req, res) => {
    await removeRule(db, (await tenantOf(req, res)).id, String(req.params.id), actor(res));
    res.status(204).end();
  });
  // A CSV import: the body as text/csv, or one file of a multipart form; options in the query.
  router.post('/tenants/:tenant/imports', operator, async (req, res) => {
    const tenant = await tenantOf(req, res);
    const upload = await readUpload(req);
    const option = (name: string) => flag(req.query[name] ?? upload.fields[name]);
    const report = await importAssignments(db, tenant.id, await readImportFile(upload.file), {
      dryRun: option('dryRun'),
      skipInvalid: option('skipInvalid'),
      replace: option('replace'),
      actor: actor(res),
    });
    const refusal = importRefusal(report);
    if (refusal) throw refusal;
    res.status(report.applied ? 201 : 200).json(report);
  });
  router.get('/tenants/:tenant/users/:id/receipt', auditor, async (req, res) => {
    res.json(await latestReceipt(db, (await tenantOf(req, res)).id, String(req.params.id)));
  });
  router.post('/tenants/:tenant/users/:id/tokens', owner, async (req, res) => {
    const tenant = await tenantOf(req, res);
    const { scopes, expiresInSeconds, label } = parsedOrInvalid(issueTokenBodySchema, req.body ?? {});
    res.status(201).json(
      await issueApiToken(db, tenant.id, String(req.params.id), {
        scopes,
        expiresInSeconds,
        label,
        actor: actor(res),
      }),
    );
  });
  router.get('/tenants/:tenant/changes', operator, async (req, res) => {
    res.json({ changes: await listHeldChanges(db, (await tenantOf(req, res)).id) });
  });
  router.post('/tenants/:tenant/changes/:id/approve', operator, async (req, res) => {
    const queued = await approveChange(db, (await tenantOf(req, res)).id, String(req.params.id), actor(res));
    res.json({ approved: req.params.id, usersQueued: queued });
  });
  router.get('/tenants/:tenant/users/:id/plan', operator, async (req, res) => {
    const tenant = await tenantOf(req, res);
    const ref = String(req.params.id);
    // The user's id or userName, as everywhere else in the admin API and the CLI.
    const [user] = await db.execute<{ id: string }>(sql`
      SELECT id::text FROM users WHERE tenant_id = ${tenant.id}
        AND ${isUuid(ref) ? sql`id = ${ref}::uuid` : sql`user_name_key = ${accountKeyOf(ref)}`}
      LIMIT 1`);
    const planned = user ? await planUser(options.reconcile, tenant.id, user.id) : undefined;
    if (!planned) throw notFound(`no user ${ref}`);
    res.json({ user: planned.subject.userName, offboarding: planned.offboarding, ...planned.plan });
  });

  // Introspection clients of a tenant (owner: they are credentials).
  router.get('/tenants/:tenant/clients', owner, async (req, res) => {
    res.json({ clients: await listClients(db, (await tenantOf(req, res)).id) });
  });
  router.post('/tenants/:tenant/clients', owner, async (req, res) => {
    const tenant = await tenantOf(req, res);
    const body = parsedOrInvalid(createClientBodySchema, req.body ?? {});
    const scopes = readClientScopes(body.scopes);
    res.status(201).json(await createClient(db, tenant.id, body.name, scopes, actor(res)));
  });
  router.post('/tenants/:tenant/clients/:name/rotate', owner, async (req, res) => {
    const tenant = await tenantOf(req, res);
    res.json(await rotateClient(db, tenant.id, String(req.params.name), actor(res)));
  });
  router.delete('/tenants/:tenant/clients/:name', owner, async (req, res) => {
    await removeClient(db, (await tenantOf(req, res)).id, String(req.params.name), actor(res));
    res.status(204).end();
  });

  // Admin tokens. A tenant's owner manages its tenant's tokens only; an all-tenant owner any.
  router.get('/admin-tokens', owner, async (_req, res) => {
    const { tenantId } = principalOf(res);
    res.json({ tokens: await listAdminTokens(db, tenantId ? { tenantId } : {}) });
  });
  router.post('/admin-tokens', owner, async (req, res) => {
    const principal = principalOf(res);
    const body = parsedOrInvalid(createAdminTokenBodySchema, req.body ?? {});
    let tenantId: string | null = null;
    if (body.tenant !== undefined && body.tenant !== null) {
      const name = String(body.tenant);
      const tenant = await findTenantByName(db, name);
      if (principal.tenantId !== null && principal.tenantId !== tenant.id)
        throw notFound(`no tenant named "${name}"`);
      tenantId = tenant.id;
    } else if (principal.tenantId !== null) {
      throw forbidden('a tenant-scoped owner can only create tokens for its own tenant; give "tenant"');
    }
    (res.locals as AdminLocals).tenantId = tenantId ?? undefined;
    const created = await createAdminToken(db, {
      name: body.name,
      tenantId,
      role: body.role,
      actor: actor(res),
    });
    res.status(201).json({ ...created.view, token: created.token });
  });
  router.delete('/admin-tokens/:name', owner, async (req, res) => {
    const { tenantId } = principalOf(res);
    await revokeAdminToken(db, String(req.params.name), actor(res), tenantId ?? undefined);
    res.status(204).end();
  });

  // Webhooks: endpoints carry a signing secret (owner to add or remove); their deliveries are evidence.
  router.get('/tenants/:tenant/webhooks', auditor, async (req, res) => {
    res.json({ webhooks: await listWebhooks(db, (await tenantOf(req, res)).id) });
  });
  router.post('/tenants/:tenant/webhooks', owner, async (req, res) => {
    const tenant = await tenantOf(req, res);
    const input = parsedOrInvalid(webhookInputSchema, req.body ?? {});
    if (!options.secretBox) {
      throw invalid('set IDSYNC_SECRET_KEY (the same in every idsync process) to store webhook secrets');
    }
    res.status(201).json(
      await addWebhook(db, options.secretBox, tenant.id, input, actor(res), {
        allowPrivateNetworks: options.webhookAllowPrivateNetworks,
      }),
    );
  });
  router.delete('/tenants/:tenant/webhooks/:id', owner, async (req, res) => {
    await removeWebhook(db, (await tenantOf(req, res)).id, String(req.params.id), actor(res));
    res.status(204).end();
  });
  router.get('/tenants/:tenant/webhooks/deliveries', auditor, async (req, res) => {
    const limit = parsedOrInvalid(deliveriesQuerySchema, req.query).limit;
    res.json({ deliveries: await recentDeliveries(db, (await tenantOf(req, res)).id, limit) });
  });

  const wantsCsv = (req: Request) => req.query.format === 'csv';
  const sendCsv = (res: Response, filename: string, body: string) =>
    res.type('text/csv; charset=utf-8').attachment(filename).send(body);

  const driftReport = async (req: Request, res: Response) => {
    const tenant = await tenantOf(req, res);
    const header = await reportHeader(db, tenant.id, req.params.id ? String(req.params.id) : undefined);
    const findings = await reportFindings(db, header.id, readFindingFilter(req.query));
    if (wantsCsv(req))
      return sendCsv(res, `drift-${tenant.name}-${header.seq}.csv`, findingsCsv(header.id, findings));
    res.json({ ...header, findings });
  };
  router.get('/tenants/:tenant/drift', auditor, driftReport);
  router.post('/tenants/:tenant/drift/scan', operator, async (req, res) => {
    await requestScan(db, (await tenantOf(req, res)).id, actor(res));
    res.status(202).json({ queued: true });
  });
  router.get('/tenants/:tenant/drift/verify', auditor, async (req, res) => {
    res.json(await verifyChain(db, (await tenantOf(req, res)).id));
  });
  // What the audit-trail poll found after the latest scan started (before /drift/:id, which it would match).
  router.get('/tenants/:tenant/drift/since-last-scan', auditor, async (req, res) => {
    const page = parsedOrInvalid(sinceLastScanQuerySchema, req.query);
    res.json(await findingsSinceLastScan(db, (await tenantOf(req, res)).id, page));
  });
  router.get('/tenants/:tenant/drift/:id', auditor, driftReport);
  router.get('/tenants/:tenant/drift/:id/difference', auditor, async (req, res) => {
    const tenant = await tenantOf(req, res);
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
  router.get('/tenants/:tenant/offboarding', auditor, async (req, res) => {
    const tenant = await tenantOf(req, res);
    const { from, to } = readPeriod(req.query);
    const view = await offboardingView(db, tenant.id, from, to);
    if (wantsCsv(req)) return sendCsv(res, `offboarding-${tenant.name}.csv`, offboardingCsv(view));
    res.json(view);
  });
  router.get('/tenants/:tenant/seats/inactive', auditor, async (req, res) => {
    const tenant = await tenantOf(req, res);
    const view = await inactiveSeats(db, tenant.id, readDays(req.query.days));
    if (wantsCsv(req)) return sendCsv(res, `inactive-seats-${tenant.name}.csv`, seatsCsv(view));
    res.json(view);
  });

  // A platform service (the built-in platform) reports what its users did: the seat audit's activity.
  router.post('/tenants/:tenant/activity', operator, async (req, res) => {
    const tenant = await tenantOf(req, res);
    const activity = readActivityInput(req.body);
    await recordActivity(db, tenant.id, activity);
    res.status(202).json({ recorded: activity.length });
  });

  router.use(jsonErrorHandler);
  return router;
}
