import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, inject } from 'vitest';
import { connectDatabase, type DatabaseHandle } from '../../src/db/client.js';

export interface TestDatabase extends DatabaseHandle {
  url: string;
}

/**
 * A fresh, migrated database of this test file's own, cloned from the template the global setup built,
 * and dropped when the file's tests end. `settings`: PostgreSQL settings (names written by the test) its
 * sessions start with.
 */
export async function createTestDatabase(
  options: { migrated?: boolean; settings?: Record<string, string> } = {},
): Promise<TestDatabase> {
  const adminUrl = inject('postgresAdminUrl');
  const name = `idsync_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  const template = options.migrated === false ? 'template0' : inject('templateDatabase');
  await admin.unsafe(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  // Settings every session of this database starts with (the daemon's included).
  for (const [setting, value] of Object.entries(options.settings ?? {}))
    await admin.unsafe(`ALTER DATABASE ${name} SET ${setting} = '${value.replaceAll("'", "''")}'`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = connectDatabase(url.toString(), { max: 10 });
  afterAll(async () => {
    await handle.close();
    const cleanup = postgres(adminUrl, { max: 1, onnotice: () => {} });
    await cleanup.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await cleanup.end();
  });
  return { ...handle, url: url.toString() };
}

export function uniquePrefix(label: string): string {
  return `test-${label}-${randomBytes(4).toString('hex')}`;
}
