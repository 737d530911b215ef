import { sql } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import {
  APP_PERMISSIONS,
  type AppPermission,
  canonical,
  ENTERPRISE_PERMISSIONS,
  type EnterprisePermission,
  TEAM_ROLES,
  type TeamRole,
} from '../../reconcile/model.js';
import type {
  AccountActivity,
  EventEdge,
  PlatformActivitySource,
  PlatformEvent,
  PlatformSlice,
} from '../connector.js';
import type { PlatformMirror } from '../mirror.js';
import { type HerokuClient, HerokuError } from './client.js';

/** The audit trail's media type (heroku-enterprise `audits` commands; REAL-API-NOTES §2.7). */
const AUDIT_TRAIL_MEDIA_TYPE = 'application/vnd.heroku+json; version=3.audit-trail';
/** Releases read per app and scan: newest first, one page (`order=desc` after a comma, REAL-API-NOTES D12). */
const RELEASES_PER_APP = 100;
/** Add-on providers create releases too ("created by user heroku-redis@addons.heroku.com"): not a person. */
const ADDON_ACCOUNT = /@addons\.heroku\.com$/;

interface HerokuAuditEvent {
  id: string;
  type: string;
  action: string;
  actor: { id: string; email: string } | null;
  app: { id: string; name: string } | null;
  team: { id: string; name: string } | null;
  data: Record<string, unknown> | null;
  created_at: string;
}
interface HerokuRelease {
  user: { id: string; email: string } | null;
  created_at: string;
}

/**
 * The account a membership event is about. The schema leaves `data` open and no public source shows its
 * shape for membership events (unverified): `data.user.email` and `data.email` are both accepted.
 */
function subjectOf(data: Record<string, unknown> | null): string | null {
  const user = data?.user as { email?: unknown } | undefined;
  const email = typeof user?.email === 'string' ? user.email : data?.email;
  return typeof email === 'string' ? email.toLowerCase() : null;
}

function edgeOf(event: HerokuAuditEvent): EventEdge | null {
  if (event.type === 'enterprise_account_membership') return { kind: 'enterprise' };
  if (event.app && event.type === 'collaborator')
    return { kind: 'app', name: event.app.name, remoteId: event.app.id };
  if (event.team) return { kind: 'team', name: event.team.name, remoteId: event.team.id };
  if (event.type === 'team' && typeof event.data?.name === 'string')
    return { kind: 'team', name: event.data.name, remoteId: (event.data.id as string | undefined) ?? null };
  return null;
}

/**
 * Heroku's audit trail (`GET /enterprise-accounts/{ea}/events`, one UTC day per request, no Range) and
 * app releases (`GET /apps/{app}/releases`, `user`: who created it), read through the connector's client,
 * so at its priority and within the shared rate budget.
 */
export class HerokuActivity implements PlatformActivitySource {
  private self: string | undefined;

  constructor(
    private readonly client: HerokuClient,
    private readonly mirror: PlatformMirror,
    private readonly db: Database,
    private readonly enterpriseAccount: () => Promise<string>,
  ) {}

  async serviceAccount(): Promise<string> {
    this.self ??= (await this.client.request<{ email: string }>('GET', '/account')).body.email.toLowerCase();
    return this.self;
  }

  async auditEvents(day: string): Promise<PlatformEvent[]> {
    const path = `/enterprise-accounts/${encodeURIComponent(await this.enterpriseAccount())}/events?day=${day}&order=asc`;
    const response = await this.client.request<HerokuAuditEvent[]>(
      'GET',
      path,
      undefined,
      undefined,
      AUDIT_TRAIL_MEDIA_TYPE,
    );
    return (response.body ?? []).map((e) => ({
      id: e.id,
      at: new Date(e.created_at),
      actor: e.actor?.email?.toLowerCase() ?? null,
      type: e.type,
      action: e.action,
      edge: edgeOf(e),
      subject: subjectOf(e.data),
    }));
  }

  async releaseActivity(since: Date): Promise<AccountActivity[]> {
    const apps = await this.db.execute<{ name: string; remote_id: string }>(sql`
      SELECT name, remote_id FROM apps WHERE tenant_id = ${this.mirror.tenantId} AND remote_id IS NOT NULL`);
    const newest = new Map<string, AccountActivity>();
    for (const app of apps) {
      let releases: HerokuRelease[];
      try {
        releases =
          (
            await this.client.request<HerokuRelease[]>(
              'GET',
              `/apps/${encodeURIComponent(app.remote_id)}/releases`,
              undefined,
              `version ..; max=${RELEASES_PER_APP}, order=desc;`,
            )
          ).body ?? [];
      } catch (error) {
        // One app deleted or closed to idsync since the scan must not cost every other app's activity;
        // credential problems and outages still stop the read.
        if (error instanceof HerokuError && ['not-found', 'forbidden', 'two-factor'].includes(error.failure))
          continue;
        throw error;
      }
      for (const release of releases) {
        const at = new Date(release.created_at);
        const account = release.user?.email?.toLowerCase();
        if (!account || ADDON_ACCOUNT.test(account) || at < since) continue;
        const known = newest.get(account);
        if (!known || known.at < at) newest.set(account, { account, kind: 'release', app: app.name, at });
      }
    }
    return [...newest.values()];
  }

  async refresh(edge: EventEdge): Promise<string | null> {
    const self = await this.serviceAccount();
    if (edge.kind === 'enterprise') {
      const path = `/enterprise-accounts/${encodeURIComponent(await this.enterpriseAccount())}/members`;
      const members = await this.client.listAll<{
        user: { id: string; email: string };
        permissions: { name: string }[];
        identity_provider: unknown;
      }>(path, 'id');
      const ids = new Map<string, string>();
      const slice: PlatformSlice = {
        kind: 'enterprise',
        members: members
          .filter((m) => m.user.email.toLowerCase() !== self)
          .map((m) => {
            const account = m.user.email.toLowerCase();
            ids.set(account, m.user.id);
            return {
              account,
              permissions: canonical(
                m.permissions.map((p) => p.name as EnterprisePermission),
                ENTERPRISE_PERMISSIONS,
              ),
              federated: m.identity_provider !== null && m.identity_provider !== undefined,
            };
          }),
      };
      await this.mirror.replace(slice, ids);
      return null;
    }
    const local = edge.remoteId
      ? await this.mirror.bindContainer(edge.kind, edge.name, edge.remoteId)
      : edge.name;
    const ref = encodeURIComponent(edge.remoteId ?? edge.name);
    if (edge.kind === 'team') {
      const members = await this.client.listAll<{ id: string; email: string; role: string | null }>(
        `/teams/${ref}/members`,
        'email',
      );
      const ids = new Map<string, string>();
      const slice: PlatformSlice = {
        kind: 'team',
        team: local,
        members: members
          .filter((m) => TEAM_ROLES.includes(m.role as TeamRole))
          .map((m) => {
            ids.set(m.email.toLowerCase(), m.id);
            return [m.email.toLowerCase(), m.role as TeamRole];
          }),
        implied: [self],
      };
      await this.mirror.replace(slice, ids);
      return local;
    }
    const collaborators = await this.client.listAll<{
      id: string;
      user: { email: string };
      permissions: { name: string }[];
      role: string | null;
    }>(`/teams/apps/${ref}/collaborators`, 'email');
    const ids = new Map<string, string>();
    const slice: PlatformSlice = {
      kind: 'app',
      app: local,
      // Entries implied by a team role are left out, as `scan()` and Heroku's CLI do.
      collaborators: collaborators
        .filter(
          (c) =>
            c.role !== 'admin' &&
            c.role !== 'owner' &&
            !c.user.email.toLowerCase().endsWith('@herokumanager.com'),
        )
        .map((c) => {
          ids.set(c.user.email.toLowerCase(), c.id);
          return [
            c.user.email.toLowerCase(),
            canonical(
              c.permissions.map((p) => p.name as AppPermission),
              APP_PERMISSIONS,
            ),
          ];
        }),
    };
    await this.mirror.replace(slice, ids);
    return local;
  }
}
