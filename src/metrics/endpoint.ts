import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { type NextFunction, type Request, type Response, Router } from 'express';
import { AggregatorRegistry } from 'prom-client';
import { forbidden, unauthorized } from '../errors.js';
import { adminTokenMatches } from '../security/admin-token.js';
import { registry } from './registry.js';

/*
 * GET /metrics on the API port and on the worker health port. Protected by default: Prometheus sends
 * `Authorization: Bearer $METRICS_TOKEN` (compared in constant time); METRICS_OPEN=true drops the
 * check for deployments whose port only Prometheus can reach. With neither set, /metrics refuses and
 * says how to turn it on.
 */

export interface MetricsAccess {
  metricsToken: string | undefined;
  metricsOpen: boolean;
}

export function metricsRouter(access: MetricsAccess): Router {
  const router = Router();
  router.get('/metrics', requireMetricsAccess(access), async (_req, res) => {
    res.type(registry.contentType).send(await scrape());
  });
  return router;
}

function requireMetricsAccess(access: MetricsAccess) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (access.metricsOpen) return next();
    if (!access.metricsToken)
      throw forbidden('metrics are not exposed: set METRICS_TOKEN (or METRICS_OPEN=true on a private port)');
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(req.get('Authorization') ?? '')?.[1];
    if (!adminTokenMatches(presented, access.metricsToken)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="idsync metrics"');
      throw unauthorized('a valid metrics bearer token is required (METRICS_TOKEN)');
    }
    next();
  };
}

/*
 * With `--processes N` the processes share their ports (node:cluster hands each connection to one of
 * them), so a scrape reaches one process at random. That process asks the primary, which gathers every
 * process's registry through prom-client's AggregatorRegistry and answers with the sum: whichever
 * process Prometheus reaches, it sees the whole group.
 */

type ScrapeMessage =
  | { type: 'idsync-metrics-request'; id: string }
  | { type: 'idsync-metrics-response'; id: string; text?: string; error?: string };

const SCRAPE_TIMEOUT_MS = 10_000;

async function scrape(): Promise<string> {
  if (!cluster.isWorker || !process.send) return registry.metrics();
  const id = randomUUID();
  return new Promise<string>((resolve, reject) => {
    const onMessage = (message: unknown) => {
      const m = message as ScrapeMessage;
      if (m?.type !== 'idsync-metrics-response' || m.id !== id) return;
      done();
      if (m.error !== undefined) reject(new Error(`aggregating the processes' metrics failed: ${m.error}`));
      else resolve(m.text ?? '');
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error('the primary process did not answer a metrics request'));
    }, SCRAPE_TIMEOUT_MS);
    const done = () => {
      clearTimeout(timer);
      process.off('message', onMessage);
    };
    process.on('message', onMessage);
    process.send?.({ type: 'idsync-metrics-request', id } satisfies ScrapeMessage);
  });
}

/** In a process of the group: answer the primary's aggregation requests from idsync's registry. */
export function offerMetricsToPrimary(): void {
  if (!cluster.isWorker) return;
  // prom-client installs its answering listener when an AggregatorRegistry is constructed, in any
  // process; this one is never read itself.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
}

/** In the primary: answers each process's scrape with the metrics of the whole group. */
export function aggregateMetricsForGroup(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: unknown) => {
    const m = message as ScrapeMessage;
    if (m?.type !== 'idsync-metrics-request') return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: 'idsync-metrics-response', id: m.id, text } satisfies ScrapeMessage),
      (error: Error) =>
        worker.send({
          type: 'idsync-metrics-response',
          id: m.id,
          error: error.message,
        } satisfies ScrapeMessage),
    );
  });
}
