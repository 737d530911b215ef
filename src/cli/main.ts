#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { type Config, ConfigError } from '../config.js';
import { DomainError, invalid, rootCause } from '../errors.js';
import { createLogger, type Logger, withoutBoundValues } from '../log.js';
import { type DaemonMode, startDaemon } from '../runtime/daemon.js';
import { DataDirInUseError, TakeoverInterruptedError } from '../runtime/data-dir-lock.js';
import { UnreachableError } from '../runtime/infrastructure.js';
import { processCount } from '../runtime/process-count.js';
import { inProcessGroup, joinProcessGroup, startProcessGroup } from '../runtime/process-group.js';
import { EmbeddedServerError } from '../runtime/processes.js';
import {
  createTenant,
  listTenants,
  rotateScimToken,
  type TenantPolicyChanges,
  type TenantWithToken,
  updateTenantPolicy,
} from '../tenants/tenants.js';
import { readTokenScopes } from '../tokens/scopes.js';
import { registerAccessCommands } from './access-commands.js';
import {
  CliError,
  configOrExit,
  daemonPublicUrl,
  EXIT,
  interruptedExitCode,
  withDatabase,
} from './context.js';
import { registerCredentialCommands } from './credential-commands.js';
import { registerImportCommand } from './import-command.js';
import { registerJobsCommands } from './jobs-commands.js';
import { registerPlatformCommands } from './platform-commands.js';
import { registerSecurityCommands } from './security-commands.js';
import { registerSsoCommands } from './sso-commands.js';
import { registerWebhookCommands } from './webhook-commands.js';

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

function printListening(
  config: Config,
  mode: DaemonMode,
  port: number | undefined,
  processes: number,
  workerHealthPort: number | undefined,
): void {
  const count = `${processes} process${processes > 1 ? 'es' : ''}`;
  const workerHealth =
    workerHealthPort === undefined ? undefined : `http://${config.host}:${workerHealthPort}/readyz`;
  if (port === undefined) {
    process.stdout.write(
      `idsync worker running (${count})${workerHealth ? `; health: ${workerHealth}` : ''}; press Ctrl-C to stop.\n`,
    );
    return;
  }
  process.stdout.write(
    [
      `idsync ${mode} listening on ${config.publicUrl}${processes > 1 ? ` (${count})` : ''}`,
      `  SCIM 2.0:   ${scimBaseUrl(config)}   (Authorization: Bearer <tenant SCIM token>)`,
      `  SAML SSO:   ${config.publicUrl}/sso/<tenant>/metadata   (configure with idsync sso import-metadata)`,
      `  admin API:  ${config.publicUrl}/api${config.adminToken ? '' : '   (closed: set IDSYNC_ADMIN_TOKEN to open it)'}`,
      `  console:    ${config.publicUrl}/console   (security: drift, offboarding, inactive seats)`,
      `  health:     ${config.publicUrl}/healthz   readiness: ${config.publicUrl}/readyz`,
      ...(workerHealth ? [`  workers:    ${workerHealth}   (WORKER_HEALTH_PORT)`] : []),
      `  data:       ${config.databaseUrl ? 'DATABASE_URL' : config.dataDir}`,
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
}

async function runDaemon(mode: DaemonMode, processesOption: string | undefined): Promise<void> {
  const config = configOrExit();
  const log: Logger = createLogger(config.logLevel);
  const processes =
    processesOption !== undefined ? parseProcesses(processesOption) : processCount(mode, config);

  // Handlers before anything is printed: whoever reads "Press Ctrl-C" may press it at once.
  let stop: (() => Promise<void>) | undefined;
  let stopping = false;
  let signalled = false;
  async function shutdown(signal: NodeJS.Signals | undefined) {
    if (signal && signalled) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(EXIT.failure);
    }
    signalled ||= signal !== undefined;
    // A terminal's Ctrl-C reaches a process group's members as well as the primary's own request.
    if (stopping) return;
    stopping = true;
    if (!stop) {
      // Interrupted while starting: the exit hook stops the servers this process spawned.
      log.warn({ signal }, 'interrupted while starting');
      process.exit(EXIT.failure);
    }
    log.info({ signal }, 'shutting down: draining requests and jobs');
    await stop();
    log.info('stopped');
    process.exit(EXIT.ok);
  }
  process.on('SIGINT', (s) => void shutdown(s));
  process.on('SIGTERM', (s) => void shutdown(s));

  if (processes > 1 && !inProcessGroup()) {
    const group = await startProcessGroup({ mode, config, log, processes });
    stop = group.stop;
    void group.failed.then(async (code) => {
      await group.stop();
      process.exit(code);
    });
    if (group.firstTenant) printTenantCredential(config, group.firstTenant, 'Created the first tenant:');
    printListening(config, mode, group.port, processes, undefined);
  } else {
    const daemon = await startDaemon({ mode, config, log });
    stop = daemon.stop;
    if (daemon.firstTenant) printTenantCredential(config, daemon.firstTenant, 'Created the first tenant:');
    // In a process group the primary speaks for all of them.
    if (!inProcessGroup()) printListening(config, mode, daemon.port, 1, daemon.workerHealthPort);
    joinProcessGroup(daemon.port, () => void shutdown(undefined));
  }
}

const SERVING_PROCESSES_HELP =
  'processes to run (default: WORKER_PROCESSES, else one per core, less one for a PostgreSQL on this machine)';

function parseProcesses(value: string): number {
  const processes = Number(value);
  if (!Number.isInteger(processes) || processes < 1)
    throw new CliError(`--processes: expected a whole number of at least 1, got ${value}`, EXIT.usage);
  return processes;
}

/** `--opt a=b` repeated, as [a, b] pairs. */
function collectPairs(value: string, previous: string[][]): string[][] {
  const at = value.indexOf('=');
  if (at <= 0) throw invalid(`expected name=value, got ${value}`);
  return [...previous, [value.slice(0, at), value.slice(at + 1)]];
}

function buildProgram(): Command {
  const program = new Command('idsync')
    .description('Keeps a platform’s Enterprise Account, Teams and app access in line with your IdP.')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('start')
    .description('run the HTTP API and the workers in one process (embedded PostgreSQL and Redis by default)')
    .option('--processes <n>', SERVING_PROCESSES_HELP)
    .action((options: { processes?: string }) => runDaemon('start', options.processes));
  program
    .command('serve')
    .description('run the HTTP API only (SCIM, SSO, admin API)')
    .option('--processes <n>', SERVING_PROCESSES_HELP)
    .action((options: { processes?: string }) => runDaemon('serve', options.processes));
  program
    .command('worker')
    .description('run the job workers and the outbox relay only')
    .option('--processes <n>', 'processes to run (default: WORKER_PROCESSES, else 1)')
    .action((options: { processes?: string }) => runDaemon('worker', options.processes));
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
    .command('set <name>')
    .description('change a tenant’s policies')
    .option('--jit <mode>', 'SAML just-in-time provisioning: off, create or create-and-update')
    .option('--idp-initiated <on|off>', 'accept IdP-initiated SAML logins')
    .option(
      '--max-assertion-age <minutes>',
      'refuse SAML assertions issued longer ago than this (default 10, at most 1440)',
    )
    .option(
      '--fallback-admin <user>',
      'userName promoted before a team loses its last admin ("none" to clear)',
    )
    .option(
      '--mass-change-threshold <percent>',
      'hold IdP changes removing more than this share of the Enterprise Account',
    )
    .option('--inactivity-days <days>', 'days without SSO login before a seat counts as inactive')
    .option('--drift-interval <minutes>', 'minutes between scheduled drift scans (default 60)')
    .option(
      '--audit-poll-interval <seconds>',
      'seconds between reads of the platform audit trail for changes made outside idsync (default 60)',
    )
    .option(
      '--drift-policy <class=report|fix>',
      'what a drift scan does about a finding class',
      collectPairs,
      [],
    )
    .option(
      '--seat-price <role=amount>',
      'monthly price of a seat per role (admin, member, viewer)',
      collectPairs,
      [],
    )
    .option(
      '--console-group <group>',
      'IdP group whose members may open /console after SSO ("none" to clear)',
    )
    .option(
      '--token-scopes <scopes>',
      'comma-separated scopes personal API tokens may carry at most (then bounded by each user’s access)',
    )
    .action(
      (
        name: string,
        options: Record<string, string | undefined> & { driftPolicy: string[][]; seatPrice: string[][] },
      ) =>
        withDatabase(async ({ db }) => {
          const onOff = (value: string | undefined) => {
            if (value === undefined) return undefined;
            if (value !== 'on' && value !== 'off') throw invalid('--idp-initiated takes on or off');
            return value === 'on';
          };
          if (options.jit !== undefined && !['off', 'create', 'create-and-update'].includes(options.jit)) {
            throw invalid('--jit takes off, create or create-and-update');
          }
          const updated = await updateTenantPolicy(
            db,
            name,
            {
              jitMode: options.jit as TenantPolicyChanges['jitMode'],
              idpInitiatedSso: onOff(options.idpInitiated),
              maxAssertionAgeMinutes:
                options.maxAssertionAge === undefined ? undefined : Number(options.maxAssertionAge),
              fallbackAdmin: options.fallbackAdmin === 'none' ? null : options.fallbackAdmin,
              massChangeThresholdPercent:
                options.massChangeThreshold === undefined ? undefined : Number(options.massChangeThreshold),
              inactivityDays:
                options.inactivityDays === undefined ? undefined : Number(options.inactivityDays),
              driftScanIntervalMinutes:
                options.driftInterval === undefined ? undefined : Number(options.driftInterval),
              auditPollSeconds:
                options.auditPollInterval === undefined ? undefined : Number(options.auditPollInterval),
              ...(options.driftPolicy.length ? { driftPolicy: Object.fromEntries(options.driftPolicy) } : {}),
              ...(options.seatPrice.length
                ? {
                    seatPrices: Object.fromEntries(
                      options.seatPrice.map(([role, price]) => [role, Number(price)]),
                    ),
                  }
                : {}),
              ...(options.consoleGroup !== undefined
                ? { consoleGroup: options.consoleGroup === 'none' ? null : options.consoleGroup }
                : {}),
              ...(options.tokenScopes !== undefined
                ? { tokenScopes: readTokenScopes(options.tokenScopes.split(',').map((s) => s.trim())) }
                : {}),
            },
            'cli',
          );
          process.stdout.write(
            `${updated.name}\tjit=${updated.jitMode}\tidp-initiated=${updated.idpInitiatedSso ? 'on' : 'off'}\tmax-assertion-age=${updated.maxAssertionAgeSeconds / 60}m\tmass-change-threshold=${updated.massChangeThresholdPercent}%\tinactivity-days=${updated.inactivityDays}\n`,
          );
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
  registerImportCommand(program);
  registerJobsCommands(program);
  registerPlatformCommands(program);
  registerSecurityCommands(program);
  registerCredentialCommands(program);
  registerWebhookCommands(program);
  registerSsoCommands(program, (tenant) => {
    const publicUrl = daemonPublicUrl(configOrExit());
    process.stdout.write(
      `  SP entity id:  ${publicUrl}/sso/${tenant}\n  ACS URL:       ${publicUrl}/sso/${tenant}/acs\n  metadata:      ${publicUrl}/sso/${tenant}/metadata\n  sign in at:    ${publicUrl}/sso/${tenant}/me\n`,
    );
  });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return EXIT.ok;
  } catch (error) {
    // Interrupted: the error is the command being stopped under it, and the stop sets the exit code.
    const interrupted = interruptedExitCode();
    if (interrupted !== undefined) return interrupted;
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof CliError) {
      process.stderr.write(`idsync: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof DataDirInUseError || error instanceof TakeoverInterruptedError) {
      process.stderr.write(`idsync: ${error.message}\n`);
      return EXIT.inUse;
    }
    if (error instanceof UnreachableError || error instanceof EmbeddedServerError) {
      process.stderr.write(`idsync: ${error.message}\n`);
      return EXIT.unavailable;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`idsync: configuration error: ${error.message}\n`);
      return EXIT.config;
    }
    if (error instanceof DomainError) {
      process.stderr.write(`idsync: ${error.message}\n`);
      return error.kind === 'invalid' ? EXIT.usage : EXIT.dataError;
    }
    process.stderr.write(`idsync: ${withoutBoundValues((rootCause(error) as Error).message)}\n`);
    return EXIT.failure;
  }
}

const exitCode = await main(process.argv);
// Daemon commands keep running (their signal handlers exit); one-shot commands end here.
if (exitCode !== EXIT.ok) process.exit(exitCode);
