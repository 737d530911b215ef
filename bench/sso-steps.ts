/**
 * Where one SAML login's Node CPU goes, step by step, in process (not a test):
 * `npx tsx bench/sso-steps.ts` (LOGINS=300 by default).
 * Runs the ACS's own steps (src/sso) on responses signed by the samlify test IdP, against real
 * PostgreSQL and Redis, and prints the CPU time (process.cpuUsage: user + system, this process only) per
 * login of each step. CPU time does not depend on how busy the machine is; wall-clock time does. What
 * this leaves out (express, body parsing, the session cookie, the redirect, logging) is the difference
 * between bench/sso.ts's Node CPU per login and the sum printed here.
 */
import os from 'node:os';
import { Redis } from 'ioredis';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { claimsOf } from '../src/sso/claims.js';
import { type Connection, findTenantAndConnection } from '../src/sso/connections.js';
import { refuseTransientNameId, splitOneLoginGroupValues } from '../src/sso/idp-dialects.js';
import { type JitMode, provisionLogin } from '../src/sso/jit.js';
import { spendAssertion } from '../src/sso/replay-cache.js';
import { readResponseDocument } from '../src/sso/response-document.js';
import { checkLogin, readSignedAssertion } from '../src/sso/saml-checks.js';
import { CLOCK_SKEW_MS, samlFor, serviceProviderUrls } from '../src/sso/service-provider.js';
import { startSession } from '../src/sso/sessions.js';
import { samlSessionLink } from '../src/sso/single-logout.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestIdp } from '../test/support/test-idp.js';
import { round, startBackends } from './support.js';

const LOGINS = Number(process.env.LOGINS ?? 300);
const USERS = 50;

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 4 });
const redis = new Redis(backends.redisUrl, { maxRetriesPerRequest: 1 });
const publicUrl = 'http://127.0.0.1:9';
const { tenant: created } = await createTenant(database.db, 'bench', 'bench');
await database.sql`UPDATE tenants SET idp_initiated_sso = true WHERE id = ${created.id}`;
const urls = serviceProviderUrls(publicUrl, created);
const idp = await createTestIdp({ entityId: urls.entityId, acsUrl: urls.acsUrl });
await database.sql`
  INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates)
  VALUES (${created.id}, ${idp.entityId}, ${`${idp.entityId}/sso`}, ${[idp.certificate]})`;

const responses: string[] = [];
for (let i = 0; i < LOGINS; i++)
  responses.push(
    await idp.respond({ nameId: `user${i % USERS}@example.com`, attributes: { groups: ['Engineering'] } }),
  );

const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
const spent = new Map<string, number>();
/** Runs one step for every login, in order, and adds its CPU time; returns the step's results. */
async function step<T>(name: string, run: (i: number) => T | Promise<T>): Promise<T[]> {
  const out: T[] = [];
  const start = cpuMs();
  for (let i = 0; i < LOGINS; i++) out.push(await run(i));
  spent.set(name, (spent.get(name) ?? 0) + cpuMs() - start);
  return out;
}

try {
  // Warm up (JIT compilation, prepared statements on every pooled connection, the users exist).
  for (let round = 0; round < 2; round++) {
    spent.clear();
    const documents = await step('readResponseDocument (idsync shape check, xmldom)', (i) =>
      readResponseDocument(responses[i]!),
    );
    const found = await step('findTenantAndConnection (PostgreSQL)', () =>
      findTenantAndConnection(database.db, 'bench', idp.entityId),
    );
    const { tenant } = found[0]!;
    const connection = found[0]!.connection as Connection;
    const samls = await step('samlFor: new SAML(options)', (i) =>
      samlFor(urls, connection, { responseSigned: documents[i]!.responseSigned }),
    );
    const profiles = await step('node-saml validatePostResponseAsync', (i) =>
      samls[i]!.validatePostResponseAsync({ SAMLResponse: responses[i]! }),
    );
    const assertions = await step('readSignedAssertion (idsync, xmldom)', (i) =>
      readSignedAssertion(profiles[i]!.profile!.getAssertionXml!()),
    );
    await step('spendAssertion (Redis SET NX)', (i) =>
      spendAssertion(
        redis,
        tenant.id,
        `${round}-${assertions[i]!.id}`,
        assertions[i]!.usableUntil,
        CLOCK_SKEW_MS,
      ),
    );
    const claims = await step('checkLogin + claims (idsync)', (i) => {
      checkLogin(documents[i]!.response, assertions[i]!, {
        acsUrl: urls.acsUrl,
        idpEntityId: connection.idpEntityId,
        responseSigned: documents[i]!.responseSigned,
        now: new Date(),
        skewMs: CLOCK_SKEW_MS,
        maxAgeMs: tenant.maxAssertionAgeSeconds * 1000,
      });
      refuseTransientNameId(assertions[i]!.element);
      return splitOneLoginGroupValues(claimsOf(assertions[i]!.element, connection), connection.idpEntityId);
    });
    await step('provisionLogin + startSession (PostgreSQL transaction)', (i) =>
      provisionLogin(
        database.db,
        tenant.id,
        tenant.jitMode as JitMode,
        claims[i]!,
        `bench-${i}`,
        (tx, { userId }) =>
          startSession(tx, tenant.id, userId, samlSessionLink(connection, assertions[i]!.element)).then(
            () => {},
          ),
      ),
    );
  }
  let total = 0;
  const perLogin: Record<string, number> = {};
  for (const [name, ms] of spent) {
    perLogin[name] = round(ms / LOGINS, 3);
    total += ms;
  }
  perLogin['sum of the steps'] = round(total / LOGINS, 3);
  console.log(
    JSON.stringify(
      {
        machine: `${os.cpus().length} cores, load average ${os
          .loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')}`,
        logins: LOGINS,
        cpuMsPerLogin: perLogin,
      },
      null,
      2,
    ),
  );
} finally {
  redis.disconnect();
  await database.close();
  await backends.stop();
}
