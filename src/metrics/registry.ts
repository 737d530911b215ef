import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { lowestBudgets } from './platform-budget.js';
import { type SharedState, sharedStateSnapshot } from './shared-state.js';

/*
 * Every metric idsync exports, defined here and nowhere else, in one registry. Conventions
 * (prometheus.io/docs/practices/naming): `idsync_` prefix, base units (`_seconds`), counters end in
 * `_total`, and every label takes values from a closed set written in the code (lanes, operation
 * kinds, refusal reasons, HTTP methods, status codes). No user name, e-mail, id or token ever becomes
 * a label value.
 *
 * There is no tenant label: tenants are created at will (`idsync tenant create`) with no upper bound,
 * so a tenant label would multiply every series by a number nobody controls, and a tenant's name can
 * itself identify a customer. The per-tenant view is the console and the CLI; metrics say whether the
 * daemon as a whole is healthy and which tenant to look at comes from the alert's runbook query.
 *
 * Gauges read at scrape time from PostgreSQL or Redis (shared state) declare aggregator `max`: with
 * `--processes N` the primary aggregates every process's registry, and N processes reading the same
 * row must not add up to N times the backlog. Counters and histograms are per process and sum.
 */

export const registry = new Registry();

// Node's own process metrics under their standard names (process_*, nodejs_*), so stock Node
// dashboards work unchanged; idsync's own metrics carry the idsync_ prefix.
collectDefaultMetrics({ register: registry });

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The SCIM resource a request is about: the first path segment, from a closed list. */
export const SCIM_RESOURCES = [
  'Users',
  'Groups',
  'Schemas',
  'ResourceTypes',
  'ServiceProviderConfig',
  'Bulk',
  'Me',
  'other',
] as const;
export type ScimResource = (typeof SCIM_RESOURCES)[number];

export const scimRequests = new Counter({
  name: 'idsync_scim_requests_total',
  help: 'SCIM requests answered, by resource, method and HTTP status.',
  labelNames: ['resource', 'method', 'status'] as const,
  registers: [registry],
});

export const scimRequestDuration = new Histogram({
  name: 'idsync_scim_request_duration_seconds',
  help: 'Time to answer a SCIM request, by resource and method.',
  labelNames: ['resource', 'method'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const ssoLogins = new Counter({
  name: 'idsync_sso_logins_total',
  help: 'SAML logins at the ACS, by outcome (accepted, refused, error) and refusal reason ("none" when accepted).',
  labelNames: ['outcome', 'reason'] as const,
  registers: [registry],
});

export const outboxPending = new Gauge({
  name: 'idsync_outbox_pending_rows',
  help: 'Outbox rows written but not yet relayed into the job queues.',
  aggregator: 'max',
  async collect() {
    const state = await sharedStateSnapshot();
    if (typeof state === 'object') this.set(state.outboxPending);
  },
  registers: [registry],
});

export const outboxLag = new Gauge({
  name: 'idsync_outbox_relay_lag_seconds',
  help: 'Age of the oldest outbox row not yet relayed (0 when none waits).',
  aggregator: 'max',
  async collect() {
    const state = await sharedStateSnapshot();
    if (typeof state === 'object') this.set(state.outboxLagSeconds);
  },
  registers: [registry],
});

export const queueJobs = new Gauge({
  name: 'idsync_queue_jobs',
  help: 'Jobs in each lane by BullMQ state (waiting, prioritized, delayed, active, failed).',
  labelNames: ['lane', 'state'] as const,
  aggregator: 'max',
  async collect() {
    const state = await sharedStateSnapshot();
    if (typeof state === 'object') setLabelled(this, state.queueJobs);
  },
  registers: [registry],
});

export const jobDuration = new Histogram({
  name: 'idsync_job_duration_seconds',
  help: 'Time a job ran in a worker, by lane and result (completed, failed).',
  labelNames: ['lane', 'result'] as const,
  buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  registers: [registry],
});

export const jobsFailed = new Counter({
  name: 'idsync_jobs_failed_total',
  help: 'Failed job attempts by lane; final="true" when no attempt is left (the job sits in the failed set).',
  labelNames: ['lane', 'final'] as const,
  registers: [registry],
});

export const jobsStalled = new Counter({
  name: 'idsync_jobs_stalled_total',
  help: 'Jobs found stalled (their worker died or wedged while holding them), by lane.',
  labelNames: ['lane'] as const,
  registers: [registry],
});

export const reconcileOperations = new Counter({
  name: 'idsync_reconcile_operations_total',
  help: 'Plan operations applied by the reconciler, by kind and outcome (applied, already-done, blocked).',
  labelNames: ['kind', 'outcome'] as const,
  registers: [registry],
});

export const offboardingTimeToEffect = new Histogram({
  name: 'idsync_offboarding_time_to_effect_seconds',
  help: 'From the IdP event (deactivate, delete) to the last edge removed, per completed offboarding receipt.',
  buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600],
  registers: [registry],
});

export const driftFindingsOpen = new Gauge({
  name: 'idsync_drift_findings_open',
  help: "Findings in each tenant's latest drift report, summed over tenants, by class and severity.",
  labelNames: ['class', 'severity'] as const,
  aggregator: 'max',
  async collect() {
    const state = await sharedStateSnapshot();
    if (typeof state === 'object') setLabelled(this, state.driftFindings);
  },
  registers: [registry],
});

export const sharedStateReadOk = new Gauge({
  name: 'idsync_shared_state_read_ok',
  help: '1 when this scrape could read the outbox, queues and drift reports; 0 when PostgreSQL or Redis did not answer (those gauges then show their last values).',
  aggregator: 'min',
  async collect() {
    const state = await sharedStateSnapshot();
    if (state !== 'unread') this.set(state === 'failed' ? 0 : 1);
  },
  registers: [registry],
});

export const platformBudgetRemaining = new Gauge({
  name: 'idsync_platform_rate_budget_remaining',
  help: 'Lowest request budget left among the platform accounts this process called (RateLimit-Remaining).',
  labelNames: ['platform'] as const,
  aggregator: 'min',
  collect() {
    this.reset();
    for (const [platform, remaining] of lowestBudgets()) this.set({ platform }, remaining);
  },
  registers: [registry],
});

export const platformRateLimited = new Counter({
  name: 'idsync_platform_rate_limited_total',
  help: 'Platform answers of 429 Too Many Requests.',
  labelNames: ['platform'] as const,
  registers: [registry],
});

export const platformCredentialsStopped = new Gauge({
  name: 'idsync_platform_credentials_stopped',
  help: 'Tenants whose platform credential was refused, so idsync stopped calling the platform for them.',
  aggregator: 'max',
  async collect() {
    const state = await sharedStateSnapshot();
    if (typeof state === 'object') this.set(state.credentialsStopped);
  },
  registers: [registry],
});

export const brakeHoldsPending = new Gauge({
  name: 'idsync_brake_holds_pending',
  help: 'Mass changes held by the brake and awaiting approval.',
  aggregator: 'max',
  async collect() {
    const state = await sharedStateSnapshot();
    if (typeof state === 'object') this.set(state.brakeHoldsPending);
  },
  registers: [registry],
});

/** Replaces a labelled gauge's series with this scrape's rows, so a class that went to zero disappears. */
function setLabelled<L extends string>(
  gauge: Gauge<L>,
  rows: SharedState['queueJobs'] | SharedState['driftFindings'],
): void {
  gauge.reset();
  for (const { labels, value } of rows) gauge.set(labels as Partial<Record<L, string>>, value);
}
