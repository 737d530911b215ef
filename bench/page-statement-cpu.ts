/**
 * PostgreSQL CPU of the page statement a walker's pages run (an unfiltered page of 100 after the page
 * before, with groups), read from the backend's /proc schedstat (nanoseconds on a CPU), not a test:
 * `npm run build && [COMPARE=<checkout of another commit, built>] [ROUNDS=6] [STATEMENT=userName] npx tsx bench/page-statement-cpu.ts`.
 * Runs against the database bench/after-start.sh leaves (the peers' 10,000 users; run that first), on
 * one connection: a warm-up round (parse, plans) left out, then each statement in turn for 300 pages per
 * round, the order alternating, so both see the same machine. Unlike EXPLAIN ANALYZE, which times every
 * node and adds its own cost, this is all a page costs the backend: planning, execution and writing the
 * result to the socket. Prints CPU ms per page, per round.
 * STATEMENT=userName measures a `userName eq` filter's statement instead (one user, with groups), over
 * the tenant's users in turn, and prints CPU µs per lookup.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type SQL, sql } from 'drizzle-orm';
import postgres from 'postgres';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:55432/idsync_after_start';
const ROUNDS = Number(process.env.ROUNDS ?? 6);
const PAGES_PER_ROUND = 300;
const PAGE = 100;

interface Checkout {
  name: string;
  text: string;
  names: string[];
  msPerPage: number[];
}

const BY_USER_NAME = process.env.STATEMENT === 'userName';

async function pageStatementOf(checkout: string): Promise<Checkout> {
  const dist = (file: string) => pathToFileURL(path.join(checkout, 'dist', file)).href;
  const { userPageSql } = (await import(dist('scim/user-queries.js'))) as {
    userPageSql: (where: SQL | undefined, values: 'placeholders', withGroups: boolean, shape: object) => SQL;
  };
  const { accountKeyOf } = (await import(dist('db/schema.js'))) as { accountKeyOf: (name: unknown) => SQL };
  const { boundOnce } = (await import(dist('db/statement.js'))) as {
    boundOnce: (statement: SQL) => { sql: string; params: unknown[] };
  };
  const after = sql`(${sql.placeholder('afterCreatedAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`;
  const bound = boundOnce(
    BY_USER_NAME
      ? userPageSql(
          sql`users.user_name_key = ${accountKeyOf(sql.placeholder('userName'))}`,
          'placeholders',
          true,
          {
            unique: true,
          },
        )
      : userPageSql(undefined, 'placeholders', true, { after, literalCount: PAGE }),
  );
  const names = bound.params.map((param) => {
    const placeholder = param as { name?: string; value?: { name?: string } };
    const name = placeholder.name ?? placeholder.value?.name;
    if (!name) throw new Error('a page statement parameter that is not a placeholder');
    return name;
  });
  return { name: checkout, text: bound.sql, names, msPerPage: [] };
}

const db = postgres(DATABASE_URL, { max: 1 });
try {
  const [tenant] = await db<{ id: string }[]>`SELECT id::text FROM tenants ORDER BY created_at LIMIT 1`;
  if (!tenant) throw new Error(`no tenant in ${DATABASE_URL}: run bench/after-start.sh first`);
  const ends = await db<{ created_at: string; id: string; user_name: string }[]>`
    SELECT created_at::text, id::text, user_name FROM users WHERE tenant_id = ${tenant.id} AND deprovisioned_at IS NULL
    ORDER BY created_at, id`;
  const pages = Math.floor(ends.length / PAGE) - 1;
  if (pages < 1) throw new Error('the tenant needs at least two pages of users');
  const [backend] = await db<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
  const cpuMs = () => Number(readFileSync(`/proc/${backend!.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  const checkouts = [await pageStatementOf(process.cwd())];
  if (process.env.COMPARE) checkouts.unshift(await pageStatementOf(path.resolve(process.env.COMPARE)));
  for (let round = 0; round <= ROUNDS; round++) {
    for (const checkout of round % 2 === 0 ? checkouts : [...checkouts].reverse()) {
      const before = cpuMs();
      for (let i = 0; i < PAGES_PER_ROUND; i++) {
        const end = ends[(i % pages) * PAGE + PAGE - 1]!;
        const values: Record<string, unknown> = {
          tenantId: tenant.id,
          baseUrl: 'http://127.0.0.1:8084/scim/v2',
          count: PAGE,
          offset: 0,
          afterCreatedAt: end.created_at,
          afterId: end.id,
          userName: ends[(round * PAGES_PER_ROUND + i) % ends.length]!.user_name,
        };
        await db
          .unsafe(
            checkout.text,
            checkout.names.map((name) => values[name] as string),
            { prepare: true },
          )
          .raw();
      }
      if (round > 0) checkout.msPerPage.push((cpuMs() - before) / PAGES_PER_ROUND);
    }
  }
  for (const checkout of checkouts) {
    const sorted = [...checkout.msPerPage].sort((a, b) => a - b);
    const median =
      (sorted[Math.floor((sorted.length - 1) / 2)]! + sorted[Math.ceil((sorted.length - 1) / 2)]!) / 2;
    console.log(
      BY_USER_NAME
        ? `${checkout.name}: PostgreSQL CPU per userName lookup ${checkout.msPerPage.map((ms) => (ms * 1000).toFixed(1)).join(' ')} µs` +
            ` (median ${(median * 1000).toFixed(1)})`
        : `${checkout.name}: PostgreSQL CPU per page ${checkout.msPerPage.map((ms) => ms.toFixed(3)).join(' ')} ms` +
            ` (median ${median.toFixed(3)})`,
    );
  }
} finally {
  await db.end();
}
