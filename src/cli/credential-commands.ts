import type { Command } from 'commander';
import { invalid } from '../errors.js';
import {
  ADMIN_ROLES,
  createAdminToken,
  isAdminRole,
  listAdminTokens,
  revokeAdminToken,
} from '../security/admin-tokens.js';
import {
  createClient,
  type IssuedClient,
  listClients,
  readClientScopes,
  removeClient,
  rotateClient,
} from '../security/oauth-clients.js';
import { findTenantByName } from '../tenants/tenants.js';
import { withDatabase } from './context.js';

/*
 * `idsync client …` (introspection clients of a tenant) and `idsync admin-token …` (admin API and
 * console credentials with a role). Secrets are printed once; idsync keeps only their hashes.
 */

const ONCE = '(shown only this once; idsync stores a hash of it)';

function printClient(client: IssuedClient): void {
  process.stdout.write(
    `client_id:     ${client.clientId}\nclient_secret: ${client.clientSecret}\nscopes:        ${client.scopes.join(',')}\n${ONCE}\n`,
  );
}

export function registerCredentialCommands(program: Command): void {
  const client = program
    .command('client')
    .description('introspection clients: platform services that check (and may revoke) one tenant’s tokens');
  client
    .command('create')
    .description('create a client and print its credentials once')
    .requiredOption('--tenant <name>', 'tenant')
    .requiredOption('--name <name>', 'the service, e.g. billing-api')
    .option('--scope <scopes>', 'comma-separated: introspect, revoke', 'introspect')
    .action((options: { tenant: string; name: string; scope: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const scopes = readClientScopes(
          options.scope
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        );
        printClient(await createClient(db, tenant.id, options.name, scopes, 'cli'));
      }),
    );
  client
    .command('list')
    .description('the clients of a tenant (never their secrets)')
    .requiredOption('--tenant <name>', 'tenant')
    .action((options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        for (const c of await listClients(db, tenant.id))
          process.stdout.write(`${c.name}\t${c.clientId}\t${c.scopes.join(',')}\trotated ${c.rotatedAt}\n`);
      }),
    );
  client
    .command('rotate')
    .description('new credentials for a client; the old ones stop working at once')
    .requiredOption('--tenant <name>', 'tenant')
    .requiredOption('--name <name>', 'client name')
    .action((options: { tenant: string; name: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        printClient(await rotateClient(db, tenant.id, options.name, 'cli'));
      }),
    );
  client
    .command('remove')
    .description('remove a client; its credentials stop working at once')
    .requiredOption('--tenant <name>', 'tenant')
    .requiredOption('--name <name>', 'client name')
    .action((options: { tenant: string; name: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        await removeClient(db, tenant.id, options.name, 'cli');
        process.stdout.write(`removed client ${options.name}\n`);
      }),
    );

  const adminToken = program
    .command('admin-token')
    .description(
      'admin API and console tokens with a role (auditor, operator, owner), for one tenant or all',
    );
  adminToken
    .command('create')
    .description('create an admin token and print it once')
    .requiredOption('--name <name>', 'who or what holds it, e.g. alice or siem-export')
    .requiredOption('--role <role>', ADMIN_ROLES.join(', '))
    .option('--tenant <name>', 'only this tenant (default: every tenant)')
    .action((options: { name: string; role: string; tenant?: string }) =>
      withDatabase(async ({ db }) => {
        if (!isAdminRole(options.role)) throw invalid(`--role must be one of ${ADMIN_ROLES.join(', ')}`);
        const tenantId = options.tenant ? (await findTenantByName(db, options.tenant)).id : null;
        const { token, view } = await createAdminToken(db, {
          name: options.name,
          tenantId,
          role: options.role,
          actor: 'cli',
        });
        process.stdout.write(
          `token:  ${token}\nrole:   ${view.role}\ntenant: ${view.tenant ?? 'all'}\n${ONCE}\n`,
        );
      }),
    );
  adminToken
    .command('list')
    .description('live admin tokens (never their secrets)')
    .option('--tenant <name>', 'only tokens of this tenant')
    .action((options: { tenant?: string }) =>
      withDatabase(async ({ db }) => {
        const tenantId = options.tenant ? (await findTenantByName(db, options.tenant)).id : undefined;
        for (const t of await listAdminTokens(db, tenantId ? { tenantId } : {}))
          process.stdout.write(
            `${t.name}\t${t.role}\t${t.tenant ?? 'all'}\tcreated ${t.createdAt} by ${t.createdBy}\n`,
          );
      }),
    );
  adminToken
    .command('revoke <name>')
    .description('revoke an admin token; it stops working at once (console sessions too)')
    .action((name: string) =>
      withDatabase(async ({ db }) => {
        await revokeAdminToken(db, name, 'cli');
        process.stdout.write(`revoked admin token ${name}\n`);
      }),
    );
}
