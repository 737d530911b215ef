import { readFileSync } from 'node:fs';

/*
 * Where a process's CPU went, from a V8 `--cpu-prof` file: self time summed by the library (or part of
 * idsync) whose code was on top of the stack. Tells a job's fixed costs (BullMQ/ioredis, the postgres
 * driver, drizzle) from its own work without instrumenting the daemon.
 */

interface ProfileNode {
  id: number;
  callFrame: { url: string; functionName: string };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A frame's owner: an npm package or an idsync folder (src/jobs, src/reconcile...); else undefined. */
function ownerOf(frame: ProfileNode['callFrame']): string | undefined {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(frame.url);
  if (pkg) return pkg[1]!;
  const own = /\/dist\/(?:src\/)?([^/]+)\//.exec(frame.url);
  return own ? `idsync ${own[1]}` : undefined;
}

/** V8's pseudo-frames, kept apart; node's own code and native calls go to whoever called them. */
const PSEUDO = new Set(['(idle)', '(garbage collector)', '(program)', '(root)']);

/** Self milliseconds per owner, busiest first (the top `top`); idle time is left out. */
export function cpuByOwner(file: string, top = 12): { busyMs: number; byOwner: Record<string, number> } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  // Node's runtime (sockets, streams, buffers) is charged to the nearest caller that is a package or
  // idsync: the postgres driver's socket writes are the driver's cost, not "node".
  const parent = new Map<number, ProfileNode>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const owner = new Map<number, string>();
  for (const n of profile.nodes) {
    let who: string | undefined = PSEUDO.has(n.callFrame.functionName) ? n.callFrame.functionName : undefined;
    for (let at: ProfileNode | undefined = n; !who && at; at = parent.get(at.id)) who = ownerOf(at.callFrame);
    owner.set(n.id, who ?? 'node (runtime, no package caller)');
  }
  const micros = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const who = owner.get(id) ?? 'other';
    micros.set(who, (micros.get(who) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  micros.delete('(idle)');
  const busy = [...micros.values()].reduce((a, b) => a + b, 0);
  return {
    busyMs: Math.round(busy / 1000),
    byOwner: Object.fromEntries(
      [...micros]
        .sort((a, b) => b[1] - a[1])
        .slice(0, top)
        .map(([k, v]) => [k, Math.round(v / 1000)] as const),
    ),
  };
}
