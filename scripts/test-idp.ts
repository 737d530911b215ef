/**
 * A SAML identity provider for trying idsync's SSO on a laptop (the one the tests use: samlify). It signs
 * in whoever types a username, with the groups given.
 *
 *   npm run test-idp -- --tenant default [--groups Engineering,SRE] [--idsync http://localhost:8080]
 *
 * Each tenant's IdP keeps its port, and so its entity id, and its signing key in
 * IDSYNC_DATA_DIR/test-idp/<tenant>.json: run it again and the connection idsync already has still
 * works; importing its metadata again replaces that connection instead of adding a second IdP.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { liveLockHolder } from '../src/runtime/data-dir-lock.js';
import { freePort } from '../src/runtime/free-port.js';
import { startIdpServer } from '../test/support/idp-server.js';
import { generateIdpKeyPair, type IdpKeyPair } from '../test/support/test-idp.js';

interface KeptIdp {
  port: number;
  keyPair: IdpKeyPair;
}

function fail(message: string): never {
  process.stderr.write(`test-idp: ${message}\n`);
  process.exit(64);
}

const { values } = parseArgs({
  options: {
    tenant: { type: 'string', default: 'default' },
    groups: { type: 'string', default: 'Engineering' },
    idsync: { type: 'string' },
  },
});
const tenant = values.tenant!;
if (!/^[A-Za-z0-9._-]{1,64}$/.test(tenant)) fail(`--tenant: "${tenant}" is not a tenant name`);

const config = loadConfig();
// The running daemon's public URL (from its lock file), so the IdP posts to the ACS idsync checks.
const daemon = liveLockHolder(config.dataDir);
const idsync = (
  values.idsync ?? (daemon && daemon.command !== 'one-shot' ? daemon.publicUrl : config.publicUrl)
).replace(/\/+$/, '');
const sp = { entityId: `${idsync}/sso/${tenant}`, acsUrl: `${idsync}/sso/${tenant}/acs` };
const groups = values
  .groups!.split(',')
  .map((g) => g.trim())
  .filter(Boolean);

const keptFile = path.join(config.dataDir, 'test-idp', `${tenant}.json`);
let kept: KeptIdp;
if (existsSync(keptFile)) {
  kept = JSON.parse(readFileSync(keptFile, 'utf8')) as KeptIdp;
} else {
  kept = { port: await freePort(), keyPair: await generateIdpKeyPair() };
  mkdirSync(path.dirname(keptFile), { recursive: true, mode: 0o700 });
  writeFileSync(keptFile, JSON.stringify(kept), { mode: 0o600 });
}

const server = await startIdpServer(sp, () => groups, kept).catch((error: NodeJS.ErrnoException) =>
  fail(
    error.code === 'EADDRINUSE'
      ? `port ${kept.port}, kept for tenant ${tenant} in ${keptFile}, is in use (is this test IdP already running?); stop that process, or delete the file to get a new port and entity id`
      : error.message,
  ),
);
const file = path.resolve(`test-idp-metadata-${tenant}.xml`);
writeFileSync(file, server.idp.metadata());
process.stdout.write(
  [
    `Test IdP running at ${server.url} (signs in any username, with groups: ${groups.join(', ') || 'none'})`,
    `Its metadata is in ${file}. Tell idsync about it (in another terminal; importing again replaces it):`,
    `  npx idsync sso import-metadata --tenant ${tenant} ${file}`,
    `Then open ${idsync}/sso/${tenant}/me and sign in. Ctrl-C stops the IdP; it keeps its port and key for the next run.`,
    '',
  ].join('\n'),
);
process.on('SIGINT', async () => {
  await server.close();
  process.exit(0);
});
