import type { Sql } from '../db/client.js';
import { LANES, type LaneQueues } from '../jobs/queues.js';

/*
 * Gauges of state every process shares (the outbox, the queues, drift reports, held changes), read when
 * Prometheus scrapes rather than kept up to date by every writer. Each read is an index lookup or a
 * count over a small, bounded set — never a walk over a table that grows with the tenant's history:
 *   - pending outbox rows: the partial index outbox_pending_idx holds only unrelayed rows;
 *   - the oldest unrelayed row: the first entry of that index (ids grow with time);
 *   - drift findings: one LATERAL lookup of each tenant's latest report by
 *     drift_reports_tenant_created_idx, then its findings by their primary key;
 *   - held changes and stopped credentials: rows that exist only while a human has to act.
 * One read serves every gauge of a scrape.
 */

export const QUEUE_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'failed'] as const;

interface LabelledValue {
  labels: Record<string, string>;
  value: number;
}

export interface SharedState {
  outboxPending: number;
  outboxLagSeconds: number;
  queueJobs: LabelledValue[];
  driftFindings: LabelledValue[];
  credentialsStopped: number;
  brakeHoldsPending: number;
}

export interface SharedStateSources {
  sql: Sql;
  queues: LaneQueues;
}

/** The sources attached, newest last (several daemons can run in one test process). */
const attached: SharedStateSources[] = [];
let inFlight: Promise<SharedStateRead> | undefined;

/** Lets this process's scrapes read the shared state; returns the detach for shutdown. */
export function attachSharedState(sources: SharedStateSources): () => void {
  attached.push(sources);
  return () => {
    const index = attached.indexOf(sources);
    if (index >= 0) attached.splice(index, 1);
  };
}

/** What the last read found: `unread` when this process has nothing to read from (yet). */
export type SharedStateRead = SharedState | 'failed' | 'unread';

/**
 * The shared state for this scrape. prom-client starts every gauge's collect in the same tick, so they
 * share the one read in flight; the next scrape reads afresh. A failed read (PostgreSQL or Redis away)
 * does not fail the scrape — process, job and request metrics matter most then — it is reported as
 * `failed`, and the gauges keep their last values while idsync_shared_state_read_ok says they are stale.
 */
export function sharedStateSnapshot(): Promise<SharedStateRead> {
  const sources = attached.at(-1);
  if (!sources) return Promise.resolve('unread');
  if (!inFlight) {
    // Queue commands wait while Redis reconnects: a scrape must not wait with them.
    const read: Promise<SharedStateRead> = withTimeout(readSharedState(sources), READ_TIMEOUT_MS).catch(
      () => 'failed' as const,
    );
    inFlight = read;
    const clear = () => {
      if (inFlight === read) inFlight = undefined;
    };
    read.then(clear);
  }
  return inFlight;
}

/** Both answered from the partial index of unrelayed rows (outbox_pending_idx); no parameters. */
export const OUTBOX_BACKLOG_SQL = `
  SELECT (SELECT count(*)::int FROM outbox WHERE relayed_at IS NULL) AS pending,
    COALESCE((SELECT extract(epoch FROM now() - created_at)::float8 FROM outbox
      WHERE relayed_at IS NULL ORDER BY id LIMIT 1), 0) AS lag_seconds`;

const READ_TIMEOUT_MS = 3_000;

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

async function readSharedState({ sql, queues }: SharedStateSources): Promise<SharedState> {
  const [[outbox], findings, [waitingForHumans], counts] = await Promise.all([
    sql.unsafe<{ pending: number; lag_seconds: number }[]>(OUTBOX_BACKLOG_SQL),
    sql<{ class: string; severity: string; open: number }[]>`
      SELECT f.class, f.severity, count(*)::int AS open
      FROM tenants t
      CROSS JOIN LATERAL (SELECT r.id FROM drift_reports r WHERE r.tenant_id = t.id
        ORDER BY r.created_at DESC LIMIT 1) latest
      JOIN drift_findings f ON f.report_id = latest.id
      GROUP BY f.class, f.severity`,
    sql<{ stopped: number; held: number }[]>`
      SELECT (SELECT count(*)::int FROM tenants WHERE connector_status = 'stopped') AS stopped,
        (SELECT count(*)::int FROM held_changes WHERE status = 'pending') AS held`,
    Promise.all(LANES.map((lane) => queues[lane].getJobCounts('wait', ...QUEUE_STATES.slice(1)))),
  ]);
  return {
    outboxPending: outbox?.pending ?? 0,
    outboxLagSeconds: Math.max(0, outbox?.lag_seconds ?? 0),
    queueJobs: LANES.flatMap((lane, index) =>
      QUEUE_STATES.map((state) => ({
        labels: { lane, state },
        value: counts[index]![state === 'waiting' ? 'wait' : state] ?? 0,
      })),
    ),
    driftFindings: findings.map((f) => ({ labels: { class: f.class, severity: f.severity }, value: f.open })),
    credentialsStopped: waitingForHumans?.stopped ?? 0,
    brakeHoldsPending: waitingForHumans?.held ?? 0,
  };
}
