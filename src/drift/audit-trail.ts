import { sql } from 'drizzle-orm';
import { recordAudit } from '../audit/audit-log.js';
import type { DatabaseHandle } from '../db/client.js';
import { accountKeyOf } from '../db/schema.js';
import { recordForReconcile } from '../jobs/outbox.js';
import type { Logger } from '../log.js';
import { recordActivity } from '../platform/activity.js';
import type { EventEdge, PlatformConnector, PlatformEvent } from '../platform/connector.js';
import { PlatformMirror } from '../platform/mirror.js';
import { isRemoval, type Operation } from '../reconcile/model.js';
import { planUser } from '../reconcile/reconciler.js';
import type { FindingClass } from './compare.js';
import { type DriftPolicy, loadDriftPolicy } from './scan.js';

/** Audit-trail events that grant access: what someone may have done by hand on the dashboard. */
const GRANT_TYPES = new Set(['team_membership', 'collaborator', 'enterprise_account_membership']);
const GRANT_ACTIONS = new Set(['create', 'update']);
/** How far back the very first poll of a tenant looks: recent changes, not a day's history at once. */
const FIRST_POLL_LOOKBACK_MS = 10 * 60_000;
/**
 * Events can reach the audit trail after events stamped later (Heroku writes it asynchronously): each
 * poll re-reads this much before the cursor and skips, by id, the events it already handled there.
 */
export const OVERLAP_MS = 10 * 60_000;
/** Ids remembered from the overlap window; beyond this many (a burst), the oldest may be handled twice. */
const MAX_SEEN_IDS = 10_000;
/**
 * The audit trail is served one UTC day per request; after a long outage only the last days are read
 * (the hourly drift scan covers anything older).
 */
const MAX_DAYS_PER_POLL = 2;

export interface AuditFinding {
  eventId: string;
  account: string;
  userId: string | null;
  class: FindingClass;
  severity: 'critical' | 'high' | 'medium';
  edge: string;
  actor: string | null;
  /** `fix-queued`: a reconcile was recorded in the outbox; `reported`: left for a human (policy report). */
  outcome: 'fix-queued' | 'reported';
}

export interface AuditPollResult {
  events: number;
  /** Grants made by someone other than idsync, re-verified through the connector. */
  foreignGrants: number;
  findings: AuditFinding[];
  teamsLearned: string[];
}

interface Cursor {
  at: Date;
  seen: Set<string>;
}

/**
 * One poll of the platform's audit trail for a tenant (a scan-lane job, every `audit_poll_seconds`):
 * reads the events after the stored cursor (and again the OVERLAP_MS before it, for events that
 * arrived late), records who was active, learns teams created on the platform, and for every
 * membership or collaborator grant idsync did not make (its actor is not idsync's service account, or
 * it names no actor: not provably idsync's) re-reads that edge from the platform into the mirror and plans the user
 * at once; access the rules do not justify becomes a finding, fixed through the outbox or reported as
 * the tenant's drift policy says. The cursor moves in the same transaction as those writes, so a
 * restart re-reads at most the events of one unfinished poll, and overlaps are skipped by event id
 * (the ids of every event in the overlap window are kept with the cursor).
 */
export async function pollAuditTrail(
  deps: { database: DatabaseHandle; connector: PlatformConnector; log?: Logger },
  tenantId: string,
  now = new Date(),
): Promise<AuditPollResult> {
  const source = deps.connector.activity;
  const result: AuditPollResult = { events: 0, foreignGrants: 0, findings: [], teamsLearned: [] };
  if (!source) return result;
  const { db } = deps.database;
  const cursor = (await loadCursor(deps.database, tenantId)) ?? {
    at: new Date(now.getTime() - FIRST_POLL_LOOKBACK_MS),
    seen: new Set<string>(),
  };
  const windowStart = new Date(cursor.at.getTime() - OVERLAP_MS);
  const read: PlatformEvent[] = [];
  for (const day of daysBetween(windowStart, now)) read.push(...(await source.auditEvents(day)));
  const events = read.filter((e) => e.at >= windowStart && !cursor.seen.has(e.id));
  events.sort((a, b) => a.at.getTime() - b.at.getTime());
  result.events = events.length;
  if (events.length === 0) return result;

  const self = await source.serviceAccount();
  const byOthers = events.filter((e) => e.actor !== self);
  const mirror = new PlatformMirror(db, tenantId, true);
  for (const event of byOthers) {
    if (event.type === 'team' && event.action === 'create' && event.edge?.kind === 'team') {
      result.teamsLearned.push(await mirror.learnTeam(event.edge.name, event.edge.remoteId));
    }
  }
  const grants = byOthers.filter(
    (e) => GRANT_TYPES.has(e.type) && GRANT_ACTIONS.has(e.action) && e.edge !== null && e.subject !== null,
  );
  result.foreignGrants = grants.length;
  // Each edge is read once per poll however many grants it had; then each account is planned once.
  const edges = new Map<string, { edge: EventEdge; local: string | null }>();
  for (const grant of grants) {
    const key = edgeKey(grant.edge!);
    if (!edges.has(key)) edges.set(key, { edge: grant.edge!, local: await source.refresh(grant.edge!) });
  }
  const policy = await loadDriftPolicy(deps.database, tenantId);
  const planned = new Set<string>();
  for (const grant of grants) {
    const account = grant.subject!;
    const { local } = edges.get(edgeKey(grant.edge!))!;
    if (planned.has(`${account}|${local}`)) continue;
    planned.add(`${account}|${local}`);
    const finding = await verifyGrant(deps, tenantId, grant, local, policy);
    if (finding) result.findings.push(finding);
  }

  // A late event never moves the cursor back.
  const newest = new Date(Math.max(cursor.at.getTime(), events[events.length - 1]!.at.getTime()));
  const activity = byOthers
    .filter((e) => e.actor !== null && (e.type !== 'team' || e.action !== 'create'))
    .map((e) => ({
      account: e.actor!,
      kind: `${e.type}.${e.action}`,
      app: e.edge?.kind === 'app' ? e.edge.name : null,
      at: e.at,
    }));
  await db.transaction(async (tx) => {
    await recordActivity(tx, tenantId, activity);
    const fixes = result.findings.filter((f) => f.outcome === 'fix-queued' && f.userId);
    await recordForReconcile(
      tx,
      fixes.map((f) => ({
        tenantId,
        lane: f.severity === 'critical' ? 'deprovision' : 'reconcile',
        subjectType: 'user',
        subjectId: f.userId!,
        cause: { event: 'audit-trail.fix', eventId: f.eventId },
      })),
    );
    await recordAudit(
      tx,
      result.findings.map((f) => ({
        tenantId,
        actor: 'drift:audit-trail',
        action: 'drift.found',
        subjectType: f.userId ? 'user' : 'tenant',
        subjectId: f.userId ?? tenantId,
        after: { ...f },
      })),
    );
    // Every event read in the next poll's overlap window was handled now or before: remember them all.
    const seen = read
      .filter((e) => e.at.getTime() >= newest.getTime() - OVERLAP_MS)
      .sort((a, b) => b.at.getTime() - a.at.getTime())
      .slice(0, MAX_SEEN_IDS)
      .map((e) => e.id);
    await tx.execute(sql`
      INSERT INTO platform_audit_cursors (tenant_id, last_event_at, seen_event_ids, updated_at)
      VALUES (${tenantId}, ${newest.toISOString()}, ${sql.param(seen)}::text[], now())
      ON CONFLICT (tenant_id) DO UPDATE SET last_event_at = EXCLUDED.last_event_at,
        seen_event_ids = EXCLUDED.seen_event_ids, updated_at = now()
      WHERE platform_audit_cursors.last_event_at <= EXCLUDED.last_event_at`);
  });
  if (result.findings.length > 0) {
    deps.log?.warn(
      { tenantId, findings: result.findings.length, event: 'drift.audit-trail' },
      'access granted outside idsync found in the platform audit trail',
    );
  }
  return result;
}

/**
 * Plans the account's user now that the mirror holds the edge as the platform has it: an operation the
 * plan would apply to that edge means the grant is not what the IdP wants.
 */
async function verifyGrant(
  deps: { database: DatabaseHandle; connector: PlatformConnector },
  tenantId: string,
  grant: PlatformEvent,
  local: string | null,
  policy: Required<DriftPolicy>,
): Promise<AuditFinding | undefined> {
  const edge = grant.edge!;
  const edgeName = edge.kind === 'enterprise' ? 'the Enterprise Account' : `${edge.kind} ${local}`;
  const [user] = await deps.database.db.execute<{ id: string; offboarded: boolean }>(sql`
    SELECT id::text, (NOT active OR deprovisioned_at IS NOT NULL) AS offboarded FROM users
    WHERE tenant_id = ${tenantId} AND user_name_key = ${accountKeyOf(grant.subject)}
    ORDER BY deprovisioned_at NULLS FIRST LIMIT 1`);
  const base = { eventId: grant.id, account: grant.subject!, actor: grant.actor, edge: edgeName };
  if (!user) {
    // Nobody the IdP knows: a human decides (as a scan's `orphan` finding); never removed automatically.
    return { ...base, userId: null, class: 'orphan', severity: 'medium', outcome: 'reported' };
  }
  const planned = await planUser(
    { database: deps.database, connectorFor: async () => deps.connector },
    tenantId,
    user.id,
  );
  // What the plan would take away or change on this edge: the part of the grant no rule justifies.
  const operation = planned?.plan.operations.find(
    (o) => (isRemoval(o) || CHANGES.has(o.kind)) && touches(o, edge, local),
  );
  if (!operation) return undefined;
  const findingClass = CHANGES.has(operation.kind) ? 'wrong-role' : 'excess-access';
  return {
    ...base,
    userId: user.id,
    class: findingClass,
    severity: user.offboarded ? 'critical' : 'high',
    outcome: policy[findingClass] === 'fix' ? 'fix-queued' : 'reported',
  };
}

const CHANGES = new Set<Operation['kind']>(['change-team-role', 'change-app-access', 'change-enterprise']);

function touches(operation: Operation, edge: EventEdge, local: string | null): boolean {
  if (operation.kind === 'revoke-tokens') return false;
  if (edge.kind === 'enterprise') return operation.kind.endsWith('-enterprise');
  if (edge.kind === 'team') return 'team' in operation && operation.team === local;
  return 'app' in operation && operation.app === local;
}

const edgeKey = (edge: EventEdge) =>
  edge.kind === 'enterprise' ? 'enterprise' : `${edge.kind}:${edge.remoteId ?? edge.name}`;

async function loadCursor(database: DatabaseHandle, tenantId: string): Promise<Cursor | undefined> {
  const [row] = await database.db.execute<{ at: string; seen: string[] }>(sql`
    SELECT to_json(last_event_at)#>>'{}' AS at, seen_event_ids AS seen FROM platform_audit_cursors
    WHERE tenant_id = ${tenantId}`);
  return row ? { at: new Date(row.at), seen: new Set(row.seen) } : undefined;
}

/** The UTC days (`YYYY-MM-DD`) from `from` to `to`, at most the last MAX_DAYS_PER_POLL. */
export function daysBetween(from: Date, to: Date): string[] {
  const days: string[] = [];
  const start = Math.max(from.getTime(), to.getTime() - (MAX_DAYS_PER_POLL - 1) * 86_400_000);
  for (
    let t = Date.UTC(
      new Date(start).getUTCFullYear(),
      new Date(start).getUTCMonth(),
      new Date(start).getUTCDate(),
    );
    t <= to.getTime();
    t += 86_400_000
  ) {
    days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}
