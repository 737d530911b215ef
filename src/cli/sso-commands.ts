import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { type GroupClaimFormat, groupClaimFormat } from '../db/schema.js';
import { invalid, notFound } from '../errors.js';
import {
  type Connection,
  type ConnectionInput,
  findConnection,
  listConnections,
  parseDomains,
  parseIdpMetadata,
  removeConnection,
  saveConnection,
} from '../sso/connections.js';
import { findTenantByName } from '../tenants/tenants.js';
import { withDatabase } from './context.js';

function readFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw invalid(`cannot read ${path}`);
  }
}

/** `--attribute email=mail` → { email: 'mail' } */
function attributeMap(pairs: string[]): Record<string, string> {
  const known = ['email', 'givenName', 'familyName', 'displayName', 'groups'];
  return Object.fromEntries(
    pairs.map((pair) => {
      const [key, value] = pair.split('=');
      if (!key || !value || !known.includes(key))
        throw invalid(`--attribute takes NAME=SAML-ATTRIBUTE with NAME one of ${known.join(', ')}`);
      return [key, value];
    }),
  );
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** The settings options of `sso add` and `sso import-metadata`; undefined when not given. */
interface SettingOptions {
  tenant: string;
  wantResponseSigned?: boolean;
  groups?: string;
  attribute?: string[];
  domains?: string;
}

/** In place of `sso add`'s --slo-url when it is not given: the saved connection's stays. */
const KEEP_SAVED = Symbol('keep the saved value');

/** What the IdP itself says (its metadata, or `sso add`'s identity options). */
type IdpIdentity = Pick<ConnectionInput, 'idpEntityId' | 'ssoUrl' | 'certificates'> & {
  sloUrl?: string | undefined | typeof KEEP_SAVED;
};

/**
 * The connection to save: settings given on the command line, else the saved connection's (so running
 * `sso import-metadata` again to rotate a certificate keeps a partner IdP's `--groups none` and
 * `--domains`), else the defaults. Lists the kept settings that are not the defaults, for the operator.
 */
function settingsFor(
  identity: IdpIdentity,
  options: SettingOptions,
  saved: Connection | undefined,
): { input: ConnectionInput; kept: string[] } {
  const kept: string[] = [];
  const pick = <T>(given: T | undefined, stored: T | undefined, fallback: T, shown: (value: T) => string) => {
    if (given !== undefined) return given;
    if (stored === undefined) return fallback;
    if (JSON.stringify(stored) !== JSON.stringify(fallback)) kept.push(shown(stored));
    return stored;
  };
  const format = pick(options.groups, saved?.groupClaimFormat, 'names', (v) => `groups=${v}`);
  if (!groupClaimFormat.enumValues.includes(format as GroupClaimFormat)) {
    throw invalid(`--groups must be one of ${groupClaimFormat.enumValues.join(', ')}`);
  }
  const input: ConnectionInput = {
    ...identity,
    // `sso add` without --slo-url keeps the saved one ("" removes it); metadata always says its own.
    sloUrl:
      identity.sloUrl === KEEP_SAVED
        ? pick(undefined, saved?.sloUrl ?? undefined, undefined, (v) => `slo-url=${v}`)
        : identity.sloUrl || undefined,
    wantResponseSigned: pick(
      options.wantResponseSigned,
      saved?.wantResponseSigned,
      false,
      (v) => `response-signed=${v ? 'required' : 'optional'}`,
    ),
    groupClaimFormat: format as GroupClaimFormat,
    attributeMap: pick(
      options.attribute && attributeMap(options.attribute),
      saved?.attributeMap,
      {},
      (v) =>
        `attributes=${Object.entries(v)
          .map(([name, attribute]) => `${name}=${attribute}`)
          .join(',')}`,
    ),
    allowedDomains: pick(
      options.domains === undefined ? undefined : parseDomains(options.domains),
      saved?.allowedDomains,
      [],
      (v) => `domains=${v.join(',')}`,
    ),
  };
  return { input, kept };
}

/** `idsync sso add|import-metadata|list|remove`: a tenant's SAML identity providers. */
export function registerSsoCommands(program: Command, printUrls: (tenant: string) => void): void {
  const sso = program.command('sso').description('SAML single sign-on: the tenant’s identity provider');
  const common = (command: Command) =>
    command
      .requiredOption('--tenant <name>', 'tenant')
      .option(
        '--want-response-signed',
        'also require the Response to be signed (Okta can; Entra signs the assertion only)',
      )
      .option('--no-want-response-signed', 'accept a Response whose assertion alone is signed (the default)')
      .option(
        '--groups <format>',
        'group claim: names (Okta, the default), object-ids (Entra), or none (its logins change no groups: a partner IdP)',
      )
      .option(
        '--attribute <name=saml-attribute>',
        'map email, givenName, familyName, displayName or groups to a SAML attribute',
        collect,
      )
      .option(
        '--domains <list>',
        'e-mail domains this IdP may sign in, comma-separated ("" or default: any user of the tenant)',
      )
      .addHelpText(
        'after',
        '\nSaving an IdP that is already configured keeps its settings that are not given here.',
      );
  const save = (options: SettingOptions, identity: IdpIdentity) =>
    withDatabase(async ({ db }) => {
      const tenant = await findTenantByName(db, options.tenant);
      const saved = await findConnection(db, tenant.id, identity.idpEntityId);
      const { input, kept } = settingsFor(identity, options, saved);
      await saveConnection(db, tenant.id, input);
      process.stdout.write(`saved the identity provider ${input.idpEntityId} for tenant ${tenant.name}\n`);
      if (kept.length > 0) process.stdout.write(`kept from its saved settings: ${kept.join(' ')}\n`);
      printUrls(tenant.name);
    });

  common(
    sso
      .command('add')
      .description('configure the IdP by hand')
      .requiredOption('--entity-id <id>', 'the IdP entity id (Issuer)')
      .requiredOption('--sso-url <url>', 'the IdP single sign-on URL (HTTP-Redirect)')
      .option(
        '--slo-url <url>',
        'the IdP Single Logout URL (HTTP-Redirect), if it does Single Logout ("": it does not)',
      )
      .requiredOption('--cert <file>', 'an IdP signing certificate (PEM); repeat for rotation', collect),
  ).action(
    (options: SettingOptions & { entityId: string; ssoUrl: string; sloUrl?: string; cert: string[] }) =>
      save(options, {
        idpEntityId: options.entityId,
        ssoUrl: options.ssoUrl,
        sloUrl: options.sloUrl ?? KEEP_SAVED,
        certificates: options.cert.map(readFile),
      }),
  );

  common(
    sso.command('import-metadata <file>').description('configure the IdP from its SAML metadata XML'),
  ).action((file: string, options: SettingOptions) => save(options, parseIdpMetadata(readFile(file))));

  sso
    .command('list')
    .description('the tenant’s identity providers')
    .requiredOption('--tenant <name>', 'tenant')
    .action((options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        const connections = await listConnections(db, tenant.id);
        if (connections.length === 0)
          process.stdout.write(`no identity provider for tenant ${tenant.name}\n`);
        for (const c of connections) {
          process.stdout.write(
            [
              c.idpEntityId,
              `sso-url=${c.ssoUrl}`,
              `groups=${c.groupClaimFormat}`,
              `response-signed=${c.wantResponseSigned ? 'required' : 'optional'}`,
              `domains=${c.allowedDomains.length ? c.allowedDomains.join(',') : 'any'}`,
              `certificates=${c.certificates.map(describeCertificate).join(',')}`,
            ].join('\t') + '\n',
          );
        }
      }),
    );

  sso
    .command('remove <entity-id>')
    .description(
      'remove an identity provider: it signs no one in from now on (sessions it started stay until they end)',
    )
    .requiredOption('--tenant <name>', 'tenant')
    .action((entityId: string, options: { tenant: string }) =>
      withDatabase(async ({ db }) => {
        const tenant = await findTenantByName(db, options.tenant);
        if (!(await removeConnection(db, tenant.id, entityId)))
          throw notFound(`tenant ${tenant.name} has no identity provider ${entityId}`);
        process.stdout.write(`removed the identity provider ${entityId} from tenant ${tenant.name}\n`);
      }),
    );
}

/** SHA-256 fingerprint prefix and expiry, enough to tell rotated keys apart. */
function describeCertificate(pem: string): string {
  try {
    const certificate = new X509Certificate(pem);
    const fingerprint = createHash('sha256').update(certificate.raw).digest('hex').slice(0, 16);
    return `sha256:${fingerprint}(until ${new Date(certificate.validTo).toISOString().slice(0, 10)})`;
  } catch {
    return 'unreadable';
  }
}
