import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { alignAccountKey } from './account-key.js';

/** `drizzle/` sits two levels above this file both in src/db and in the compiled dist/db. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url));

// Any constant works; it only has to be the same in every idsync process sharing a database.
const MIGRATION_LOCK_KEY = 0x1d5_c0de;

/**
 * Applies the checked-in migrations, then gives account_key() the body this server's version supports
 * best (src/db/account-key.ts). API and worker processes may start together against one database; an
 * advisory lock makes the second wait for the first instead of racing it.
 */
export async function runMigrations(
  databaseUrl: string,
  options: { warn?: (message: string) => void } = {},
): Promise<void> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await sql`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      await migrate(drizzle(sql), { migrationsFolder: MIGRATIONS_FOLDER });
      const key = await alignAccountKey(sql);
      if (key.kept)
        options.warn?.(
          `account names keep their ${key.body} comparison key: this PostgreSQL offers ${key.kept.wanted}, under which ${key.kept.collisions} group(s) of active users in one tenant would share a userName (e.g. "straße" and "strasse"); rename or deprovision all but one of each and restart`,
        );
      else if (key.rekeyed > 0)
        options.warn?.(
          `account names re-keyed with ${key.body} for this PostgreSQL: ${key.rekeyed} user(s) changed`,
        );
    } finally {
      await sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export function expectedMigrationCount(): number {
  const journal = JSON.parse(readFileSync(`${MIGRATIONS_FOLDER}/meta/_journal.json`, 'utf8')) as {
    entries: unknown[];
  };
  return journal.entries.length;
}

/** How many of the checked-in migrations the database has applied; 0 when none ever ran. */
export async function appliedMigrationCount(sql: postgres.Sql): Promise<number> {
  const [table] = await sql<{ exists: boolean }[]>`
    SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS exists`;
  if (!table?.exists) return 0;
  const [row] = await sql<
    { count: number }[]
  >`SELECT count(*)::int AS count FROM drizzle.__drizzle_migrations`;
  return row?.count ?? 0;
}
