import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { invalid } from '../errors.js';
import { type ConnectionInput, parseIdpMetadata, saveConnection } from '../sso/connections.js';
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

const collect = (value: string, previous: string[]) => [...previous, value];

/** `idsync sso add` and `idsync sso import-metadata`: a tenant's SAML identity provider. */
export function registerSsoCommands(program: Command, printUrls: (tenant: string) => void): void {
  const sso = program.command('sso').description('SAML single sign-on: the tenant’s identity provider');
  const common = (command: Command) =>
    command
      .requiredOption('--tenant <name>', 'tenant')
      .option(
        '--want-response-signed',
        'also require the Response to be signed (Okta can; Entra signs the assertion only)',
        false,
      )
      .option('--groups <format>', 'group claim: names (Okta) or object-ids (Entra)', 'names')
      .option(
        '--attribute <name=saml-attribute>',
        'map email, givenName, familyName, displayName or groups to a SAML attribute',
        collect,
        [],
      );
  const save = (tenantName: string, input: ConnectionInput) =>
    withDatabase(async ({ db }) => {
      if (input.groupClaimFormat !== 'names' && input.groupClaimFormat !== 'object-ids') {
        throw invalid('--groups must be names or object-ids');
      }
      const tenant = await findTenantByName(db, tenantName);
      await saveConnection(db, tenant.id, input);
      process.stdout.write(`saved the identity provider ${input.idpEntityId} for tenant ${tenant.name}\n`);
      printUrls(tenant.name);
    });

  common(
    sso
      .command('add')
      .description('configure the IdP by hand')
      .requiredOption('--entity-id <id>', 'the IdP entity id (Issuer)')
      .requiredOption('--sso-url <url>', 'the IdP single sign-on URL (HTTP-Redirect)')
      .requiredOption('--cert <file>', 'an IdP signing certificate (PEM); repeat for rotation', collect, []),
  ).action(
    (options: {
      tenant: string;
      entityId: string;
      ssoUrl: string;
      cert: string[];
      wantResponseSigned: boolean;
      groups: string;
      attribute: string[];
    }) =>
      save(options.tenant, {
        idpEntityId: options.entityId,
        ssoUrl: options.ssoUrl,
        certificates: options.cert.map(readFile),
        wantResponseSigned: options.wantResponseSigned,
        groupClaimFormat: options.groups as ConnectionInput['groupClaimFormat'],
        attributeMap: attributeMap(options.attribute),
      }),
  );

  common(
    sso.command('import-metadata <file>').description('configure the IdP from its SAML metadata XML'),
  ).action(
    (
      file: string,
      options: { tenant: string; wantResponseSigned: boolean; groups: string; attribute: string[] },
    ) =>
      save(options.tenant, {
        ...parseIdpMetadata(readFile(file)),
        wantResponseSigned: options.wantResponseSigned,
        groupClaimFormat: options.groups as ConnectionInput['groupClaimFormat'],
        attributeMap: attributeMap(options.attribute),
      }),
  );
}
