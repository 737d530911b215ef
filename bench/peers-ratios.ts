import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/*
 * Prints, for one sitting of bench/peers.sh, each phase's throughput per server and idsync's ratio to the
 * best durable peer (Jackson or better-auth: the ones that keep their data in PostgreSQL). The bulk PATCH
 * is one request, so it compares wall time (the peer's over idsync's: above 1 means idsync is faster).
 *
 *   npx tsx bench/peers-ratios.ts <sitting directory with <server>.json files from load.mjs>
 */

interface PhaseResult {
  phase: string;
  rps: number;
  wall_s: number;
  errors: number;
  cpu_server_pct?: number;
  cpu_pg_pct?: number;
}

const PHASES: { phase: string; label: string; lowerIsBetter?: boolean }[] = [
  { phase: 'create-users', label: 'create users (req/s)' },
  { phase: 'filter', label: 'userName eq filter (req/s)' },
  { phase: 'patch-add-1', label: 'single adds to one group (req/s)' },
  { phase: 'patch-bulk', label: 'one PATCH of 1,000 members (s)', lowerIsBetter: true },
  { phase: 'list-pages', label: 'pages of 100, 16 clients (req/s)' },
  { phase: 'list-walk', label: 'page walk, 1 client (req/s)' },
];
const DURABLE_PEERS = ['jackson', 'better-auth'];

const directory = process.argv[2];
if (!directory) throw new Error('usage: tsx bench/peers-ratios.ts <sitting directory>');
const servers = readdirSync(directory)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort((a, b) => Number(a.startsWith('idsync')) - Number(b.startsWith('idsync')) || a.localeCompare(b));
const results = new Map(
  servers.map((server) => {
    const parsed = JSON.parse(readFileSync(path.join(directory, `${server}.json`), 'utf8')) as {
      results: PhaseResult[];
    };
    return [server, new Map(parsed.results.map((r) => [r.phase, r]))];
  }),
);

const figureOf = (r: PhaseResult | undefined, lowerIsBetter: boolean | undefined) =>
  r === undefined ? undefined : lowerIsBetter ? r.wall_s : r.rps;
const idsyncRuns = servers.filter((s) => s.startsWith('idsync'));
const header = ['phase', ...servers, ...idsyncRuns.map((s) => `${s} ÷ best peer`)];
const rows = PHASES.map(({ phase, label, lowerIsBetter }) => {
  const peers = DURABLE_PEERS.map((p) => figureOf(results.get(p)?.get(phase), lowerIsBetter)).filter(
    (v): v is number => v !== undefined,
  );
  const best = peers.length === 0 ? undefined : lowerIsBetter ? Math.min(...peers) : Math.max(...peers);
  const cells = servers.map((s) => {
    const r = results.get(s)?.get(phase);
    const v = figureOf(r, lowerIsBetter);
    return v === undefined ? '—' : `${v}${r && r.errors > 0 ? ` (${r.errors} errors)` : ''}`;
  });
  const ratios = idsyncRuns.map((s) => {
    const v = figureOf(results.get(s)?.get(phase), lowerIsBetter);
    if (v === undefined || best === undefined) return '—';
    return `${(lowerIsBetter ? best / v : v / best).toFixed(2)}×`;
  });
  return [label, ...cells, ...ratios];
});
const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
console.log(line(header));
console.log(line(header.map(() => '---')));
for (const row of rows) console.log(line(row));
