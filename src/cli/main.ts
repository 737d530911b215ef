#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import type { Config } from '../config.js';
import { DomainError, rootCause } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { type DaemonMode, startDaemon } from '../runtime/daemon.js';
import { createTenant, listTenants, rotateScimToken, type TenantWithToken } from '../tenants/tenants.js';
import { registerAccessCommands } from './access-commands.js';
import { CliError, configOrExit, EXIT, withDatabase } from './context.js';
import { registerJobsCommands } from './jobs-commands.js';

function scimBaseUrl(config: Config): string {
  return `${config.publicUrl}/scim/v2`;
}

function printTenantCredential(config: Config, issued: TenantWithToken, heading: string): void {
  process.stdout.write(
    [
      heading,
      `  tenant:         ${issued.tenant.name}`,
      `  SCIM base URL:  ${scimBaseUrl(config)}`,
      `  SCIM token:     ${issued.scimToken}`,
      '  (the token is shown only this once; idsync stores a hash of it)',
      '',
    ].join('\n'),
  );
}

async function runDaemon(mode: DaemonMode): Promise<void> {
  const config = configOrExit();
  const log: Logger = createLogger(config.logLevel);
  const daemon = await startDaemon({ mode, config, log });
  if (daemon.firstTenant) printTenantCredential(config, daemon.firstTenant, 'Created the first tenant:');
  if (daemon.port !== undefined) {
    process.stdout.write(
      [
        `idsync ${mode} listening on ${config.publicUrl}`,
        `  SCIM 2.0:   ${scimBaseUrl(config)}   (Authorization: Bearer <tenant SCIM token>)`,
        `  admin API:  ${config.publicUrl}/api${config.adminToken ? '' : '   (closed: set IDSYNC_ADMIN_TOKEN to open it)'}`,
        `  health:     ${config.publicUrl}/healthz   readiness: ${config.publicUrl}/readyz`,
        `  data:       ${config.databaseUrl ? 'DATABASE_URL' : config.dataDir}`,
        'Press Ctrl-C to stop.',
        '',
      ].join('\n'),
    );
  } else {
    process.stdout.write(`idsync worker running; press Ctrl-C to stop.\n`);
  }

  let stopping = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(EXIT.failure);
    }
    stopping = true;
    log.info({ signal }, 'shutting down: draining requests and jobs');
    await daemon.stop();
    log.info('stopped');
    process.exit(EXIT.ok);
  };
  process.on('SIGINT', (s) => void shutdown(s));
  process.on('SIGTERM', (s) => void shutdown(s));
}

function buildProgram(): Command {
  const program = new Command('idsync')
    .description('Keeps a platform’s Enterprise Account, Teams and app access in line with your IdP.')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('start')
    .description('run the HTTP API and the workers in one process (embedded PostgreSQL and Redis by default)')
    .action(() => runDaemon('start'));
  program
    .command('serve')
    .description('run the HTTP API only (SCIM, SSO, admin API)')
    .action(() => runDaemon('serve'));
  program
    .command('worker')
    .description('run the job workers and the outbox relay only')
    .action(() => runDaemon('worker'));
  program
    .command('migrate')
    .description('apply database migrations and exit')
    .action(() =>
      withDatabase(async () => {
        process.stdout.write('migrations applied\n');
      }),
    );

  const tenant = program.command('tenant').description('manage tenants (one per Enterprise Account)');
  tenant
    .command('create <name>')
    .description('create a tenant and print its SCIM base URL and bearer token (shown once)')
    .action((name: string) =>
      withDatabase(async ({ db }, config) => {
        printTenantCredential(config, await createTenant(db, name, 'cli'), 'Created tenant:');
      }),
    );
  tenant
    .command('list')
    .description('list tenants')
    .action(() =>
      withDatabase(async ({ db }) => {
        const rows = await listTenants(db);
        if (rows.length === 0) process.stdout.write('no tenants\n');
        for (const t of rows) {
          process.stdout.write(
            `${t.name}\tid=${t.id}\tconnector=${t.connector}\tjit=${t.jitMode}\tcreated=${t.createdAt.toISOString()}\n`,
          );
        }
      }),
    );
  tenant
    .command('rotate-token <name>')
    .description('replace the tenant’s SCIM token; the old one stops working at once')
    .action((name: string) =>
      withDatabase(async ({ db }, config) => {
        printTenantCredential(config, await rotateScimToken(db, name, 'cli'), 'Rotated the SCIM token:');
      }),
    );
  registerAccessCommands(program);
  registerJobsCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof CliError) {
      process.stderr.write(`idsync: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof DomainError) {
      process.stderr.write(`idsync: ${error.message}\n`);
      return error.kind === 'invalid' ? EXIT.usage : EXIT.dataError;
    }
    process.stderr.write(`idsync: ${(rootCause(error) as Error).message}\n`);
    return EXIT.failure;
  }
}

const exitCode = await main(process.argv);
// Daemon commands keep running (their signal handlers exit); one-shot commands end here.
if (exitCode !== EXIT.ok) process.exit(exitCode);
