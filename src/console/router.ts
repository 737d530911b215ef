import { createHmac } from 'node:crypto';
import { sql } from 'drizzle-orm';
import express, { type Request, type Response, Router } from 'express';
import { recentDeliveries } from '../alerts/endpoints.js';
import type { Database } from '../db/client.js';
import { findingsBetweenScans } from '../drift/between-scans.js';
import { FINDING_CLASSES, SEVERITIES } from '../drift/compare.js';
import { findingsCsv, offboardingCsv, seatsCsv } from '../drift/csv.js';
import { offboardingView } from '../drift/offboarding.js';
import { readFindingFilter, readPeriod, requestScan } from '../drift/queries.js';
import {
  type FindingFilter,
  reportFindings,
  reportHeader,
  resolvedSince,
  verifyLatest,
} from '../drift/reports.js';
import { inactiveSeats } from '../drift/seats.js';
import { DomainError, forbidden } from '../errors.js';
import { refuseHostileText } from '../http/hostile-input.js';
import { escapeHtml, htmlPage } from '../http/html.js';
import { htmlErrorHandler, sendHtmlError } from '../http/html-errors.js';
import { fromOwnOrigin } from '../http/same-origin.js';
import { readImportFile } from '../import/csv-rows.js';
import { importAssignments } from '../import/importer.js';
import { flag, readUpload } from '../import/upload.js';
import { latestReceipt } from '../reconcile/receipts.js';
import { adminTokenMatches } from '../security/admin-token.js';
import {
  type AdminPrincipal,
  adminActor,
  authenticateAdmin,
  ENVIRONMENT_PRINCIPAL,
  principalByTokenId,
  roleIncludes,
} from '../security/admin-tokens.js';
import { parseCredential } from '../security/credentials.js';
import { currentSession, readCookie } from '../sso/sessions.js';
import { findTenantByName, type Tenant } from '../tenants/tenants.js';
import { renderConsole, renderImportReport, renderReceipt } from './page.js';

/*
 * The security console: server-rendered pages for security teams. Who may look: someone signed in
 * through the tenant's SSO who is in the tenant's console group, or someone who typed the admin token
 * (kept as a short-lived signed cookie, never the token itself). Forms that change something (scan now)
 * only accept requests from idsync's own origin.
 */

const CONSOLE_COOKIE = 'idsync_console';
const CONSOLE_SESSION_MS = 60 * 60_000;
const SHOWN_FINDINGS = 500;
const SHOWN_RESOLVED = 50;
const SHOWN_DELIVERIES = 20;
const SHOWN_BETWEEN_SCANS = 50;

export interface ConsoleRouterOptions {
  db: Database;
  adminToken: string | undefined;
  publicUrl: string;
}

/** Any admin role may look (the console is read-only but for "scan now", which needs an operator). */
type Viewer = { kind: 'admin'; principal: AdminPrincipal } | { kind: 'sso'; userName: string };

export function consoleRouter(options: ConsoleRouterOptions): Router {
  const { db, adminToken, publicUrl } = options;
  const router = Router();
  router.use(express.urlencoded({ extended: false, limit: '16kb' }));
  router.use(refuseHostileText);
  const secure = new URL(publicUrl).protocol === 'https:';

  /**
   * The console cookie holds `<expires>.<token id>.<mac>`, never the token: the MAC's key is the
   * environment token, or the stored hash of an admin token's secret (server-side only), so revoking
   * the token ends its console sessions too.
   */
  const mac = (key: string, tenant: Tenant, tokenId: string, expires: number) =>
    createHmac('sha256', key).update(`console:${tenant.id}:${tokenId}:${expires}`).digest('base64url');
  const ENVIRONMENT = 'environment';

  async function cookieFor(principal: AdminPrincipal, presented: string, tenant: Tenant, expires: number) {
    if (principal.tokenRowId === undefined)
      return `${expires}.${ENVIRONMENT}.${mac(adminToken!, tenant, ENVIRONMENT, expires)}`;
    const tokenId = parseCredential(presented)!.tokenId;
    const [row] = await db.execute<{ secret_hash: string }>(
      sql`SELECT secret_hash FROM admin_tokens WHERE token_id = ${tokenId}`,
    );
    return `${expires}.${tokenId}.${mac(row!.secret_hash, tenant, tokenId, expires)}`;
  }

  /** The admin principal of a console cookie, if it is unexpired, authentic and for this tenant. */
  async function cookiePrincipal(cookie: string, tenant: Tenant): Promise<AdminPrincipal | undefined> {
    const [expiresText, tokenId, signature] = cookie.split('.');
    const expires = Number(expiresText);
    if (!tokenId || !signature || !(expires > Date.now())) return undefined;
    const principal =
      tokenId === ENVIRONMENT
        ? adminToken && adminTokenMatches(signature, mac(adminToken, tenant, ENVIRONMENT, expires))
          ? ENVIRONMENT_PRINCIPAL
          : undefined
        : /^[0-9a-f]{16}$/.test(tokenId)
          ? await principalByTokenId(db, tokenId, (hash) =>
              adminTokenMatches(signature, mac(hash, tenant, tokenId, expires)),
            )
          : undefined;
    return principal && mayOpen(principal, tenant) ? principal : undefined;
  }

  const mayOpen = (principal: AdminPrincipal, tenant: Tenant) =>
    principal.tenantId === null || principal.tenantId === tenant.id;

  async function viewer(req: Request, tenant: Tenant): Promise<Viewer | 'not-in-group' | undefined> {
    const cookie = readCookie(req, CONSOLE_COOKIE);
    const principal = cookie ? await cookiePrincipal(cookie, tenant) : undefined;
    if (principal) return { kind: 'admin', principal };
    const session = await currentSession(db, tenant.id, req);
    if (!session) return undefined;
    if (!tenant.consoleGroup) return 'not-in-group';
    const [row] = await db.execute<{ member: boolean }>(sql`
      SELECT EXISTS (SELECT 1 FROM group_members gm JOIN groups g ON g.id = gm.group_id
        WHERE gm.user_id = ${session.userId} AND lower(g.display_name) = lower(${tenant.consoleGroup})) AS member`);
    return row?.member ? { kind: 'sso', userName: session.userName } : 'not-in-group';
  }

  /** Runs a page handler for an authorised viewer, or sends the sign-in page. */
  const page =
    (handler: (req: Request, res: Response, tenant: Tenant, who: Viewer) => Promise<unknown>) =>
    async (req: Request, res: Response) => {
      try {
        const tenant = await findTenantByName(db, String(req.params.tenant));
        const who = await viewer(req, tenant);
        if (who === 'not-in-group') {
          res
            .status(403)
            .type('html')
            .send(
              htmlPage(
                'Not allowed',
                `<p>You are signed in, but the security console of ${escapeHtml(tenant.name)} is for members of the IdP group ${tenant.consoleGroup ? `<b>${escapeHtml(tenant.consoleGroup)}</b>` : 'the tenant sets with <code>idsync tenant set --console-group</code>'}.</p>`,
              ),
            );
          return;
        }
        if (!who) {
          res.status(401).type('html').send(signInPage(tenant));
          return;
        }
        await handler(req, res, tenant, who);
      } catch (error) {
        sendHtmlError(req, res, error);
      }
    };

  /** Forms that change something accept only requests from idsync's own pages (`fromOwnOrigin`). */
  const ownOrigin = new URL(publicUrl).origin;
  const requireSameOrigin = (req: Request) => {
    if (!fromOwnOrigin(req, ownOrigin)) {
      throw forbidden('this form only accepts requests from the console page itself');
    }
  };

  router.get('/', async (req, res) => {
    const wanted = typeof req.query.tenant === 'string' ? req.query.tenant : undefined;
    const tenants = await db.execute<{ name: string }>(sql`SELECT name FROM tenants ORDER BY name LIMIT 2`);
    const only = tenants.length === 1 ? tenants[0]!.name : undefined;
    if (wanted || only) {
      res.redirect(302, `${publicUrl}/console/${encodeURIComponent(wanted ?? only!)}`);
      return;
    }
    res
      .type('html')
      .send(
        htmlPage(
          'Security console',
          '<form method="get" action="/console"><label>Tenant <input name="tenant"></label> <button type="submit">Open</button></form>',
        ),
      );
  });

  router.get(
    '/:tenant',
    page(async (req, res, tenant, who) => {
      const filter = readFindingFilter(req.query);
      const { from, to } = readPeriod(req.query);
      let report: Awaited<ReturnType<typeof reportHeader>> | undefined;
      try {
        report = await reportHeader(db, tenant.id);
      } catch (error) {
        if (!(error instanceof DomainError && error.kind === 'not_found')) throw error;
      }
      const findings = report ? await reportFindings(db, report.id, filter, SHOWN_FINDINGS + 1) : [];
      const [offboarding, seats, chain, resolved, teams, deliveries, betweenScans] = await Promise.all([
        offboardingView(db, tenant.id, from, to),
        inactiveSeats(db, tenant.id),
        verifyLatest(db, tenant.id),
        report ? resolvedSince(db, report, SHOWN_RESOLVED + 1) : Promise.resolve([]),
        report
          ? db.execute<{ team: string }>(
              sql`SELECT DISTINCT team FROM drift_findings WHERE report_id = ${report.id} AND team IS NOT NULL ORDER BY team`,
            )
          : Promise.resolve([]),
        recentDeliveries(db, tenant.id, SHOWN_DELIVERIES),
        findingsBetweenScans(db, tenant.id, report?.summary.startedAt, SHOWN_BETWEEN_SCANS),
      ]);
      res.type('html').send(
        renderConsole({
          tenant,
          viewer:
            who.kind === 'admin' ? `admin token ${who.principal.name} (${who.principal.role})` : who.userName,
          report,
          findings: findings.slice(0, SHOWN_FINDINGS),
          moreFindings: findings.length > SHOWN_FINDINGS,
          filter,
          teams: teams.map((t) => t.team),
          classes: FINDING_CLASSES,
          severities: SEVERITIES,
          offboarding,
          seats,
          chain,
          resolved,
          deliveries,
          betweenScans,
        }),
      );
    }),
  );

  router.get(
    '/:tenant/offboarding/:user',
    page(async (req, res, tenant) => {
      res
        .type('html')
        .send(renderReceipt(tenant, await latestReceipt(db, tenant.id, String(req.params.user))));
    }),
  );

  router.get(
    '/:tenant/drift.csv',
    page(async (req, res, tenant) => {
      const report = await reportHeader(db, tenant.id);
      const filter: FindingFilter = readFindingFilter(req.query);
      res.type('text/csv; charset=utf-8').attachment(`drift-${tenant.name}-${report.seq}.csv`);
      res.send(findingsCsv(report.id, await reportFindings(db, report.id, filter)));
    }),
  );
  router.get(
    '/:tenant/offboarding.csv',
    page(async (req, res, tenant) => {
      const { from, to } = readPeriod(req.query);
      res.type('text/csv; charset=utf-8').attachment(`offboarding-${tenant.name}.csv`);
      res.send(offboardingCsv(await offboardingView(db, tenant.id, from, to)));
    }),
  );
  router.get(
    '/:tenant/seats.csv',
    page(async (_req, res, tenant) => {
      res.type('text/csv; charset=utf-8').attachment(`inactive-seats-${tenant.name}.csv`);
      res.send(seatsCsv(await inactiveSeats(db, tenant.id)));
    }),
  );
  router.post(
    '/:tenant/scan',
    page(async (req, res, tenant, who) => {
      requireSameOrigin(req);
      if (who.kind === 'admin' && !roleIncludes(who.principal.role, 'operator'))
        throw forbidden('starting a scan needs the operator role');
      await requestScan(
        db,
        tenant.id,
        who.kind === 'admin' ? `console:${adminActor(who.principal)}` : `console:${who.userName}`,
      );
      res.redirect(303, `${publicUrl}/console/${tenant.name}?scan=queued`);
    }),
  );

  // Changes access: an admin token with the operator role, from the console page itself.
  router.post(
    '/:tenant/imports',
    page(async (req, res, tenant, who) => {
      requireSameOrigin(req);
      if (who.kind !== 'admin' || !roleIncludes(who.principal.role, 'operator'))
        throw forbidden('an import needs an admin token with the operator role');
      const upload = await readUpload(req);
      const report = await importAssignments(db, tenant.id, await readImportFile(upload.file), {
        dryRun: flag(upload.fields.dryRun),
        skipInvalid: flag(upload.fields.skipInvalid),
        replace: flag(upload.fields.replace),
        actor: `console:${adminActor(who.principal)}`,
      });
      const refused = report.fileError !== undefined || (!report.applied && !report.dryRun);
      res
        .status(refused ? 400 : 200)
        .type('html')
        .send(renderImportReport(tenant, report));
    }),
  );

  router.post('/:tenant/login', async (req, res) => {
    try {
      const tenant = await findTenantByName(db, String(req.params.tenant));
      const presented = typeof req.body?.token === 'string' ? req.body.token : undefined;
      const principal = await authenticateAdmin(db, presented, adminToken);
      if (!principal || !mayOpen(principal, tenant)) {
        res.status(401).type('html').send(signInPage(tenant, 'That is not an admin token for this tenant.'));
        return;
      }
      const expires = Date.now() + CONSOLE_SESSION_MS;
      res.cookie(CONSOLE_COOKIE, await cookieFor(principal, presented!, tenant, expires), {
        httpOnly: true,
        sameSite: 'lax',
        secure,
        path: `/console/${tenant.name}`,
        maxAge: CONSOLE_SESSION_MS,
      });
      res.redirect(303, `${publicUrl}/console/${tenant.name}`);
    } catch (error) {
      sendHtmlError(req, res, error);
    }
  });
  router.post('/:tenant/logout', (req, res) => {
    try {
      requireSameOrigin(req);
    } catch (error) {
      sendHtmlError(req, res, error);
      return;
    }
    res.clearCookie(CONSOLE_COOKIE, { path: `/console/${String(req.params.tenant)}` });
    res.redirect(303, `${publicUrl}/console/${String(req.params.tenant)}`);
  });
  router.use(htmlErrorHandler);
  return router;
}

function signInPage(tenant: Tenant, problem?: string): string {
  const name = escapeHtml(tenant.name);
  return htmlPage(
    `Security console — ${tenant.name}`,
    `${problem ? `<p class="problem">${escapeHtml(problem)}</p>` : ''}
<p><a href="/sso/${name}/login?RelayState=${encodeURIComponent(`/console/${tenant.name}`)}">Sign in with SSO</a> (members of the tenant's console group).</p>
<form method="post" action="/console/${name}/login"><p><label>Or an admin token (IDSYNC_ADMIN_TOKEN or one from <code>idsync admin-token create</code>, any role)<br><input type="password" name="token" autocomplete="off" size="40"></label> <button type="submit">Open the console</button></p></form>`,
  );
}
