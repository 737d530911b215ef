import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { appliedMigrationCount, expectedMigrationCount, runMigrations } from '../src/db/migrate.js';
import { createTestDatabase } from './support/database.js';

describe('migrations', () => {
  it('build the whole schema on an empty database, and a second run changes nothing', async () => {
    const database = await createTestDatabase({ migrated: false });
    expect(await appliedMigrationCount(database.sql)).toBe(0);
    await runMigrations(database.url);
    expect(await appliedMigrationCount(database.sql)).toBe(expectedMigrationCount());
    await runMigrations(database.url);
    expect(await appliedMigrationCount(database.sql)).toBe(expectedMigrationCount());
    const tables = await database.sql<{ table_name: string }[]>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`;
    expect(tables.map((t) => t.table_name)).toEqual([
      'admin_tokens',
      'apps',
      'assignment_rules',
      'assignments',
      'audit_log',
      'drift_findings',
      'drift_reports',
      'group_members',
      'group_version_slots',
      'groups',
      'held_change_users',
      'held_changes',
      'oauth_clients',
      'outbox',
      'platform_activity',
      'platform_app_collaborators',
      'platform_audit_cursors',
      'platform_enterprise_members',
      'platform_pending_accounts',
      'platform_recent_removals',
      'platform_team_members',
      'receipt_edges',
      'receipts',
      'saml_sessions',
      'sso_connections',
      'sso_signing_keys',
      'teams',
      'tenants',
      'tokens',
      'user_counts',
      'users',
      'webhook_deliveries',
      'webhook_delivery_attempts',
      'webhook_endpoints',
    ]);
  });

  it('run concurrently from two processes without failing either', async () => {
    const database = await createTestDatabase({ migrated: false });
    await Promise.all([runMigrations(database.url), runMigrations(database.url)]);
    expect(await appliedMigrationCount(database.sql)).toBe(expectedMigrationCount());
  });
});

describe('migration 0026 (users_attributes_beside_columns)', () => {
  it('takes column members out of rows that held them, moves their version, and then refuses them', async () => {
    const database = await createTestDatabase();
    const sql = database.sql;
    const [tenant] = await sql<{ id: string }[]>`
      INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('acme', 'tacme', 'x') RETURNING id::text`;
    // As a row written past the SCIM edge before 0026 could be.
    await sql`ALTER TABLE users DROP CONSTRAINT users_attributes_beside_columns`;
    await sql`INSERT INTO users (tenant_id, user_name, origin, attributes) VALUES
      (${tenant!.id}, 'keys@example.com', 'scim', '{"userName": "evil", "active": false, "title": "kept"}'),
      (${tenant!.id}, 'array@example.com', 'scim', '[1]'),
      (${tenant!.id}, 'fine@example.com', 'scim', '{"title": "untouched"}')`;
    const file = readFileSync(
      path.join(import.meta.dirname, '..', 'drizzle', '0026_users_attributes_beside_columns.sql'),
      'utf8',
    );
    await sql.begin(async (tx) => {
      for (const statement of file.split('--> statement-breakpoint')) await tx.unsafe(statement);
    });

    const rows = await sql<{ user_name: string; attributes: unknown; version: number }[]>`
      SELECT user_name, attributes, version FROM users ORDER BY user_name`;
    expect(rows).toEqual([
      { user_name: 'array@example.com', attributes: {}, version: 2 },
      { user_name: 'fine@example.com', attributes: { title: 'untouched' }, version: 1 },
      { user_name: 'keys@example.com', attributes: { title: 'kept' }, version: 2 },
    ]);
    await expect(
      sql`INSERT INTO users (tenant_id, user_name, origin, attributes)
        VALUES (${tenant!.id}, 'again@example.com', 'scim', '{"meta": {}}')`,
    ).rejects.toMatchObject({ code: '23514', constraint_name: 'users_attributes_beside_columns' });
  });
});

describe('constraints guard what must never be duplicated', () => {
  it('refuses a second user with the same userName in another case, but not in another tenant', async () => {
    const { sql } = await createTestDatabase();
    const [a] =
      await sql`INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('a', 'ta', 'x') RETURNING id`;
    const [b] =
      await sql`INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('b', 'tb', 'x') RETURNING id`;
    await sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${a!.id}, 'Ada@Example.com', 'scim')`;
    await expect(
      sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${a!.id}, 'ada@example.COM', 'scim')`,
    ).rejects.toMatchObject({ code: '23505' });
    await sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${b!.id}, 'ada@example.com', 'scim')`;
  });

  it('keeps userName unique for non-ASCII letters too', async () => {
    const { sql } = await createTestDatabase();
    const [t] =
      await sql`INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('t', 'tt', 'x') RETURNING id`;
    await sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${t!.id}, 'ÉLODIE@example.com', 'scim')`;
    await expect(
      sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${t!.id}, 'élodie@example.com', 'scim')`,
    ).rejects.toMatchObject({ code: '23505' });
  });

  it('keeps userName unique in its normal form: another Unicode composition, full case folding, blanks', async () => {
    const { sql } = await createTestDatabase();
    const [t] =
      await sql`INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('t', 'tt', 'x') RETURNING id`;
    await sql`INSERT INTO users (tenant_id, user_name, origin) VALUES
      (${t!.id}, 'josé@example.com', 'scim'), (${t!.id}, 'straße@example.com', 'scim')`;
    for (const variant of ['JOSE\u0301@example.com', 'STRASSE@example.com', ' josé@example.com\n']) {
      await expect(
        sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${t!.id}, ${variant}, 'scim')`,
      ).rejects.toMatchObject({ code: '23505' });
    }
    const [found] =
      await sql`SELECT user_name FROM users WHERE user_name_key = account_key(${'Straße@EXAMPLE.com'})`;
    expect(found!.user_name).toBe('straße@example.com');
  });

  it('frees a deleted user’s userName (tombstone) but keeps group names and group externalIds unique', async () => {
    const { sql } = await createTestDatabase();
    const [t] =
      await sql`INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('t', 'tt', 'x') RETURNING id`;
    await sql`INSERT INTO users (tenant_id, user_name, external_id, origin, deprovisioned_at)
              VALUES (${t!.id}, 'gone@example.com', 'e1', 'scim', now())`;
    await sql`INSERT INTO users (tenant_id, user_name, external_id, origin) VALUES (${t!.id}, 'gone@example.com', 'e1', 'scim')`;
    await sql`INSERT INTO groups (tenant_id, display_name, external_id) VALUES (${t!.id}, 'Ops', 'g1')`;
    await expect(
      sql`INSERT INTO groups (tenant_id, display_name, external_id) VALUES (${t!.id}, 'Other', 'g1')`,
    ).rejects.toMatchObject({ code: '23505' });
    await sql`INSERT INTO groups (tenant_id, display_name) VALUES (${t!.id}, 'Engineering')`;
    await expect(
      sql`INSERT INTO groups (tenant_id, display_name) VALUES (${t!.id}, 'engineering')`,
    ).rejects.toMatchObject({ code: '23505' });
  });

  it('allows one membership per user and team, and only well-formed assignment rules', async () => {
    const { sql } = await createTestDatabase();
    const [t] =
      await sql`INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('t', 'tt', 'x') RETURNING id`;
    const [team] = await sql`INSERT INTO teams (tenant_id, name) VALUES (${t!.id}, 'core') RETURNING id`;
    await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role) VALUES (${t!.id}, ${team!.id}, 'ada@example.com', 'admin')`;
    await expect(
      sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role) VALUES (${t!.id}, ${team!.id}, 'ada@example.com', 'viewer')`,
    ).rejects.toMatchObject({ code: '23505' });
    await expect(
      sql`INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name) VALUES (${t!.id}, 'eng', 'team', 'core')`,
    ).rejects.toMatchObject({ code: '23514' });
    await sql`INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role) VALUES (${t!.id}, 'eng', 'team', 'core', 'member')`;
  });

  it('makes the audit log append-only', async () => {
    const { sql } = await createTestDatabase();
    await sql`INSERT INTO audit_log (actor, action) VALUES ('test', 'something.happened')`;
    await expect(sql`UPDATE audit_log SET action = 'rewritten'`).rejects.toThrow(/append-only/);
    await expect(sql`DELETE FROM audit_log`).rejects.toThrow(/append-only/);
    const [row] = await sql`SELECT action FROM audit_log`;
    expect(row!.action).toBe('something.happened');
  });
});

describe('live user counts for unfiltered SCIM lists', () => {
  it('stay equal to the live rows through inserts, tombstones, reactivation and deletes', async () => {
    const { sql } = await createTestDatabase();
    const [t] =
      await sql`INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('t', 'tt', 'x') RETURNING id`;
    const tenantId = t!.id as string;
    const counted = async () => {
      const [row] =
        await sql`SELECT COALESCE(sum(live), 0)::int AS n FROM user_counts WHERE tenant_id = ${tenantId}`;
      const [real] =
        await sql`SELECT count(*)::int AS n FROM users WHERE tenant_id = ${tenantId} AND deprovisioned_at IS NULL`;
      expect(row!.n).toBe(real!.n);
      return row!.n as number;
    };
    await sql`INSERT INTO users (tenant_id, user_name, origin) SELECT ${tenantId}, 'u' || n, 'scim' FROM generate_series(1, 500) n`;
    expect(await counted()).toBe(500);
    await sql`UPDATE users SET deprovisioned_at = now() WHERE tenant_id = ${tenantId} AND user_name IN ('u1', 'u2', 'u3')`;
    expect(await counted()).toBe(497);
    await sql`UPDATE users SET active = false WHERE tenant_id = ${tenantId}`;
    expect(await counted()).toBe(497);
    await sql`UPDATE users SET deprovisioned_at = NULL WHERE tenant_id = ${tenantId} AND user_name = 'u1'`;
    expect(await counted()).toBe(498);
    await sql`DELETE FROM users WHERE tenant_id = ${tenantId} AND user_name IN ('u2', 'u10')`;
    expect(await counted()).toBe(497);
  });

  it('let concurrent creates count without waiting for each other, and stay exact', async () => {
    const { sql } = await createTestDatabase();
    const [t] =
      await sql`INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('t', 'tt', 'x') RETURNING id`;
    const tenantId = t!.id as string;
    await sql`INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenantId}, 'first', 'scim')`;
    // Open creates hold counter slots until they commit; 20 more creates must not queue behind them.
    const holders = await Promise.all(Array.from({ length: 4 }, () => sql.reserve()));
    for (const [i, holder] of holders.entries()) {
      await holder`BEGIN`;
      await holder`INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenantId}, ${`held${i}`}, 'scim')`;
    }
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        sql.begin(async (tx) => {
          await tx`SET LOCAL lock_timeout = '2s'`;
          await tx`INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenantId}, ${`u${i}`}, 'scim')`;
        }),
      ),
    );
    for (const holder of holders) {
      await holder`COMMIT`;
      holder.release();
    }
    const [row] =
      await sql`SELECT COALESCE(sum(live), 0)::int AS n FROM user_counts WHERE tenant_id = ${tenantId}`;
    expect(row!.n).toBe(25);
  });
});

describe('migration 0029 (users_scim_rendered)', () => {
  const file = readFileSync(
    path.join(import.meta.dirname, '..', 'drizzle', '0029_users_scim_rendered.sql'),
    'utf8',
  );
  const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

  it('stores for existing users what reads rendered before it, and names the users it cannot render', async () => {
    const database = await createTestDatabase();
    const sql = database.sql;
    // The schema as it was before 0029.
    await sql`ALTER TABLE users DROP COLUMN scim_head, DROP COLUMN scim_tail`;
    await sql`DROP FUNCTION scim_text(text), scim_timestamp(timestamptz)`;
    const [tenant] = await sql<{ id: string }[]>`
      INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('acme', 'tacme', 'x') RETURNING id::text`;
    const odd = 'q"u\\o\te\n\u0001\u2028 ö 😀 </script>';
    await sql`INSERT INTO users (tenant_id, user_name, external_id, active, origin, attributes, created_at, updated_at) VALUES
      (${tenant!.id}, ${`${odd}@example.com`}, ${odd}, true, 'scim', ${JSON.stringify({ title: odd, [ENTERPRISE]: { department: odd } })}::jsonb,
        '1900-01-01T00:00:00.000001Z', '2026-12-03T06:00:00.999999Z'),
      (${tenant!.id}, 'plain@example.com', NULL, false, 'saml', '{}', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`;
    const [infinite] = await sql<{ id: string }[]>`
      INSERT INTO users (tenant_id, user_name, origin, updated_at) VALUES (${tenant!.id}, 'edited@example.com', 'scim', 'infinity')
      RETURNING id::text`;
    const migrate = () =>
      sql.begin(async (tx) => {
        // A writing session far from UTC: what is stored must not depend on it.
        await tx.unsafe("SET LOCAL TimeZone = 'Pacific/Chatham'");
        for (const statement of file.split('--> statement-breakpoint')) await tx.unsafe(statement);
      });
    await expect(migrate()).rejects.toThrow(
      new RegExp(`infinite created_at or updated_at .*${infinite!.id}`),
    );

    await sql`UPDATE users SET updated_at = '2026-02-02T02:02:02Z' WHERE id = ${infinite!.id}`;
    await migrate();
    // The rendering reads used before 0029 (src/scim/user-queries.ts at 13afe65), as the oracle.
    const differing = await sql`
      SELECT user_name FROM users WHERE scim_head IS DISTINCT FROM (
        '{"schemas":' || CASE WHEN attributes ? ${ENTERPRISE}
          THEN ${JSON.stringify(['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE])}
          ELSE ${JSON.stringify(['urn:ietf:params:scim:schemas:core:2.0:User'])} END
        || ',"id":"' || id || '","userName":' || to_json(user_name)
        || CASE WHEN external_id IS NULL THEN '' ELSE ',"externalId":' || to_json(external_id) END
        || ',"active":' || active
        || ',"meta":{"resourceType":"User","created":"' || to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        || '","lastModified":"' || to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"')
      OR scim_tail IS DISTINCT FROM CASE WHEN attributes = '{}'::jsonb THEN '}' ELSE ',' || substr(attributes::text, 2) END`;
    expect(differing).toEqual([]);
    const [rendered] = await sql<{ resource: string }[]>`
      SELECT scim_head || '}' || scim_tail AS resource FROM users WHERE external_id IS NOT NULL`;
    expect(JSON.parse(rendered!.resource)).toMatchObject({
      userName: `${odd}@example.com`,
      externalId: odd,
      title: odd,
      meta: { created: '1900-01-01T00:00:00.000Z', lastModified: '2026-12-03T06:00:00.999Z' },
      [ENTERPRISE]: { department: odd },
    });
  });

  it('renders through functions a session’s search_path cannot redirect', async () => {
    const database = await createTestDatabase();
    const sql = database.sql;
    const [tenant] = await sql<{ id: string }[]>`
      INSERT INTO tenants (name, scim_token_id, scim_token_hash) VALUES ('acme', 'tacme', 'x') RETURNING id::text`;
    const [row] = await sql.begin(async (tx) => {
      await tx.unsafe(`CREATE SCHEMA shadow;
        CREATE FUNCTION shadow.to_json(t text) RETURNS json LANGUAGE sql IMMUTABLE AS $$ SELECT '"shadowed"'::json $$;
        CREATE FUNCTION shadow.to_char(t timestamp, f text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'shadowed' $$;
        SET LOCAL search_path = shadow, pg_catalog, public`);
      return tx<{ scim_head: string }[]>`
        INSERT INTO public.users (tenant_id, user_name, origin) VALUES (${tenant!.id}, 'ada@example.com', 'scim')
        RETURNING scim_head`;
    });
    expect(row!.scim_head).toContain('"userName":"ada@example.com"');
    expect(row!.scim_head).not.toContain('shadowed');
  });
});
