import type { Command } from 'commander';
import { sql } from 'drizzle-orm';
import { accountKeyOf } from '../db/schema.js';
import { invalid, notFound } from '../errors.js';
import { approveChange, listHeldChanges } from '../reconcile/brake.js';
import { describeOperation } from '../reconcile/model.js';
import { latestReceipt } from '../reconcile/receipts.js';
import { planUser, type ReconcileDependencies } from '../reconcile/reconciler.js';
import { addRule, describeRule, listRules, readRuleInput, removeRule } from '../reconcile/rules.js';
import { findTenantByName } from '../tenants/tenants.js';
import { issueApiToken } from '../tokens/tokens.js';
import { withDatabase, withPlatform } from './context.js';

/** `90d`, `12h`, `30m`, `3600s` → seconds. */
function parseDuration(text: string): number {
  const match = /^(\d+)([smhd])$/.exec(text.trim());
  if (!match) throw invalid(`"${text}" is not a duration such as 90d, 12h, 30m or 3600s`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as 's' | 'm' | 'h' | 'd'];
}

const list = (value: string | undefined) =>
  value
    ?.split(',')
    .map((v) => v.trim())
    .filter(Boolean);

type RuleOptions = { [option: string]: string | undefined } & { allTeams?: boolean };

/** `idsync rules …`, `idsync plan`, `idsync receipt`: the access side of the CLI. */
export function registerAccessCommands(program: Command): void {
  const rules = program
    .command('rules')
    .description('assignment rules: IdP group or app role → team, Enterprise Account or app access');
  rules
    .command('add')
    .description(
      'add a rule: exactly one of --group or --app-role, and one of --team, --all-teams, --enterprise or --app',
    )
    .requiredOption('--tenant <name>', 'tenant')
    .option('--group <idp-group>', 'IdP group display name')
    .option('--app-role <value>', "app role value (SCIM roles[].value, e.g. an Entra app role's value)")
    .option('--team <team>', 'team to grant')
    .option('--all-teams', 'every team the platform has, including teams created later (found by scans)')
    .option('--role <role>', 'team role with --team or --all-teams: admin, member or viewer (default member)')
    .option(
      '--enterprise <permissions>',
      'Enterprise Account permissions, comma-separated (view,create,manage,billing)',
    )
    .option('--app <app>', 'app to grant')
    .option('--permissions <permissions>', 'app permissions, comma-separated (view,deploy,operate,manage)')
    .action((options: RuleOptions) =>
      withDatabase(async ({ db }) => {
        const targets = [options.team, options.allTeams, options.enterprise, options.app].filter(
          Boolean,
        ).length;
        if (targets !== 1) throw invalid('give exactly one of --team, --all-teams, --enterprise or --app');
        if ((options.group === undefined) === (options.appRole === undefined)) {
          throw invalid('give exactly one of --group or --app-role');
        }
        // An option that the chosen target ignores is a mistake to point out, not to drop silently.
        if (options.role && !options.team && !options.allTeams)
          throw invalid('--role goes with --team or --all-teams only');
        if (options.permissions && !options.app) {
          throw invalid(
            '--permissions goes with --app only (Enterprise Account permissions: --enterprise view,manage)',
          );
        }
        const source = { idpGroup: options.group, idpAppRole: options.appRole };
        const input = readRuleInput(
          options.team
            ? { ...source, target: 'team', team: options.team, role: options.role ?? 'member' }
            : options.allTeams
              ? { ...source, target: 'all-teams', role: options.role ?? 'member' }
              : options.enterprise
                ? { ...source, target: 'enterprise', permissions: list(options.enterprise) }
                : {
                    ...source,
                    target: 'app',
                    app: options.app,
                    permissions: list(options.permissions) ?? [],
                  },
        );
        const tenant = await findTenantByName(db, options.tenant!);
        const rule = await addRule(db, tenant.id, input, 'cli');
        process.stdout.write(`${rule.id}\t${describeRule(rule)}\n`);
      }),
    );
  rules
    .command('list')
    .requiredOption('--tenant <name>', 'tenant')
    .action((options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const all = await listRules(db, tenant.id);
        if (all.length === 0) process.stdout.write('no rules\n');
        for (const rule of all) process.stdout.write(`${rule.id}\t${describeRule(rule)}\n`);
      }),
    );
  rules
    .command('remove <rule-id>')
    .requiredOption('--tenant <name>', 'tenant')
    .action((ruleId: string, options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        await removeRule(db, tenant.id, ruleId, 'cli');
        process.stdout.write(`removed ${ruleId}\n`);
      }),
    );

  program
    .command('plan')
    .description('show what a reconcile would do, without doing it')
    .requiredOption('--tenant <name>', 'tenant')
    .option('--user <user>', 'one user (id or userName); default: every user')
    .action((options: { tenant: string; user?: string }) =>
      withPlatform(async ({ database, connectorFor }) => {
        const tenant = await findTenantByName(database.db, options.tenant);
        const deps: ReconcileDependencies = { database, connectorFor };
        const ids = await database.db.execute<{ id: string }>(sql`
          SELECT id::text FROM users WHERE tenant_id = ${tenant.id}
            ${options.user ? sql`AND (id::text = ${options.user} OR user_name_key = ${accountKeyOf(options.user)})` : sql`AND deprovisioned_at IS NULL`}
          ORDER BY lower(user_name)`);
        if (options.user && ids.length === 0)
          throw notFound(`no user ${options.user} in tenant ${options.tenant}`);
        let changes = 0;
        for (const { id } of ids) {
          const planned = await planUser(deps, tenant.id, id);
          if (
            !planned ||
            (planned.plan.operations.length === 0 && planned.plan.blocked.length === 0 && !options.user)
          )
            continue;
          changes += planned.plan.operations.length;
          process.stdout.write(`${planned.subject.userName}${planned.offboarding ? ' (offboarding)' : ''}\n`);
          if (planned.plan.operations.length === 0) process.stdout.write('  nothing to do\n');
          for (const operation of planned.plan.operations)
            process.stdout.write(`  ${describeOperation(operation)}\n`);
          for (const blocked of planned.plan.blocked) {
            process.stdout.write(
              `  BLOCKED ${blocked.reason === 'last-admin' ? `${blocked.account} is the last admin of team ${blocked.team}` : blocked.changeId}\n`,
            );
          }
        }
        if (!options.user && changes === 0) process.stdout.write('everything is in line with the IdP\n');
      }),
    );

  program
    .command('changes')
    .description('IdP changes held by the mass-change brake')
    .requiredOption('--tenant <name>', 'tenant')
    .action((options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const changes = await listHeldChanges(db, tenant.id);
        if (changes.length === 0) process.stdout.write('no held changes\n');
        for (const c of changes) {
          process.stdout.write(
            `${c.id}\t${c.status}\t${c.event}\t${c.affectedUsers} of ${c.enterpriseSize} Enterprise Account members\t${c.createdAt}\n`,
          );
        }
      }),
    );
  program
    .command('approve <change>')
    .description('apply the removals a held change would make')
    .requiredOption('--tenant <name>', 'tenant')
    .action((change: string, options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const queued = await approveChange(db, tenant.id, change, 'cli');
        process.stdout.write(`approved ${change}: ${queued} users queued for reconcile\n`);
      }),
    );

  const token = program.command('token').description('personal API tokens (shown once, stored hashed)');
  token
    .command('issue')
    .description('issue a personal API token for a user and print it once')
    .requiredOption('--tenant <name>', 'tenant')
    .requiredOption('--user <user>', 'user id or userName')
    .option('--scopes <scopes>', 'comma-separated scopes', '')
    .option('--expires-in <duration>', 'lifetime, e.g. 90d, 12h, 30m (at most a year)', '90d')
    .option('--label <label>', 'a note to recognise the token by')
    .action((options: { tenant: string; user: string; scopes: string; expiresIn: string; label?: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const issued = await issueApiToken(db, tenant.id, options.user, {
          scopes: list(options.scopes) ?? [],
          expiresInSeconds: parseDuration(options.expiresIn),
          label: options.label,
          actor: 'cli',
        });
        process.stdout.write(
          `token:   ${issued.token}\nexpires: ${issued.expiresAt ?? 'never'}\n(shown only this once; idsync stores a hash of it)\n`,
        );
      }),
    );

  program
    .command('receipt <user>')
    .description('the offboarding receipt of a user (id or userName), as JSON')
    .requiredOption('--tenant <name>', 'tenant')
    .action((user: string, options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        process.stdout.write(`${JSON.stringify(await latestReceipt(db, tenant.id, user), null, 2)}\n`);
      }),
    );
}
