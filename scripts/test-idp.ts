/**
 * A SAML identity provider for trying idsync's SSO on a laptop (the one the tests use: samlify, with a
 * key and certificate made at start). It signs in whoever types a username, with the groups given.
 *
 *   npm run test-idp -- --tenant default [--groups Engineering,SRE] [--idsync http://localhost:8080]
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startIdpServer } from '../test/support/idp-server.js';

const { values } = parseArgs({
  options: {
    tenant: { type: 'string', default: 'default' },
    groups: { type: 'string', default: 'Engineering' },
    idsync: { type: 'string', default: process.env.PUBLIC_URL ?? 'http://localhost:8080' },
  },
});
const idsync = values.idsync!.replace(/\/+$/, '');
const sp = { entityId: `${idsync}/sso/${values.tenant}`, acsUrl: `${idsync}/sso/${values.tenant}/acs` };
const groups = values
  .groups!.split(',')
  .map((g) => g.trim())
  .filter(Boolean);
const server = await startIdpServer(sp, () => groups);
const file = path.resolve(`test-idp-metadata-${values.tenant}.xml`);
writeFileSync(file, server.idp.metadata());
process.stdout.write(
  [
    `Test IdP running at ${server.url} (signs in any username, with groups: ${groups.join(', ') || 'none'})`,
    `Its metadata is in ${file}. Tell idsync about it (in another terminal):`,
    `  npx idsync sso import-metadata --tenant ${values.tenant} ${file}`,
    `Then open ${idsync}/sso/${values.tenant}/me and sign in. Ctrl-C stops the IdP (its key is new at every start).`,
    '',
  ].join('\n'),
);
process.on('SIGINT', async () => {
  await server.close();
  process.exit(0);
});
