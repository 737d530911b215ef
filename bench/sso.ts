/**
 * SAML ACS benchmark (not a test): `npm run build && npx tsx bench/sso.ts`.
 * The compiled server (`idsync serve`) on real PostgreSQL and Redis; responses are signed beforehand by
 * the samlify test IdP (IdP-initiated, so each is a complete login), then posted to the ACS.
 * Each phase also prints its cost per login (bench/process-cost.ts): CPU ms of the idsync processes,
 * of PostgreSQL and of Redis, and SQL statements (pg_stat_statements) and Redis commands per login.
 */
import os from 'node:os';
import { Redis } from 'ioredis';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createTenant } from '../src/tenants/tenants.js';
import { freePort } from '../test/support/ports.js';
import { createTestIdp } from '../test/support/test-idp.js';
import { type CostProbe, endPhase, startPhase } from './process-cost.js';
import { expectStatus, httpClient, load, startBackends, startServer, type Timing } from './support.js';

const RETURNING_USERS = 200;
const RETURNING_LOGINS = Number(process.env.RETURNING_LOGINS ?? 3000);
const FIRST_LOGINS = Number(process.env.FIRST_LOGINS ?? 1000);
/** Of RETURNING_LOGINS, how many run at one client (the rest at 16); both phases must have some. */
const ONE_CLIENT_LOGINS = Number(
  process.env.ONE_CLIENT_LOGINS ?? Math.min(1000, Math.floor(RETURNING_LOGINS / 2)),
);
if (!(ONE_CLIENT_LOGINS >= 1 && ONE_CLIENT_LOGINS < RETURNING_LOGINS))
  throw new Error('ONE_CLIENT_LOGINS must be at least 1 and less than RETURNING_LOGINS');

const backends = await startBackends({ shared_preload_libraries: 'pg_stat_statements' });
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 4 });
await database.sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
const { tenant } = await createTenant(database.db, 'bench', 'bench');
await database.sql`UPDATE tenants SET idp_initiated_sso = true WHERE id = ${tenant.id}`;
const port = await freePort();
const publicUrl = `http://127.0.0.1:${port}`;
const sp = { entityId: `${publicUrl}/sso/bench`, acsUrl: `${publicUrl}/sso/bench/acs` };
const idp = await createTestIdp(sp);
await database.sql`
  INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates)
  VALUES (${tenant.id}, ${idp.entityId}, ${`${idp.entityId}/sso`}, ${[idp.certificate]})`;
const server = await startServer('serve', {
  DATABASE_URL: backends.databaseUrl,
  REDIS_URL: backends.redisUrl,
  PORT: String(port),
  PUBLIC_URL: publicUrl,
});
const probe: CostProbe = {
  serverPid: server.child.pid!,
  sql: database.sql,
  redis: new Redis(backends.redisUrl, { maxRetriesPerRequest: 1 }),
};
/** A load phase with its wall-clock figures (loaded machine) and its cost per login (load-independent). */
const measured = async (run: () => Promise<Timing>, logins: number) => {
  const before = await startPhase(probe);
  const timing = await run();
  return { ...timing, costPerLogin: await endPhase(probe, before, logins) };
};
// A fresh keep-alive pool per phase: signing takes long enough on a loaded machine for the server to
// close idle sockets (keepAliveTimeout), and a reused closed socket fails the write with EPIPE.
let client = httpClient(port, '', 16);
const login = async (samlResponse: string) => {
  const r = await client.form('/sso/bench/acs', { SAMLResponse: samlResponse });
  expectStatus(r.status, 303, 'ACS');
};
const sign = async (names: string[]) => {
  const out: string[] = [];
  for (const nameId of names)
    out.push(await idp.respond({ nameId, attributes: { groups: ['Engineering'] } }));
  client = httpClient(port, '', 16);
  return out;
};

try {
  const returning = Array.from({ length: RETURNING_USERS }, (_, i) => `user${i}@example.com`);
  for (const response of await sign(returning)) await login(response);
  // Each phase's responses are signed just before it runs: they are valid for 5 minutes (the test
  // IdP's NotOnOrAfter) and idsync refuses assertions older than the tenant's 10-minute maximum age.
  const returningOf = (count: number) =>
    sign(Array.from({ length: count }, (_, i) => returning[i % RETURNING_USERS]!));
  const many = await returningOf(RETURNING_LOGINS - ONE_CLIENT_LOGINS);
  const returningUsers16Clients = await measured(
    () => load(many.length, 16, (i) => login(many[i]!)),
    many.length,
  );
  const oneClient = await returningOf(ONE_CLIENT_LOGINS);
  const returningUsers1Client = await measured(
    () => load(oneClient.length, 1, (i) => login(oneClient[i]!)),
    oneClient.length,
  );
  const firstResponses = await sign(Array.from({ length: FIRST_LOGINS }, (_, i) => `new${i}@example.com`));
  const firstLoginsJit16Clients = await measured(
    () => load(firstResponses.length, 16, (i) => login(firstResponses[i]!)),
    firstResponses.length,
  );

  const results = {
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
    returningUsers16Clients,
    returningUsers1Client,
    firstLoginsJit16Clients,
  };
  console.log(JSON.stringify(results, null, 2));
} finally {
  await server.stop();
  probe.redis.disconnect();
  await database.close();
  await backends.stop();
}
