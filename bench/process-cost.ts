import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { Sql } from 'postgres';
import { round } from './support.js';

/*
 * What one operation costs the server side, independent of how busy the (shared) machine is: CPU time
 * of the idsync processes, of PostgreSQL and of Redis, and how many SQL statements and Redis commands it
 * took. Wall-clock throughput moves with the load of other processes; CPU time and counts do not.
 */

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime of the process itself, and cutime + cstime of its reaped children, in ticks. */
  own: number;
  reaped: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: fields count from after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const n = (i: number) => Number(fields[i - 3]);
    return { pid, ppid: n(4), own: n(14) + n(15), reaped: n(16) + n(17) };
  } catch {
    return undefined; // exited meanwhile
  }
}

/** CPU milliseconds a live process has used itself (not its children): a backend serving one connection. */
export function processCpuMs(pid: number): number {
  const stat = readStat(pid);
  if (!stat) throw new Error(`process ${pid} is gone`);
  return (stat.own * 1000) / TICKS_PER_SECOND;
}

/**
 * CPU milliseconds used so far by `root` and every live descendant, plus whatever exited descendants
 * used (counted into their parent's cutime/cstime once reaped), so a phase is measured as an after-
 * minus-before difference even when PostgreSQL backends or cluster workers come and go.
 */
export function treeCpuMs(root: number): number {
  const stats = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readStat(Number(name)))
    .filter((s): s is ProcStat => s !== undefined);
  const byParent = new Map<number, ProcStat[]>();
  for (const s of stats) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), s]);
  let ticks = 0;
  const visit = (s: ProcStat) => {
    ticks += s.own;
    for (const child of byParent.get(s.pid) ?? []) visit(child);
  };
  const top = stats.find((s) => s.pid === root);
  if (!top) return 0;
  visit(top);
  // Reaped children of the root only: a descendant's reaped time is already in its own parent's
  // cutime, but that parent is live and counted by `own`, which excludes cutime — so add every level's.
  const reaped = (s: ProcStat): number =>
    s.reaped + (byParent.get(s.pid) ?? []).reduce((sum, c) => sum + reaped(c), 0);
  ticks += reaped(top);
  return (ticks * 1000) / TICKS_PER_SECOND;
}

export interface CostProbe {
  serverPid: number;
  sql: Sql;
  redis: Redis;
}

export interface Snapshot {
  nodeMs: number;
  postgresMs: number;
  redisMs: number;
  redisCommands: Map<string, number>;
}

async function postmasterPid(sql: Sql): Promise<number> {
  const [row] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
  return readStat(row!.pid)!.ppid;
}

async function redisCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return (field('used_cpu_sys') + field('used_cpu_user')) * 1000;
}

async function redisCommands(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const calls = new Map<string, number>();
  for (const [, name, count] of info.matchAll(/cmdstat_([^:]+):calls=(\d+)/g))
    calls.set(name!, Number(count));
  return calls;
}

/** Starts measuring a phase: pg_stat_statements is reset, so it counts only what follows. */
export async function startPhase(probe: CostProbe): Promise<Snapshot> {
  await probe.sql`SELECT pg_stat_statements_reset()`;
  const postgres = await postmasterPid(probe.sql);
  return {
    nodeMs: treeCpuMs(probe.serverPid),
    postgresMs: treeCpuMs(postgres),
    redisMs: await redisCpuMs(probe.redis),
    redisCommands: await redisCommands(probe.redis),
  };
}

export interface PhaseCost {
  /** Per login: CPU milliseconds of the idsync processes, PostgreSQL (all its processes) and Redis. */
  nodeCpuMs: number;
  postgresCpuMs: number;
  redisCpuMs: number;
  sqlStatements: number;
  redisCommands: number;
  /** The most frequent statements and commands, per login, to explain what remains. */
  topStatements: Record<string, number>;
  topRedisCommands: Record<string, number>;
}

/** Ends a phase of `operations` logins: the difference since `before`, per login. */
export async function endPhase(probe: CostProbe, before: Snapshot, operations: number): Promise<PhaseCost> {
  const postgres = await postmasterPid(probe.sql);
  const nodeMs = treeCpuMs(probe.serverPid);
  const postgresMs = treeCpuMs(postgres);
  const redisMs = await redisCpuMs(probe.redis);
  const commands = await redisCommands(probe.redis);
  // The bench's own INFO and this probe's statements are not the logins' cost.
  const redisDelta = [...commands]
    .filter(([name]) => name !== 'info')
    .map(([name, n]) => [name, n - (before.redisCommands.get(name) ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1]);
  const statements = await probe.sql<{ query: string; calls: number }[]>`
    SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::int AS calls FROM pg_stat_statements
    WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_backend_pid%'
    ORDER BY calls DESC`;
  const per = (n: number) => round(n / operations, 2);
  return {
    nodeCpuMs: per(nodeMs - before.nodeMs),
    postgresCpuMs: per(postgresMs - before.postgresMs),
    redisCpuMs: per(redisMs - before.redisMs),
    sqlStatements: per(statements.reduce((sum, s) => sum + s.calls, 0)),
    redisCommands: per(redisDelta.reduce((sum, [, n]) => sum + n, 0)),
    topStatements: Object.fromEntries(
      statements.slice(0, 14).map((s) => [s.query.slice(0, 110), per(s.calls)] as const),
    ),
    topRedisCommands: Object.fromEntries(redisDelta.slice(0, 8).map(([name, n]) => [name, per(n)] as const)),
  };
}
