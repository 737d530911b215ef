/**
 * What the locks of a plain member add cost PostgreSQL (issue 17), not a test:
 * `npx tsx bench/member-add-locks.ts` (CONC, N, MEMBERS, ROUNDS).
 * The statement of plain member adds (addMembersSql) locks its group and its users (`FOR KEY SHARE`)
 * before it writes. This runs it as shipped and with every `FOR KEY SHARE` taken out, in alternating
 * blocks on one embedded PostgreSQL: N members added to a fresh group, MEMBERS per statement, at CONC
 * connections each running statements one after another (no shared statements: as separate processes
 * would send them). Prints the medians, per member, of wall time and of the CPU time of the backends
 * that ran the statements (read from /proc), and each block's wall time.
 */
import { fillPlaceholders } from 'drizzle-orm';
import postgres from 'postgres';
import { connectDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { boundOnce } from '../src/db/statement.js';
import { addMembersSql } from '../src/scim/groups.js';
import { createTenant } from '../src/tenants/tenants.js';
import { processCpuMs } from './process-cost.js';
import { round, startBackends } from './support.js';

const size = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const CONC = size('CONC', 8);
const N = size('N', 800);
const MEMBERS = size('MEMBERS', 1);
const ROUNDS = size('ROUNDS', 10);

const backends = await startBackends();
await runMigrations(backends.databaseUrl);
const database = connectDatabase(backends.databaseUrl, { max: 1 });
const { tenant } = await createTenant(database.db, 'bench', 'bench');
const users = (
  await database.sql<{ id: string }[]>`
    INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${tenant.id}, 'member' || n || '@example.com', 'scim' FROM generate_series(1, ${N}::int) AS n
    RETURNING id::text`
).map((r) => r.id);
await database.sql`ANALYZE`;

const statement = boundOnce(addMembersSql());
const variants = { shipped: statement.sql, withoutLocks: statement.sql.replaceAll('FOR KEY SHARE', '') };
if (variants.shipped === variants.withoutLocks) throw new Error('the statement takes no FOR KEY SHARE');

const sql = postgres(backends.databaseUrl, { max: CONC, onnotice: () => {} });
const connections = await Promise.all(Array.from({ length: CONC }, () => sql.reserve()));
const pids = await Promise.all(
  connections.map(async (c) => (await c<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]!.pid),
);

async function block(text: string): Promise<{ ms: number; backendMs: number }> {
  const [group] = await database.sql<{ id: string }[]>`
    INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, ${`block ${performance.now()}`}) RETURNING id::text`;
  let next = 0;
  const cpuBefore = pids.reduce((sum, pid) => sum + processCpuMs(pid), 0);
  const started = performance.now();
  await Promise.all(
    connections.map(async (connection) => {
      while (next < users.length) {
        const ids = users.slice(next, next + MEMBERS);
        next += MEMBERS;
        const values = fillPlaceholders(statement.params, {
          tenantId: tenant.id,
          groupId: group!.id,
          addOf: ids.map(() => 1),
          ids,
          displays: ids.map(() => null),
          causes: [JSON.stringify({ event: 'bench' })],
          actors: ['bench'],
          correlationIds: [null],
        });
        await connection.unsafe(text, values as never[], { prepare: true });
      }
    }),
  );
  const ms = performance.now() - started;
  const backendMs = pids.reduce((sum, pid) => sum + processCpuMs(pid), 0) - cpuBefore;
  await database.sql`DELETE FROM groups WHERE id = ${group!.id}`;
  return { ms, backendMs };
}

await block(variants.shipped);
await block(variants.withoutLocks);
const results = {
  shipped: [] as { ms: number; backendMs: number }[],
  withoutLocks: [] as { ms: number; backendMs: number }[],
};
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? (['shipped', 'withoutLocks'] as const) : (['withoutLocks', 'shipped'] as const);
  for (const name of order) results[name].push(await block(variants[name]));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const summary = Object.fromEntries(
  Object.entries(results).map(([name, blocks]) => [
    name,
    {
      wallUsPerMember: round((median(blocks.map((b) => b.ms)) * 1000) / N, 1),
      backendCpuUsPerMember: round((median(blocks.map((b) => b.backendMs)) * 1000) / N, 1),
      blockWallMs: blocks.map((b) => Math.round(b.ms)),
    },
  ]),
);
console.log(
  JSON.stringify(
    { conc: CONC, members: N, membersPerStatement: MEMBERS, rounds: ROUNDS, ...summary },
    null,
    2,
  ),
);
for (const c of connections) c.release();
await sql.end();
await database.close();
await backends.stop();
