import type { Command } from 'commander';
import { sinceLastScanQuerySchema } from '../admin/schemas.js';
import { findingsSinceLastScan } from '../drift/between-scans.js';
import { findingsCsv, offboardingCsv, seatsCsv } from '../drift/csv.js';
import { failedJobsOf } from '../drift/failed-jobs.js';
import { offboardingView } from '../drift/offboarding.js';
import { readDays, readFindingFilter, readPeriod } from '../drift/queries.js';
import { type ReportSummary, reportFindings, reportHeader, verifyChain } from '../drift/reports.js';
import { runDriftScan } from '../drift/scan.js';
import { inactiveSeats } from '../drift/seats.js';
import { invalid } from '../errors.js';
import { parsedOrInvalid } from '../http/validation.js';
import { findTenantByName } from '../tenants/tenants.js';
import { CliError, EXIT, withDatabase, withPlatform } from './context.js';
import { startProgress } from './progress.js';

type Format = 'text' | 'json' | 'csv';

function format(value: string): Format {
  if (value !== 'text' && value !== 'json' && value !== 'csv')
    throw invalid('--format takes text, json or csv');
  return value;
}

function summaryLines(summary: ReportSummary): string[] {
  const classes = Object.entries(summary.byClass)
    .filter(([, n]) => n > 0)
    .map(([c, n]) => `${c} ${n}`)
    .join(', ');
  const severities = Object.entries(summary.bySeverity)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${s} ${n}`)
    .join(', ');
  return [
    `findings: ${summary.total}${classes ? ` (${classes})` : ''}`,
    `severity: ${severities || 'none'}`,
    `since the previous report: ${summary.difference.new} new, ${summary.difference.resolved} resolved, ${summary.difference.stillOpen} still open`,
    `platform read: ${summary.platform.enterpriseMembers} Enterprise Account members, ${summary.platform.teams} teams, ${summary.platform.apps} apps, ${summary.platform.memberships} memberships in ${summary.durationMs} ms (${summary.connector})`,
    ...(summary.fixesQueued ? [`reconciles queued by the fix policy: ${summary.fixesQueued}`] : []),
  ];
}

/** `idsync drift`, `idsync drift scan|verify|since-last-scan`, `idsync offboarding`, `idsync seats inactive`. */
export function registerSecurityCommands(program: Command): void {
  // Options of `drift` come before its subcommand, so `drift scan --tenant x` gives --tenant to scan.
  program.enablePositionalOptions();
  const drift = program
    .command('drift')
    .enablePositionalOptions()
    .description('where the platform and the IdP disagree: the latest drift report (or scan, verify)')
    .option('--tenant <name>', 'tenant')
    .option('--report <id>', 'a report id (default: the latest)')
    .option('--format <format>', 'text, json or csv', 'text')
    .option('--class <class>', 'only this finding class')
    .option('--severity <severity>', 'only this severity')
    .option('--team <team>', 'only this team')
    .option('--user <text>', 'only accounts containing this')
    .action((options: Record<string, string | undefined> & { format: string }) =>
      withDatabase(async ({ db }) => {
        const as = format(options.format);
        if (!options.tenant)
          throw new CliError("required option '--tenant <name>' not specified", EXIT.usage);
        const tenant = await findTenantByName(db, options.tenant);
        const header = await reportHeader(db, tenant.id, options.report);
        const findings = await reportFindings(db, header.id, readFindingFilter(options));
        if (as === 'csv') process.stdout.write(findingsCsv(header.id, findings));
        else if (as === 'json') process.stdout.write(`${JSON.stringify({ ...header, findings }, null, 2)}\n`);
        else {
          process.stdout.write(
            [
              `drift report #${header.seq} ${header.id} of ${header.createdAt}`,
              ...summaryLines(header.summary),
              '',
              ...findings.map(
                (f) =>
                  `${f.severity}\t${f.class}\t${f.account}\t${f.team ? `team ${f.team}` : f.app ? `app ${f.app}` : ''}\texpected=${f.expected ?? '-'}\tactual=${f.actual ?? '-'}\tsince=${f.since}\t${f.action}`,
              ),
              '',
            ].join('\n'),
          );
        }
      }),
    );
  drift
    .command('scan')
    .description('scan now: read the platform, compare with the IdP, store a report')
    .requiredOption('--tenant <name>', 'tenant')
    .action((options: { tenant: string }) =>
      withPlatform(async ({ database, queues, connectorFor }) => {
        const tenant = await findTenantByName(database.db, options.tenant);
        // The number of teams and apps is known only as the platform is read: the total grows with it.
        let total = 2;
        const progress = startProgress({ label: 'drift scan', total });
        const result = await runDriftScan(
          {
            database,
            connector: await connectorFor(tenant.id, 'scan'),
            failedJobs: () => failedJobsOf(database.db, queues, tenant.id),
            onStep: (step) => {
              if (step !== 'desired' && step !== 'stored') progress.setTotal(++total);
              progress.advance(1, step);
            },
          },
          tenant.id,
          'cli',
        ).finally(() => progress.finish());
        process.stdout.write(
          [`stored drift report #${result.seq} ${result.reportId}`, ...summaryLines(result.summary), ''].join(
            '\n',
          ),
        );
      }),
    );
  drift
    .command('since-last-scan')
    .description(
      'access granted outside idsync that the audit-trail poll found since the latest scan started (its report does not hold it yet), newest first',
    )
    .requiredOption('--tenant <name>', 'tenant')
    .option('--limit <n>', 'how many (1 to 500)', '50')
    .option('--before <cursor>', 'continue after this point (the "next" of a previous page)')
    .option('--format <format>', 'text or json', 'text')
    .action((options: { tenant: string; limit: string; before?: string; format: string }) =>
      withDatabase(async ({ db }) => {
        const as = format(options.format);
        if (as === 'csv') throw invalid('--format takes text or json here');
        const page = parsedOrInvalid(sinceLastScanQuerySchema, {
          limit: options.limit,
          before: options.before,
        });
        const tenant = await findTenantByName(db, options.tenant);
        const view = await findingsSinceLastScan(db, tenant.id, page);
        if (as === 'json') return void process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
        const n = view.findings.length;
        process.stdout.write(
          [
            `${n} ${n === 1 ? 'finding' : 'findings'} from the platform audit trail since ${view.since ? `the scan started ${view.since}` : 'the first poll (no scan yet)'}`,
            ...view.findings.map(
              (f) =>
                `${f.foundAt}\t${f.severity}\t${f.class}\t${f.account}\t${f.edge}\tgranted-by=${f.actor ?? 'unknown'}\t${f.outcome === 'fix-queued' ? 'removal queued' : 'reported: needs a person'}`,
            ),
            ...(view.next ? [`more: --before ${view.next}`] : []),
            '',
          ].join('\n'),
        );
      }),
    );
  drift
    .command('verify')
    .description('recompute the hash chain of every report: evidence nobody edited')
    .requiredOption('--tenant <name>', 'tenant')
    .action((options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const check = await verifyChain(db, tenant.id);
        if (!check.valid) {
          throw new CliError(
            `the chain is broken at report #${check.brokenAt!.seq} ${check.brokenAt!.id}: ${check.brokenAt!.problem}`,
            EXIT.dataError,
          );
        }
        process.stdout.write(
          `${check.reports} ${check.reports === 1 ? 'report' : 'reports'}, hash chain intact\n`,
        );
      }),
    );

  program
    .command('offboarding')
    .description('offboarded users with time-to-effect (IdP event to last edge removed)')
    .requiredOption('--tenant <name>', 'tenant')
    .option('--from <date>', 'from this date (default: 30 days ago)')
    .option('--to <date>', 'until this date (default: now)')
    .option('--format <format>', 'text, json or csv', 'text')
    .action((options: { tenant: string; from?: string; to?: string; format: string }) =>
      withDatabase(async ({ db }) => {
        const as = format(options.format);
        const tenant = await findTenantByName(db, options.tenant);
        const { from, to } = readPeriod(options);
        const view = await offboardingView(db, tenant.id, from, to);
        if (as === 'csv') return void process.stdout.write(offboardingCsv(view));
        if (as === 'json') return void process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
        const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);
        process.stdout.write(
          [
            `${view.stats.offboarded} offboarded from ${view.from} to ${view.to}, ${view.stats.complete} complete`,
            `time to effect: p50 ${ms(view.stats.p50Ms)}, p95 ${ms(view.stats.p95Ms)}, max ${ms(view.stats.maxMs)}`,
            '',
            ...view.offboardings.map(
              (o) =>
                `${o.status}\t${o.userName}\t${o.idpEvent} ${o.idpEventAt}\ttime-to-effect=${ms(o.timeToEffectMs)}\tedges=${o.edgesRemoved}\ttokens=${o.tokensRevoked}\tleft-to-human=${o.leftToHuman}`,
            ),
            '',
          ].join('\n'),
        );
      }),
    );

  program
    .command('seats')
    .description('seats on the platform')
    .command('inactive')
    .description(
      'seats with no SSO login and no platform activity in N days (tenant setting, default 30), their roles and cost',
    )
    .requiredOption('--tenant <name>', 'tenant')
    .option('--days <days>', 'override the tenant’s inactivity window')
    .option('--format <format>', 'text, json or csv', 'text')
    .action((options: { tenant: string; days?: string; format: string }) =>
      withDatabase(async ({ db }) => {
        const as = format(options.format);
        const tenant = await findTenantByName(db, options.tenant);
        const view = await inactiveSeats(db, tenant.id, readDays(options.days));
        if (as === 'csv') return void process.stdout.write(seatsCsv(view));
        if (as === 'json') return void process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
        process.stdout.write(
          [
            `${view.seats.length} seats without an SSO login or platform activity in ${view.days} days${view.totalMonthlyCost === null ? '' : `, ${view.totalMonthlyCost}/month`}${view.monthlySaving === null ? '' : `; saving ${view.monthlySaving}/month from ${view.seats.filter((s) => s.flagged).length} viewer and member seats`}`,
            ...view.seats.map(
              (s) =>
                `${s.flagged ? '!' : ' '} ${s.userName}\tlast-login=${s.lastSsoLoginAt ?? 'never'}\tlast-activity=${s.lastActivity ? `${s.lastActivity.at} ${s.lastActivity.kind}${s.lastActivity.app ? ` ${s.lastActivity.app}` : ''}` : 'none'}\t${s.seatRole}\tteams=${
                  Object.entries(s.teams)
                    .map(([t, r]) => `${t}:${r}`)
                    .join(',') || '-'
                }\tcost=${s.monthlyCost ?? '-'}\t${s.suggestedAction}`,
            ),
            '',
          ].join('\n'),
        );
      }),
    );
}
