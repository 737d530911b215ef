import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAccountName } from '../src/accounts/account-name.js';
import { alignAccountKey } from '../src/db/account-key.js';
import { connectDatabase, type DatabaseHandle } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { provisionLogin } from '../src/sso/jit.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { hasPostgres15, POSTGRES_15_BIN, startSystemPostgres } from './support/postgres-binaries.js';

const claims = (nameId: string) => ({
  nameId: parseAccountName(nameId),
  email: undefined,
  givenName: undefined,
  familyName: undefined,
  displayName: undefined,
  groups: undefined,
  overage: false,
});

if (!hasPostgres15())
  console.warn(
    `skipping the PostgreSQL 15 tests: ${POSTGRES_15_BIN}/postgres is absent (apt-get install postgresql-15)`,
  );

describe.skipIf(!hasPostgres15())('on PostgreSQL 15 (Debian binaries, the peers’ server)', () => {
  let database: DatabaseHandle & { url: string };
  let stopServer: () => Promise<void>;

  beforeAll(async () => {
    const server = await startSystemPostgres(POSTGRES_15_BIN);
    stopServer = server.stop;
    const admin = postgres(server.url, { max: 1, onnotice: () => {} });
    await admin.unsafe('CREATE DATABASE idsync');
    await admin.end();
    const url = server.url.replace(/\/postgres$/, '/idsync');
    await runMigrations(url);
    database = { ...connectDatabase(url, { max: 5 }), url };
  });
  afterAll(async () => {
    await database?.close();
    await stopServer?.();
  });

  it('applies every migration and keys names with ICU lower-casing', async () => {
    const [row] = await database.sql<{ version: string; a: string; b: string; c: string }[]>`
      SELECT current_setting('server_version_num') AS version, account_key(' ÉLODIE@Example.COM ') AS a,
             account_key('ΟΔΟΣ') AS b, account_key('JOSE' || U&'\\0301') AS c`;
    expect(Number(row!.version)).toBeLessThan(160_000);
    expect(row).toMatchObject({ a: 'élodie@example.com', b: 'οδοσ', c: 'josé' });
    // The one documented difference from 18's casefold(): no ß -> ss expansion.
    const [sharp] = await database.sql`SELECT account_key('STRAẞE') AS k`;
    expect(sharp!.k).toBe('straße');
    expect((await alignAccountKey(database.sql)).body).toBe('icu-lower');
  });

  it('keeps userName unique through SCIM and finds the SCIM user at a JIT sign-in in another case', async () => {
    const { log } = capturingLogger('silent');
    const daemon = await startTestDaemon({ mode: 'serve', config: testConfig(database.url), log });
    try {
      const { tenant, scimToken } = await createTenant(database.db, 'pg15', 'test');
      const create = (userName: string) =>
        fetch(`http://127.0.0.1:${daemon.port}/scim/v2/Users`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${scimToken}`, 'Content-Type': 'application/scim+json' },
          body: JSON.stringify({
            schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
            userName,
            active: true,
          }),
        });
      const first = await create('Élodie.Ωmega@Example.com');
      expect(first.status).toBe(201);
      const created = (await first.json()) as { id: string };
      const second = await create('ÉLODIE.ωMEGA@example.com');
      expect(second.status).toBe(409);
      expect(await second.json()).toMatchObject({ scimType: 'uniqueness' });

      const found = await fetch(
        `http://127.0.0.1:${daemon.port}/scim/v2/Users?filter=${encodeURIComponent('userName eq "élodie.ωmega@EXAMPLE.com"')}`,
        { headers: { Authorization: `Bearer ${scimToken}` } },
      );
      expect(((await found.json()) as { Resources: { id: string }[] }).Resources.map((u) => u.id)).toEqual([
        created.id,
      ]);

      const login = await provisionLogin(
        database.db,
        tenant.id,
        'create',
        claims('ÉLODIE.ΩMEGA@EXAMPLE.COM'),
        'c1',
      );
      expect(login).toMatchObject({ userId: created.id, created: false });
      const jit = await provisionLogin(database.db, tenant.id, 'create', claims('Zoë@example.com'), 'c2');
      expect(jit.created).toBe(true);
      expect((await create('ZOË@EXAMPLE.COM')).status).toBe(409);
    } finally {
      await daemon.stop();
    }
  });
});

describe('a database whose server moved across PostgreSQL 18', () => {
  const olderBody = `CREATE OR REPLACE FUNCTION account_key(name text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN normalize(translate(lower(normalize(btrim(name, E' \\t\\r\\n'), NFC) COLLATE "und-x-icu"), 'ς', 'σ'), NFC)`;

  async function createdOnAnOlderServer(names: string[]) {
    const database = await createTestDatabase();
    await database.sql.unsafe(olderBody);
    const [t] = await database.sql`
      INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('t', 'tt', 'x') RETURNING id`;
    for (const name of names)
      await database.sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${t!.id}, ${name}, 'scim')`;
    return database;
  }

  it('gets casefold() keys at the next start, so ß and ss become one name', async () => {
    const database = await createdOnAnOlderServer(['Straße@example.com', 'ada@example.com']);
    const warnings: string[] = [];
    await runMigrations(database.url, { warn: (message) => warnings.push(message) });
    expect(warnings).toEqual(['account names re-keyed with casefold for this PostgreSQL: 1 user(s) changed']);
    const keys = await database.sql`SELECT user_name_key FROM users ORDER BY user_name_key`;
    expect(keys.map((k) => k.user_name_key)).toEqual(['ada@example.com', 'strasse@example.com']);
    const [t] = await database.sql`SELECT id FROM tenants`;
    await expect(
      database.sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${t!.id}, 'STRASSE@example.com', 'scim')`,
    ).rejects.toMatchObject({ code: '23505' });
    await runMigrations(database.url, { warn: (message) => warnings.push(message) });
    expect(warnings).toHaveLength(1);
  });

  it('rebuilds the account_key(account) indexes and re-keys seat activity in the same step', async () => {
    const database = await createdOnAnOlderServer(['Straße@example.com']);
    const [t] = await database.sql`SELECT id FROM tenants`;
    // Through a new session, which loads the index expressions with the older body.
    const older = postgres(database.url, { max: 1, onnotice: () => {} });
    await older`
      WITH team AS (INSERT INTO teams (tenant_id, name) VALUES (${t!.id}, 'core') RETURNING id)
      INSERT INTO platform_team_members (tenant_id, team_id, account, role)
      SELECT ${t!.id}, team.id, 'straße@example.com', 'member' FROM team`;
    // Two rows the new key makes one: the later sign of life must win.
    await database.sql`INSERT INTO platform_activity (tenant_id, account_key, kind, at) VALUES
      (${t!.id}, 'straße@example.com', 'login', '2026-11-02T00:00:00Z'),
      (${t!.id}, 'strasse@example.com', 'deploy', '2026-11-01T00:00:00Z')`;
    await older.end();
    await runMigrations(database.url);

    // amcheck recomputes every row's index entry with today's account_key(): a stale entry fails it.
    await database.sql`CREATE EXTENSION IF NOT EXISTS amcheck`;
    for (const table of [
      'platform_team_members',
      'platform_enterprise_members',
      'platform_app_collaborators',
    ])
      await database.sql`SELECT bt_index_check(${`${table}_account_key_idx`}::regclass, true)`;
    const activity = await database.sql`
      SELECT account_key, kind, to_json(at)#>>'{}' AS at FROM platform_activity`;
    expect(activity).toEqual([
      { account_key: 'strasse@example.com', kind: 'login', at: '2026-11-02T00:00:00+00:00' },
    ]);
  });

  it('re-keys a user inserted while the keys are rebuilt: the rebuild waits for that insert', async () => {
    const database = await createdOnAnOlderServer(['ada@example.com']);
    const [t] = await database.sql`SELECT id FROM tenants`;
    const writer = await database.sql.reserve();
    await writer`BEGIN`;
    await writer`INSERT INTO users (tenant_id, user_name, origin) VALUES (${t!.id}, 'Late.Straße@example.com', 'scim')`;
    const migrated = runMigrations(database.url);
    // The rebuild is queued behind the open insert (its LOCK TABLE waits), then the insert commits.
    await expect
      .poll(
        async () =>
          // In this database only: every test database is cloned from one template, so its users
          // table has the same oid in the databases of the other test files.
          (
            await database.sql`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
              WHERE c.relname = 'users' AND NOT l.granted
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`
          )[0]!.n,
        { timeout: 10_000, interval: 20 },
      )
      .toBe(1);
    await writer`COMMIT`;
    writer.release();
    await migrated;
    const [late] =
      await database.sql`SELECT user_name_key FROM users WHERE user_name = 'Late.Straße@example.com'`;
    expect(late!.user_name_key).toBe('late.strasse@example.com');
  });

  it('keeps the older keys and says why when the new ones would merge two active users', async () => {
    const database = await createdOnAnOlderServer(['straße@example.com', 'strasse@example.com']);
    const warnings: string[] = [];
    await runMigrations(database.url, { warn: (message) => warnings.push(message) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/keep their icu-lower comparison key.*offers casefold.*1 group/);
    const keys = await database.sql`SELECT user_name_key FROM users ORDER BY user_name_key`;
    expect(keys.map((k) => k.user_name_key)).toEqual(['strasse@example.com', 'straße@example.com']);
  });
});
