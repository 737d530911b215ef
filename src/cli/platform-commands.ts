import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { invalid } from '../errors.js';
import { forecastBudget } from '../platform/budget-forecast.js';
import { budgetKey, resolveToken } from '../platform/factory.js';
import { RateBudget } from '../platform/heroku/budget.js';
import { checkHeroku, FIRST_CONNECTION_CHECKS } from '../platform/heroku/check.js';
import { HerokuClient } from '../platform/heroku/client.js';
import { herokuSettingsSchema } from '../platform/heroku/settings.js';
import {
  loadPlatform,
  rememberBudgetKey,
  rememberEnterpriseAccountId,
  setPlatform,
} from '../platform/settings.js';
import { SecretBox } from '../security/secret-box.js';
import { findTenantByName } from '../tenants/tenants.js';
import { CliError, EXIT, type PlatformContext, withPlatform } from './context.js';

/** `idsync platform set|check|budget`: which platform a tenant manages, and its health and budget. */
export function registerPlatformCommands(program: Command): void {
  const platform = program
    .command('platform')
    .description('the platform a tenant manages (builtin or heroku)');

  platform
    .command('set <connector>')
    .description('builtin, or heroku with --enterprise-account and a token (--token-env VAR, or on stdin)')
    .requiredOption('--tenant <name>', 'tenant')
    .option('--enterprise-account <id-or-name>', 'Heroku Enterprise Account')
    .option('--token-env <variable>', 'read the Heroku API token from this environment variable at run time')
    .option('--token-stdin', 'read the Heroku API token from stdin and store it encrypted', false)
    .option('--api-url <url>', 'Heroku API base URL', 'https://api.heroku.com')
    .action(
      (
        connector: string,
        options: {
          tenant: string;
          enterpriseAccount?: string;
          tokenEnv?: string;
          tokenStdin: boolean;
          apiUrl: string;
        },
      ) =>
        withPlatform(async ({ database, config }) => {
          const tenant = await findTenantByName(database.db, options.tenant);
          const box = options.tokenStdin ? SecretBox.fromConfig(config) : undefined;
          if (connector === 'builtin') {
            await setPlatform(database.db, tenant.id, { connector: 'builtin' });
          } else if (connector === 'heroku') {
            if (!options.enterpriseAccount) throw invalid('heroku needs --enterprise-account');
            const token = options.tokenStdin ? readFileSync(0, 'utf8').trim() : undefined;
            if (options.tokenStdin && !token) throw invalid('no token on stdin');
            await setPlatform(
              database.db,
              tenant.id,
              {
                connector: 'heroku',
                enterpriseAccount: options.enterpriseAccount,
                apiUrl: options.apiUrl,
                ...(options.tokenEnv ? { tokenEnv: options.tokenEnv } : {}),
                ...(token ? { token } : {}),
              },
              box,
            );
          } else {
            throw invalid(`unknown connector ${connector}: use builtin or heroku`);
          }
          process.stdout.write(
            `tenant ${tenant.name} now manages the ${connector} platform${connector === 'heroku' ? '; run `idsync platform check` to verify the token' : ''}\n`,
          );
        }),
    );

  platform
    .command('check')
    .description('verify the platform token and print what it can see')
    .requiredOption('--tenant <name>', 'tenant')
    .action((options: { tenant: string }) =>
      withPlatform(async (context) => {
        const { client, tenantId, settings, token } = await herokuClient(context, options.tenant);
        const seen = await checkHeroku(client, settings);
        await rememberBudgetKey(context.database.db, tenantId, seen.account.id);
        // From now on the budget is keyed by the account; start it from what Heroku just said.
        const accountBudget = new RateBudget(
          context.redis,
          budgetKey({ ...settings, budgetKey: seen.account.id }, token),
          settings,
        );
        if (client.lastRemaining !== undefined) await accountBudget.observe(client.lastRemaining);
        await rememberEnterpriseAccountId(context.database.db, tenantId, seen.enterpriseAccount.id);
        process.stdout.write(
          [
            `token OK: ${seen.account.email} (${seen.account.id})${seen.account.sso ? ' — under SSO' : ', not under SSO'}`,
            `Enterprise Account: ${seen.enterpriseAccount.name} (${seen.enterpriseAccount.id})`,
            `  members: ${seen.members}`,
            `  teams (${seen.teams.length}): ${seen.teams.map((t) => `${t.name} (${t.role ?? 'no role'})`).join(', ') || '(none)'}`,
            ...seen.warnings.map((w) => `WARNING: ${w}`),
            `requests used: ${seen.requests}`,
            '',
            'Not settled by any public source; check these once against the real Enterprise Account:',
            ...FIRST_CONNECTION_CHECKS.map((c, i) => `  ${i + 1}. ${c}`),
            '',
          ].join('\n'),
        );
      }),
    );

  platform
    .command('budget')
    .description('the shared rate budget left and how long queued work will take')
    .requiredOption('--tenant <name>', 'tenant')
    .option('--format <format>', 'text or json', 'text')
    .action((options: { tenant: string; format: string }) =>
      withPlatform(async (context) => {
        const { budget, tenantId } = await herokuClient(context, options.tenant);
        const forecast = await forecastBudget(
          context.database.db,
          context.queues,
          tenantId,
          await budget.state(),
        );
        if (options.format === 'json') {
          process.stdout.write(`${JSON.stringify(forecast, null, 2)}\n`);
          return;
        }
        const { budget: state, queued } = forecast;
        process.stdout.write(
          [
            `remaining: ${state.remaining ?? 'unknown (no request made yet)'}${state.capacity ? ` of ${state.capacity}` : ''}, refilling ${state.refillPerMinute}/min${state.observedAt ? ` (Heroku said so at ${state.observedAt.toISOString()})` : ''}`,
            `queued: ${queued.deprovision.jobs} deprovisions (~${queued.deprovision.requests} requests), ${queued.reconcile.jobs} reconciles (~${queued.reconcile.requests}), ${queued.scan.jobs} scans (~${queued.scan.requests})`,
            `deprovisions done in: ${forecast.deprovisionsDoneInMinutes === 0 ? 'now (the budget covers them)' : `~${forecast.deprovisionsDoneInMinutes} min`}`,
            `all queued work done in: ${forecast.allDoneInMinutes === 0 ? 'now (the budget covers it)' : `~${forecast.allDoneInMinutes} min`}`,
            '',
          ].join('\n'),
        );
      }),
    );
}

/** A client for `check` and `budget`: scan priority, so it never jumps ahead of a deprovision. */
async function herokuClient(context: PlatformContext, tenantName: string) {
  const tenant = await findTenantByName(context.database.db, tenantName);
  const stored = (await loadPlatform(context.database.db, tenant.id))!;
  if (stored.connector !== 'heroku') {
    throw new CliError(
      `tenant ${tenant.name} manages the ${stored.connector} platform, not Heroku`,
      EXIT.usage,
    );
  }
  const settings = herokuSettingsSchema.parse(stored.connector_settings);
  const token = resolveToken(settings, () => SecretBox.fromConfig(context.config));
  const budget = new RateBudget(context.redis, budgetKey(settings, token), settings);
  const client = new HerokuClient({
    apiUrl: settings.apiUrl,
    token,
    budget,
    priority: 'scan',
    log: context.log,
  });
  return { client, budget, settings, token, tenantId: tenant.id };
}
