import type { WebhookDelivery } from '../alerts/endpoints.js';
import type { FindingBetweenScans } from '../drift/between-scans.js';
import type { OffboardingView } from '../drift/offboarding.js';
import type { ChainCheck, FindingFilter, ReportHeader, StoredFinding } from '../drift/reports.js';
import type { InactiveSeatsView } from '../drift/seats.js';
import { escapeHtml } from '../http/html.js';
import type { ImportReport } from '../import/importer.js';
import type { Receipt } from '../reconcile/receipts.js';
import type { Tenant } from '../tenants/tenants.js';

export interface ConsoleView {
  tenant: Tenant;
  viewer: string;
  report: ReportHeader | undefined;
  findings: StoredFinding[];
  moreFindings: boolean;
  filter: FindingFilter;
  teams: string[];
  classes: readonly string[];
  severities: readonly string[];
  offboarding: OffboardingView;
  seats: InactiveSeatsView;
  /** The latest report's link and content checked (the CLI and API check the whole chain). */
  chain: ChainCheck;
  /** Findings of the previous report this one no longer has (the first few). */
  resolved: StoredFinding[];
  /** The latest webhook deliveries (alerts sent to people) and how each ended. */
  deliveries: WebhookDelivery[];
  /** Grants outside idsync the audit-trail poll found since the latest scan started. */
  betweenScans: FindingBetweenScans[];
}

const e = (value: unknown) => escapeHtml(value === null || value === undefined ? '' : String(value));

const STYLE = `<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:78rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:2px solid #eee;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem;font-size:14px}
td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e3e3;vertical-align:top}
th{background:#f6f6f6}.muted{color:#666}.cards{display:flex;gap:.8rem;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem .9rem;min-width:8rem}.card b{display:block;font-size:1.5rem}
.critical{color:#fff;background:#b00020;padding:0 .3rem;border-radius:3px}.high{color:#b00020;font-weight:600}
.medium{color:#a15c00}.low{color:#555}.info{color:#777}.new{background:#eef8ee}
form.filters{display:flex;gap:.6rem;align-items:end;flex-wrap:wrap}form.filters label{display:flex;flex-direction:column;font-size:13px}
.ok{color:#1b7f2a}.bad{color:#b00020;font-weight:600}nav a{margin-right:1rem}
</style>`;

const ms = (value: number | null) =>
  value === null
    ? '—'
    : value < 1_000
      ? `${value} ms`
      : value < 120_000
        ? `${(value / 1000).toFixed(1)} s`
        : `${(value / 60_000).toFixed(1)} min`;

export function renderConsole(view: ConsoleView): string {
  const tenant = e(view.tenant.name);
  const base = `/console/${tenant}`;
  const query = new URLSearchParams(
    Object.entries(view.filter).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  ).toString();
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Security console — ${tenant} — idsync</title>${STYLE}</head><body>
<h1>Security console — ${tenant}</h1>
<p class="muted">Signed in as ${e(view.viewer)} · <nav style="display:inline"><a href="#drift">Drift</a><a href="#offboarding">Offboarding</a><a href="#seats">Inactive seats</a><a href="#import">Import</a><a href="#alerts">Alerts</a></nav></p>
${summarySection(view, base)}
${findingsSection(view, base, query)}
${betweenScansSection(view)}
${offboardingSection(view, base)}
${seatsSection(view, base)}
${importSection(base)}
${alertsSection(view)}
<form method="post" action="${base}/logout"><button type="submit">Sign out of the console</button></form>
</body></html>`;
}

function summarySection(view: ConsoleView, base: string): string {
  const scan = `<form method="post" action="${base}/scan" style="display:inline"><button type="submit">Scan now</button></form>`;
  if (!view.report) {
    return `<section id="drift"><h2>Drift</h2><p>No drift report yet. Scans run every ${view.tenant.driftScanIntervalMinutes} minutes; ${scan}</p></section>`;
  }
  const s = view.report.summary;
  const cards = view.severities
    .map(
      (severity) =>
        `<div class="card"><span class="${severity}">${severity}</span><b>${s.bySeverity[severity] ?? 0}</b></div>`,
    )
    .join('');
  const classes = view.classes
    .map((c) => `<div class="card">${e(c)}<b>${s.byClass[c] ?? 0}</b></div>`)
    .join('');
  const chain = view.chain.valid
    ? '<span class="ok">hash and link to the previous report verified</span>'
    : `<span class="bad">hash chain broken at report #${view.chain.brokenAt?.seq}: ${e(view.chain.brokenAt?.problem)}</span>`;
  const resolved = view.resolved
    .slice(0, 50)
    .map((f) => `<li>${e(f.class)} · ${e(f.account)} · ${where(f) || '—'}</li>`)
    .join('');
  return `<section id="drift"><h2>Drift</h2>
<p>Report #${view.report.seq} of ${e(view.report.createdAt)} (${e(s.connector)}, read ${s.platform.teams} teams, ${s.platform.apps} apps and ${s.platform.memberships} memberships in ${ms(s.durationMs)}) · ${chain} · ${scan}</p>
<p>Since the previous report: <b>${s.difference.new}</b> new (marked below), <b>${s.difference.resolved}</b> resolved, <b>${s.difference.stillOpen}</b> still open.</p>
${resolved ? `<details><summary>Resolved since the previous report</summary><ul id="resolved">${resolved}</ul>${s.difference.resolved > 50 ? '<p class="muted">…and more: <code>GET /api/tenants/&lt;tenant&gt;/drift/&lt;id&gt;/difference</code></p>' : ''}</details>` : ''}
<div class="cards">${cards}</div><div class="cards" style="margin-top:.6rem">${classes}</div></section>`;
}

function findingsSection(view: ConsoleView, base: string, query: string): string {
  if (!view.report) return '';
  const option = (value: string, selected: string | undefined) =>
    `<option value="${e(value)}"${value === selected ? ' selected' : ''}>${e(value || 'any')}</option>`;
  const rows = view.findings
    .map(
      (
        f,
      ) => `<tr class="${f.status === 'new' ? 'new' : ''}"><td><span class="${f.severity}">${f.severity}</span></td><td>${e(f.class)}</td>
<td>${e(f.account)}</td><td>${where(f)}</td>
<td>${e(f.expected ?? '—')}</td><td>${e(f.actual ?? '—')}</td><td>${e(f.since.slice(0, 16).replace('T', ' '))}${f.status === 'new' ? ' (new)' : ''}</td><td>${e(f.action)}</td></tr>`,
    )
    .join('\n');
  return `<section><h3>Findings</h3>
<form class="filters" method="get" action="${base}">
<label>Class<select name="class">${['', ...view.classes].map((c) => option(c, view.filter.class)).join('')}</select></label>
<label>Severity<select name="severity">${['', ...view.severities].map((c) => option(c, view.filter.severity)).join('')}</select></label>
<label>Team<select name="team">${['', ...view.teams].map((t) => option(t, view.filter.team)).join('')}</select></label>
<label>User<input name="user" value="${e(view.filter.user)}" placeholder="part of the e-mail"></label>
<button type="submit">Filter</button> <a href="${base}">clear</a> · <a href="${base}/drift.csv${query ? `?${query}` : ''}">Download CSV</a>
</form>
<table id="findings"><thead><tr><th>Severity</th><th>Class</th><th>Account</th><th>Where</th><th>Expected</th><th>Actual</th><th>Since</th><th>Suggested action</th></tr></thead>
<tbody>${rows || '<tr><td colspan="8">No findings match.</td></tr>'}</tbody></table>
${view.moreFindings ? `<p class="muted">Showing the first ${view.findings.length}; narrow the filter or download the CSV for all.</p>` : ''}</section>`;
}

function offboardingSection(view: ConsoleView, base: string): string {
  const o = view.offboarding;
  const rows = o.offboardings
    .slice(0, 200)
    .map(
      (
        r,
      ) => `<tr><td><a href="${base}/offboarding/${e(r.userId)}">${e(r.userName)}</a></td><td>${e(r.idpEvent)}</td><td>${e(r.idpEventAt.slice(0, 19).replace('T', ' '))}</td>
<td>${ms(r.timeToEffectMs)}</td><td>${r.edgesRemoved}</td><td>${r.tokensRevoked}</td><td>${r.leftToHuman}</td><td class="${r.status === 'complete' ? 'ok' : 'bad'}">${r.status}</td></tr>`,
    )
    .join('\n');
  return `<section id="offboarding"><h2>Offboarding</h2>
<p>${o.stats.offboarded} offboarded between ${e(o.from.slice(0, 10))} and ${e(o.to.slice(0, 10))}, ${o.stats.complete} complete. Time to effect (IdP event → last edge removed): p50 <b>${ms(o.stats.p50Ms)}</b>, p95 <b>${ms(o.stats.p95Ms)}</b>, max <b>${ms(o.stats.maxMs)}</b>. <a href="${base}/offboarding.csv?from=${e(o.from)}&amp;to=${e(o.to)}">Download CSV</a></p>
<table id="offboardings"><thead><tr><th>User</th><th>IdP event</th><th>At</th><th>Time to effect</th><th>Edges removed</th><th>Tokens revoked</th><th>Left to a human</th><th>Status</th></tr></thead>
<tbody>${rows || '<tr><td colspan="8">Nobody was offboarded in this period.</td></tr>'}</tbody></table></section>`;
}

function seatsSection(view: ConsoleView, base: string): string {
  const s = view.seats;
  const rows = s.seats
    .slice(0, 200)
    .map(
      (
        seat,
      ) => `<tr${seat.flagged ? ' class="flagged"' : ''}><td>${e(seat.userName)}</td><td>${e(seat.lastSsoLoginAt?.slice(0, 10) ?? 'never')}</td><td>${e(seat.lastActivity ? `${seat.lastActivity.at.slice(0, 10)} ${seat.lastActivity.kind}${seat.lastActivity.app ? ` (${seat.lastActivity.app})` : ''}` : 'none')}</td><td>${seat.inactiveDays}</td><td>${e(seat.seatRole)}</td>
<td>${e(
        Object.entries(seat.teams)
          .map(([t, r]) => `${t} (${r})`)
          .join(', ') || 'Enterprise Account only',
      )}</td><td>${seat.monthlyCost ?? '—'}</td><td>${e(seat.suggestedAction)}</td></tr>`,
    )
    .join('\n');
  return `<section id="seats"><h2>Inactive seats</h2>
<p class="muted">Counted from sign-ins through idsync's SSO; sign-ins straight from the IdP to the platform are not seen, so treat these as candidates to check.</p>
<p>${s.seats.length} seats without an SSO login or platform activity in ${s.days} days${s.totalMonthlyCost === null ? ' (set prices with <code>idsync tenant set --seat-price role=amount</code>)' : `, <b>${s.totalMonthlyCost}</b> a month`}${s.monthlySaving === null ? '' : `; flagged viewer and member seats save <b id="seats-saving">${s.monthlySaving}</b> a month`}. <a href="${base}/seats.csv">Download CSV</a></p>
<table id="seats-table"><thead><tr><th>User</th><th>Last SSO login</th><th>Last platform activity</th><th>Days inactive</th><th>Seat</th><th>Teams</th><th>Monthly cost</th><th>Suggested action</th></tr></thead>
<tbody>${rows || '<tr><td colspan="8">No inactive seats.</td></tr>'}</tbody></table></section>`;
}

/** The upload form: options first, because the server reads the form's fields as they stream in. */
function importSection(base: string): string {
  return `<section id="import"><h2>Import access from a CSV file</h2>
<p class="muted">Columns: account, and team + role (admin, member, viewer) or app + permissions (view, deploy, operate, manage). Needs an admin token with the operator role.</p>
<form method="post" action="${base}/imports" enctype="multipart/form-data">
<label><input type="checkbox" name="dryRun" value="true" checked> Dry run (show the plan, change nothing)</label><br>
<label><input type="checkbox" name="skipInvalid" value="true"> Apply the valid rows even if some are invalid</label><br>
<label><input type="checkbox" name="replace" value="true"> Remove access granted by earlier imports that this file does not name</label><br>
<input type="file" name="file" accept=".csv,text/csv" required> <button type="submit">Import</button>
</form></section>`;
}

/** What an upload did: the verdict, every refused row, and the plan's first rows of each operation. */
export function renderImportReport(tenant: Tenant, report: ImportReport): string {
  const base = `/console/${e(tenant.name)}`;
  const verdict = report.fileError
    ? `<p class="bad">The file was not imported: line ${e(report.fileError.line)}: ${e(report.fileError.reason)}</p>`
    : report.dryRun
      ? '<p>Dry run: nothing was changed.</p>'
      : report.applied
        ? `<p class="ok">Applied: ${report.queuedUsers} users queued for reconcile.${report.heldUsers > 0 ? ` ${report.heldUsers} users' removals are held by the mass-change brake (<code>idsync approve import:${e(report.importId)}</code>).` : ''}</p>`
        : '<p class="bad">Nothing was applied: the file has invalid rows. Fix them, or tick “apply the valid rows”.</p>';
  const unlisted = report.errorCount - report.errors.length;
  const errors = report.errors.length
    ? `<h2>Invalid rows (${report.errorCount})</h2>${unlisted > 0 ? `<p class="muted">The first ${report.errors.length} by line; ${unlisted} more are not listed.</p>` : ''}<table><tr><th>Line</th><th>Reason</th></tr>${report.errors
        .map((r) => `<tr><td>${r.line}</td><td>${e(r.reason)}</td></tr>`)
        .join('')}</table>`
    : '';
  const plan = report.plan
    .filter((p) => p.count > 0)
    .map(
      (p) =>
        `<tr><td>${e(p.operation)}</td><td>${p.count}</td><td>${p.sample
          .map(
            (r) =>
              `${r.line === null ? '' : `line ${r.line}: `}${e(r.account)} ${e(r.team ?? r.app ?? '')} ${e([r.from, r.to].filter(Boolean).join(' → '))}`,
          )
          .join('<br>')}</td></tr>`,
    )
    .join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Import — ${e(tenant.name)} — idsync</title>${STYLE}</head><body>
<h1>Import — ${e(tenant.name)}</h1>
<p class="muted">Import ${e(report.importId)}: ${report.records} rows, ${report.valid} valid, ${report.errorCount} invalid.</p>
${verdict}${errors}
${plan ? `<h2>Plan</h2><table><tr><th>Operation</th><th>Rows</th><th>First rows</th></tr>${plan}</table>` : ''}
<p><a href="${base}#import">Back to the console</a></p></body></html>`;
}

function where(f: StoredFinding): string {
  if (f.team) return `team ${e(f.team)}`;
  if (f.app) return `app ${e(f.app)}`;
  return f.class === 'blocked' || f.class === 'failed-job' ? '' : 'Enterprise Account';
}

/** One offboarding receipt, as an auditor reads it. */
export function renderReceipt(tenant: Tenant, receipt: Receipt): string {
  const edges = receipt.edgesRemoved
    .map(
      (edge) =>
        `<tr><td>${e(edge.removedAt.slice(0, 23).replace('T', ' '))}</td><td>${e(edge.description)}</td></tr>`,
    )
    .join('\n');
  const left = receipt.leftToHuman
    .map((step) => `<tr><td>${e(step.edge)}</td><td>${e(step.why)}</td><td>${e(step.action)}</td></tr>`)
    .join('\n');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Offboarding receipt — ${e(receipt.user.userName)} — idsync</title>${STYLE}</head><body>
<p><a href="/console/${e(tenant.name)}#offboarding">← Security console</a></p>
<h1>Offboarding receipt — ${e(receipt.user.userName)}</h1>
<p>IdP event <b>${e(receipt.idpEvent.event)}</b> at ${e(receipt.idpEvent.at)}; status <b class="${receipt.status === 'complete' ? 'ok' : 'bad'}">${receipt.status}</b>${receipt.completedAt ? ` at ${e(receipt.completedAt)}` : ''}; time to effect ${ms(receipt.timeToEffectMs)}; ${receipt.tokensRevoked} idsync tokens and sessions revoked.</p>
<h2>Edges removed (${receipt.edgesRemoved.length})</h2>
<table id="edges"><thead><tr><th>Removed at</th><th>Edge</th></tr></thead><tbody>${edges || '<tr><td colspan="2">None.</td></tr>'}</tbody></table>
<h2>Left to a human</h2>
<table id="left-to-human"><thead><tr><th>What</th><th>Why</th><th>What to do</th></tr></thead><tbody>${left || '<tr><td colspan="3">Nothing.</td></tr>'}</tbody></table>
</body></html>`;
}

function betweenScansSection(view: ConsoleView): string {
  if (view.betweenScans.length === 0) return '';
  const rows = view.betweenScans
    .map(
      (
        f,
      ) => `<tr class="new"><td>${e(f.foundAt.slice(0, 19).replace('T', ' '))}</td><td><span class="${e(f.severity)}">${e(f.severity)}</span></td>
<td>${e(f.class)}</td><td>${e(f.account)}</td><td>${e(f.edge)}</td><td>${e(f.actor ?? 'unknown')}</td><td>${f.outcome === 'fix-queued' ? 'removal queued' : 'reported: needs a person'}</td></tr>`,
    )
    .join('\n');
  return `<section id="between-scans"><h2>Found since the last scan (platform audit trail)</h2>
<p class="muted">Access granted outside idsync, found by the audit-trail poll; the next scan's report includes what is still there.</p>
<table><thead><tr><th>Found</th><th>Severity</th><th>Class</th><th>Account</th><th>Access</th><th>Granted by</th><th>Outcome</th></tr></thead>
<tbody>${rows}</tbody></table></section>`;
}

function alertsSection(view: ConsoleView): string {
  const rows = view.deliveries
    .map(
      (
        d,
      ) => `<tr><td>${e(d.createdAt.slice(0, 19).replace('T', ' '))}</td><td>${e(d.event)}</td><td>${e(d.url)}</td>
<td class="${d.status === 'delivered' ? 'ok' : d.status === 'pending' ? 'muted' : 'bad'}">${e(d.status)}</td><td>${d.attempts}</td><td>${e(d.lastResponseStatus ?? d.lastError ?? '—')}</td></tr>`,
    )
    .join('\n');
  return `<section id="alerts"><h2>Alerts sent</h2>
<p class="muted">Webhook deliveries (<code>idsync webhook deliveries</code>), newest first.</p>
<table id="deliveries"><thead><tr><th>At</th><th>Event</th><th>Endpoint</th><th>Status</th><th>Attempts</th><th>Last answer</th></tr></thead>
<tbody>${rows || '<tr><td colspan="6">No alerts sent. Add an endpoint with <code>idsync webhook add</code>.</td></tr>'}</tbody></table></section>`;
}
