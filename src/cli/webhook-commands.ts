import type { Command } from 'commander';
import {
  addWebhook,
  listWebhooks,
  recentDeliveries,
  removeWebhook,
  webhookInputSchema,
} from '../alerts/endpoints.js';
import { parsedOrInvalid } from '../http/validation.js';
import { SecretBox } from '../security/secret-box.js';
import { findTenantByName } from '../tenants/tenants.js';
import { withDatabase } from './context.js';

/*
 * `idsync webhook …`: where a tenant's alerts go. The signing secret is printed once; idsync keeps it
 * sealed with IDSYNC_SECRET_KEY (it must sign with it, so it cannot be hashed).
 */

const list = (value: string) =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

export function registerWebhookCommands(program: Command): void {
  const webhook = program
    .command('webhook')
    .description('alerts that reach a person: signed webhooks (Standard Webhooks) per tenant');
  webhook
    .command('add')
    .description('add an endpoint and print its signing secret once')
    .requiredOption('--tenant <name>', 'tenant')
    .requiredOption('--url <url>', 'http:// or https:// URL the events are POSTed to')
    .requiredOption(
      '--events <events>',
      'comma-separated: deprovision.failed, deprovision.blocked, drift.critical, brake.held, platform.credential_refused, platform.budget_exhausted',
    )
    .option('--format <format>', 'standard (Standard Webhooks JSON) or slack ({"text": …})', 'standard')
    .action((options: { tenant: string; url: string; events: string; format: string }) =>
      withDatabase(async ({ db }, config) => {
        const input = parsedOrInvalid(webhookInputSchema, {
          url: options.url,
          events: list(options.events),
          format: options.format,
        });
        const tenant = await findTenantByName(db, options.tenant);
        const created = await addWebhook(db, SecretBox.fromConfig(config), tenant.id, input, 'cli', {
          allowPrivateNetworks: config.webhookAllowPrivateNetworks,
        });
        process.stdout.write(
          `id:      ${created.id}\nurl:     ${created.url}\nevents:  ${created.events.join(',')}\nformat:  ${created.format}\nsecret:  ${created.secret}\n(shown only this once; verify each delivery's webhook-signature with it)\n`,
        );
      }),
    );
  webhook
    .command('list')
    .description("the tenant's endpoints (never their secrets)")
    .requiredOption('--tenant <name>', 'tenant')
    .action((options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const endpoints = await listWebhooks(db, tenant.id);
        if (endpoints.length === 0) process.stdout.write('no webhooks\n');
        for (const e of endpoints) {
          const state = e.disabledAt ? `disabled (${e.disabledReason})` : 'live';
          process.stdout.write(`${e.id}  ${e.url}  ${e.format}  ${e.events.join(',')}  ${state}\n`);
        }
      }),
    );
  webhook
    .command('remove')
    .description('stop sending to an endpoint (its deliveries stay listed)')
    .requiredOption('--tenant <name>', 'tenant')
    .argument('<id>', 'the endpoint id (`idsync webhook list`)')
    .action((id: string, options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        await removeWebhook(db, tenant.id, id, 'cli');
        process.stdout.write(`removed webhook ${id}\n`);
      }),
    );
  webhook
    .command('deliveries')
    .description('recent deliveries, newest first, with their outcome')
    .requiredOption('--tenant <name>', 'tenant')
    .option('--limit <n>', 'how many', '50')
    .option('--json', 'JSON instead of a table')
    .action((options: { tenant: string; limit: string; json?: boolean }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const deliveries = await recentDeliveries(db, tenant.id, Number(options.limit) || 50);
        if (options.json) {
          process.stdout.write(`${JSON.stringify({ deliveries }, null, 2)}\n`);
          return;
        }
        if (deliveries.length === 0) process.stdout.write('no deliveries\n');
        for (const d of deliveries) {
          const last = d.lastResponseStatus ?? d.lastError ?? '-';
          process.stdout.write(
            `${d.createdAt}  ${d.event.padEnd(27)}  ${d.status.padEnd(9)}  attempts ${d.attempts}  last ${last}  ${d.url}\n`,
          );
        }
      }),
    );
}
