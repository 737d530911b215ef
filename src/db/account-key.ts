import type postgres from 'postgres';

/*
 * account_key(name) (drizzle/0011) is the comparison key of every account name: users.user_name_key is a
 * stored column generated from it, and uniqueness and every lookup by name compare that. Its best body
 * depends on the server: casefold() with the builtin Unicode collation exists only from PostgreSQL 18;
 * 15–17 lower-case with ICU's root locale instead (no ß → ss and ligature expansions). A database keeps the
 * body it was created with, so after a major upgrade across 18 the keys are rebuilt here, at startup.
 */

export type AccountKeyBody = 'casefold' | 'icu-lower' | 'lower';

/** Same bodies as drizzle/0011 (a migration is frozen history; this is what startup aligns to). */
const BODIES: Record<AccountKeyBody, (name: string) => string> = {
  casefold: (name) =>
    `normalize(casefold(normalize(btrim(${name}, E' \\t\\r\\n'), NFC) COLLATE pg_unicode_fast), NFC)`,
  'icu-lower': (name) =>
    `normalize(translate(lower(normalize(btrim(${name}, E' \\t\\r\\n'), NFC) COLLATE "und-x-icu"), 'ς', 'σ'), NFC)`,
  lower: (name) =>
    `normalize(translate(lower(normalize(btrim(${name}, E' \\t\\r\\n'), NFC)), 'ς', 'σ'), NFC)`,
};

function bodyIn(definition: string): AccountKeyBody {
  if (definition.includes('casefold(')) return 'casefold';
  if (definition.includes('und-x-icu')) return 'icu-lower';
  return 'lower';
}

export interface AccountKeyAlignment {
  body: AccountKeyBody;
  /** Set when the server offers a better body than the database's, but switching would merge two names. */
  kept?: { wanted: AccountKeyBody; collisions: number };
  /** Users whose key was rebuilt when the body changed. */
  rekeyed: number;
}

/**
 * Puts the body this server supports best in place, rebuilding the stored keys (and with them the unique
 * index) in the same transaction. Two accounts whose names the new body makes equal (e.g. "straße" and
 * "strasse" on 18) would violate uniqueness: then nothing changes and the caller is told how many.
 * Called under the migration lock, so concurrent starts do this once.
 */
export async function alignAccountKey(sql: postgres.Sql): Promise<AccountKeyAlignment> {
  const [server] = await sql<{ version: number; icu: boolean; definition: string | null }[]>`
    SELECT current_setting('server_version_num')::int AS version,
           EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu') AS icu,
           (SELECT pg_get_functiondef(p.oid) FROM pg_proc p
              WHERE p.proname = 'account_key' AND p.pronamespace = 'public'::regnamespace) AS definition`;
  if (!server?.definition) throw new Error('account_key() is missing: the migrations did not run');
  const current = bodyIn(server.definition);
  const wanted: AccountKeyBody = server.version >= 180_000 ? 'casefold' : server.icu ? 'icu-lower' : 'lower';
  if (current === wanted) return { body: current, rekeyed: 0 };

  // One transaction, users locked against writes throughout: a user inserted while the keys are rebuilt
  // would otherwise keep the older key for good (the next start finds the body already current).
  const outcome = await sql.begin(async (tx) => {
    await tx`LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE`;
    const [clash] = await tx<{ collisions: number }[]>`
      SELECT count(*)::int AS collisions FROM (
        SELECT 1 FROM users WHERE deprovisioned_at IS NULL
        GROUP BY tenant_id, ${tx.unsafe(BODIES[wanted]('user_name'))}
        HAVING count(*) > 1) AS clashes`;
    const collisions = clash?.collisions ?? 0;
    if (collisions > 0) return { collisions, rekeyed: 0 };
    await tx.unsafe(`CREATE OR REPLACE FUNCTION account_key(name text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN ${BODIES[wanted]('name')}`);
    // Writing user_name recomputes the stored generated key, and the unique index follows it.
    const changed = await tx`
      UPDATE users SET user_name = user_name WHERE user_name_key IS DISTINCT FROM account_key(user_name)`;
    // Indexes on account_key(...) hold keys computed with the old body: rebuilt, or lookups through them
    // miss. REINDEX also makes other sessions drop the index expressions they cached with the old body.
    const indexes = await tx<{ name: string }[]>`
      SELECT i.indexrelid::regclass::text AS name FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid AND c.relnamespace = 'public'::regnamespace
      WHERE pg_get_indexdef(i.indexrelid) LIKE '%account_key(%'`;
    for (const { name } of indexes) await tx.unsafe(`REINDEX INDEX ${name}`);
    // Seat activity is stored by key (there is no name to recompute from: the key is re-keyed, which
    // the bodies allow since each folds its own output to itself); two keys that become one keep the
    // later sign of life.
    await tx`
      INSERT INTO platform_activity (tenant_id, account_key, kind, app, at)
      SELECT DISTINCT ON (tenant_id, account_key(account_key)) tenant_id, account_key(account_key), kind, app, at
      FROM platform_activity WHERE account_key IS DISTINCT FROM account_key(account_key)
      ORDER BY tenant_id, account_key(account_key), at DESC
      ON CONFLICT (tenant_id, account_key) DO UPDATE SET
        at = GREATEST(platform_activity.at, EXCLUDED.at),
        kind = CASE WHEN EXCLUDED.at > platform_activity.at THEN EXCLUDED.kind ELSE platform_activity.kind END,
        app = CASE WHEN EXCLUDED.at > platform_activity.at THEN EXCLUDED.app ELSE platform_activity.app END`;
    await tx`DELETE FROM platform_activity WHERE account_key IS DISTINCT FROM account_key(account_key)`;
    return { collisions: 0, rekeyed: changed.count };
  });
  if (outcome.collisions > 0)
    return { body: current, kept: { wanted, collisions: outcome.collisions }, rekeyed: 0 };
  const rekeyed = outcome.rekeyed;
  return { body: wanted, rekeyed };
}
