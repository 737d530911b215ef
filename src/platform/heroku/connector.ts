import pMap from 'p-map';
import {
  APP_PERMISSIONS,
  type AppPermission,
  canonical,
  ENTERPRISE_PERMISSIONS,
  type EnterprisePermission,
  isRemoval,
  TEAM_ROLES,
  type TeamRole,
  targetRole,
} from '../../reconcile/model.js';
import type {
  EnterpriseMember,
  HumanStep,
  OperationOutcome,
  PlatformConnector,
  PlatformOperation,
  PlatformSlice,
} from '../connector.js';
import type { PlatformMirror, RecordedFacts } from '../mirror.js';
import { HerokuActivity } from './activity.js';
import { type HerokuClient, HerokuError, type HerokuResponse } from './client.js';
import type { HerokuSettings } from './settings.js';

/** SSO users' CLI tokens expire this long after their last login (help.heroku.com/PBGP6IDE). */
const SSO_TOKEN_LIFETIME_MS = 8 * 3600_000;

interface HerokuUserRef {
  id: string;
  email: string;
}
interface HerokuEnterpriseMember {
  user: HerokuUserRef;
  permissions: { name: string }[];
  identity_provider: { id?: string } | null;
}
interface HerokuTeamMember {
  id: string;
  email: string;
  role: string | null;
}
interface HerokuCollaborator {
  id: string;
  user: HerokuUserRef;
  permissions: { name: string }[];
  role: string | null;
}
interface HerokuContainer {
  id: string;
  name: string;
}

/**
 * The sort field each list accepts. Team members declare `ranges: ["email"]` in the schema; team-app
 * collaborators refuse `id` and accept `email` (terraform-provider-heroku #379/#380); the others are
 * undocumented, so they use the reference's default `id` (the client falls back to `Accept-Ranges`).
 */
const SORT = {
  enterpriseMembers: 'id',
  teams: 'id',
  teamMembers: 'email',
  teamApps: 'id',
  collaborators: 'email',
} as const;

/**
 * The text Heroku answers a create of an existing collaborator with (terraform matches "is already a
 * collaborator on app"); the Enterprise Account's wording is unverified, hence "member" too.
 */
const ALREADY_THERE = /is already a (collaborator|member)/i;
/** Heroku's answer for an e-mail with no Heroku account (terraform matches this text). */
const NO_SUCH_USER = /couldn.t find that user/i;

/** `view` is part of every Heroku permission set (heroku/cli access/add.ts; Dev Center enterprise-account-access). */
function withView<P extends string>(permissions: readonly P[], order: readonly P[]): P[] {
  return canonical(['view' as P, ...permissions], order);
}

type Container = { kind: 'enterprise' } | { kind: 'team'; name: string } | { kind: 'app'; name: string };

function containerOf(operation: PlatformOperation): Container {
  if ('team' in operation) return { kind: 'team', name: operation.team };
  if ('app' in operation) return { kind: 'app', name: operation.app };
  return { kind: 'enterprise' };
}

export interface HerokuConnectorHooks {
  /** Heroku refused the credentials themselves: the tenant is stopped and an operator alerted. */
  stopTenant(reason: string): Promise<void>;
  /** Remembers the Enterprise Account's id (paths use it from then on). */
  rememberEnterpriseAccountId(id: string): Promise<void>;
}

/**
 * Heroku Teams and Enterprise Accounts through the Platform API. Reads of one user come from the
 * mirror (Heroku cannot list one user's teams without listing every team); every change goes to Heroku
 * first and is written to the mirror once Heroku accepted it; drift scans read Heroku itself and
 * refresh the mirror. Teams, apps, the Enterprise Account and members are addressed by the ids scans
 * stored ("id should be preferred to avoid ambiguity", reference "Data Integrity"): names can change.
 */
export class HerokuConnector implements PlatformConnector {
  readonly name = 'heroku';
  readonly activity: HerokuActivity;
  private enterpriseId: string | undefined;

  constructor(
    private readonly client: HerokuClient,
    private readonly mirror: PlatformMirror,
    private readonly settings: HerokuSettings,
    private readonly hooks: HerokuConnectorHooks,
  ) {
    this.enterpriseId = settings.enterpriseAccountId;
    this.activity = new HerokuActivity(client, mirror, mirror.db, () => this.enterpriseAccount());
  }

  readAccess(account: string) {
    return this.mirror.readAccess(account);
  }

  teamAdmins(teams: readonly string[]) {
    return this.mirror.teamAdmins(teams);
  }

  enterpriseSize() {
    return this.mirror.enterpriseSize();
  }

  /**
   * One request per operation (Heroku has no batch endpoints), but a run of operations of one kind
   * touches independent edges (different apps, different teams), so its requests go out concurrently;
   * the runs stay in the plan's order (grants, then apps, then teams, the Enterprise Account last).
   */
  async applyAll(operations: readonly PlatformOperation[]): Promise<OperationOutcome[]> {
    const outcomes: OperationOutcome[] = [];
    let start = 0;
    while (start < operations.length) {
      let end = start + 1;
      while (end < operations.length && operations[end]!.kind === operations[start]!.kind) end += 1;
      outcomes.push(
        ...(await pMap(operations.slice(start, end), (operation) => this.apply(operation), {
          concurrency: this.settings.concurrency,
        })),
      );
      start = end;
    }
    return outcomes;
  }

  async apply(operation: PlatformOperation): Promise<OperationOutcome> {
    let facts: RecordedFacts;
    try {
      facts = await this.send(operation);
    } catch (error) {
      if (!(error instanceof HerokuError)) throw error;
      return this.outcomeOf(operation, error);
    }
    await this.mirror.record(operation, facts);
    if (!isRemoval(operation)) await this.mirror.clearPending(operation.account);
    return { status: 'applied' };
  }

  /** What a refusal means, by Heroku's error id; credential problems stop the tenant. */
  private async outcomeOf(operation: PlatformOperation, error: HerokuError): Promise<OperationOutcome> {
    switch (error.failure) {
      case 'credentials':
        await this.hooks.stopTenant(error.message);
        throw error;
      case 'unavailable':
        throw error;
      case 'forbidden':
        // On the Enterprise Account itself, or when the token can no longer read its own account, no
        // operation can succeed: stop and alert. On one team or app it is that container's problem.
        if (containerOf(operation).kind === 'enterprise' || !(await this.credentialsWork())) {
          await this.hooks.stopTenant(error.message);
          throw error;
        }
        return {
          status: 'blocked',
          cause: 'forbidden',
          reason: `Heroku refused idsync's service account (${error.message}): make it an admin of ${describeContainer(containerOf(operation))}`,
        };
      case 'two-factor':
        return {
          status: 'blocked',
          cause: 'two-factor',
          reason: `Heroku wants a second authentication factor for ${describeContainer(containerOf(operation))} (${error.message}); idsync's service account cannot give one: change it by hand`,
        };
      case 'not-found':
        if (isRemoval(operation)) return this.confirmRemoval(operation, error);
        if (NO_SUCH_USER.test(error.message)) {
          await this.mirror.markPending(operation.account, error.message);
          return {
            status: 'blocked',
            cause: 'no-platform-account',
            reason: `${operation.account} has no Heroku account yet (${error.message}); retried after their first sign-in`,
          };
        }
        return {
          status: 'blocked',
          cause: 'container-not-found',
          reason: `Heroku: ${error.message} (renamed or deleted on Heroku? run \`idsync drift scan\`)`,
        };
      case 'range-not-accepted':
      case 'refused':
        return { status: 'blocked', cause: 'refused', reason: `Heroku refused: ${error.message}` };
    }
  }

  /** Whether the token still reads its own account: a 403 on one team is then that team's. */
  private async credentialsWork(): Promise<boolean> {
    try {
      await this.client.request('GET', '/account');
      return true;
    } catch (error) {
      if (error instanceof HerokuError && (error.failure === 'credentials' || error.failure === 'forbidden'))
        return false;
      throw error;
    }
  }

  /**
   * A 404 on a removal means "already removed" only when the container is there and the member is not:
   * Heroku also answers 404 for a team, app or Enterprise Account it cannot find under that name
   * (renamed), and the user would keep their access while the receipt said removed.
   */
  private async confirmRemoval(operation: PlatformOperation, error: HerokuError): Promise<OperationOutcome> {
    const container = containerOf(operation);
    const { path, byId } = await this.containerPath(container);
    try {
      await this.client.request('GET', path);
    } catch (lookup) {
      if (!(lookup instanceof HerokuError) || lookup.failure !== 'not-found') throw lookup;
      if (byId && container.kind !== 'enterprise') {
        // A team or app deleted on Heroku (its id came from Heroku): its memberships went with it.
        await this.mirror.record(operation);
        return { status: 'already-done' };
      }
      return {
        status: 'blocked',
        cause: 'container-not-found',
        reason: `Heroku has no ${describeContainer(container)} under that name (renamed or deleted?) and idsync has not read its id yet: run \`idsync drift scan\`, then the removal is retried (${error.message})`,
      };
    }
    if (await this.stillListed(operation, path)) {
      return {
        status: 'blocked',
        cause: 'refused',
        reason: `Heroku answered 404 but still lists ${operation.account} in ${describeContainer(container)} (${error.message})`,
      };
    }
    await this.mirror.record(operation);
    return { status: 'already-done' };
  }

  private async stillListed(operation: PlatformOperation, containerPath: string): Promise<boolean> {
    const account = operation.account;
    switch (operation.kind) {
      case 'revoke-enterprise':
        for await (const m of this.client.list<HerokuEnterpriseMember>(
          `${containerPath}/members`,
          SORT.enterpriseMembers,
        ))
          if (m.user.email.toLowerCase() === account) return true;
        return false;
      case 'remove-team-member':
        for await (const m of this.client.list<HerokuTeamMember>(
          `${containerPath}/members`,
          SORT.teamMembers,
        ))
          if (m.email.toLowerCase() === account) return true;
        return false;
      default:
        try {
          await this.client.request('GET', `${containerPath}/collaborators/${encodeURIComponent(account)}`);
          return true;
        } catch (lookup) {
          if (lookup instanceof HerokuError && lookup.failure === 'not-found') return false;
          throw lookup;
        }
    }
  }

  /** The Enterprise Account's id, read once from its configured id or name and remembered. */
  private async enterpriseAccount(): Promise<string> {
    if (this.enterpriseId) return this.enterpriseId;
    const found = (
      await this.client.request<HerokuContainer>(
        'GET',
        `/enterprise-accounts/${encodeURIComponent(this.settings.enterpriseAccount)}`,
      )
    ).body;
    this.enterpriseId = found.id;
    await this.hooks.rememberEnterpriseAccountId(found.id);
    return found.id;
  }

  /** The path of a container, by Heroku id when a scan stored one, else by name. */
  private async containerPath(container: Container): Promise<{ path: string; byId: boolean }> {
    if (container.kind === 'enterprise') {
      return {
        path: `/enterprise-accounts/${encodeURIComponent(await this.enterpriseAccount())}`,
        byId: true,
      };
    }
    const { container: id } = await this.mirror.remoteIds(container);
    const base = container.kind === 'team' ? '/teams/' : '/teams/apps/';
    return { path: `${base}${encodeURIComponent(id ?? container.name)}`, byId: id !== null };
  }

  private async send(operation: PlatformOperation): Promise<RecordedFacts> {
    const container = containerOf(operation);
    const { path } = await this.containerPath(container);
    const ids = await this.mirror.remoteIds(container, operation.account);
    const member = encodeURIComponent(ids.member ?? operation.account);
    switch (operation.kind) {
      case 'grant-enterprise': {
        const permissions = withView(operation.permissions, ENTERPRISE_PERMISSIONS);
        // No `federated`: it means "created as part of SSO JIT" (schema) and the official CLI never
        // sends it; whether a user is under SSO is read back from `identity_provider`.
        return this.createOrUpdate(
          () =>
            this.client.request<HerokuEnterpriseMember>('POST', `${path}/members`, {
              user: operation.account,
              permissions,
            }),
          () =>
            this.client.request<HerokuEnterpriseMember>('PATCH', `${path}/members/${member}`, {
              permissions,
            }),
          enterpriseFacts,
        );
      }
      case 'change-enterprise': {
        const permissions = withView(operation.to, ENTERPRISE_PERMISSIONS);
        const answer = await this.client.request<HerokuEnterpriseMember>(
          'PATCH',
          `${path}/members/${member}`,
          {
            permissions,
          },
        );
        return enterpriseFacts(answer.body);
      }
      case 'revoke-enterprise':
        await this.client.request('DELETE', `${path}/members/${member}`);
        return {};
      case 'add-team-member':
      case 'change-team-role':
      case 'promote-fallback-admin': {
        // PUT creates or updates: the one idempotent way to set a member's role.
        const answer = await this.client.request<HerokuTeamMember>('PUT', `${path}/members`, {
          email: operation.account,
          role: targetRole(operation),
        });
        return { remoteId: answer.body?.id };
      }
      case 'remove-team-member':
        await this.client.request('DELETE', `${path}/members/${member}`);
        return {};
      case 'grant-app-access': {
        const permissions = withView(operation.permissions, APP_PERMISSIONS);
        return this.createOrUpdate(
          () =>
            this.client.request<HerokuCollaborator>('POST', `${path}/collaborators`, {
              user: operation.account,
              permissions,
              silent: true,
            }),
          () =>
            this.client.request<HerokuCollaborator>('PATCH', `${path}/collaborators/${member}`, {
              permissions,
            }),
          (body) => ({ remoteId: body?.id }),
        );
      }
      case 'change-app-access': {
        const answer = await this.client.request<HerokuCollaborator>(
          'PATCH',
          `${path}/collaborators/${member}`,
          {
            permissions: withView(operation.to, APP_PERMISSIONS),
          },
        );
        return { remoteId: answer.body?.id };
      }
      case 'revoke-app-access':
        await this.client.request('DELETE', `${path}/collaborators/${member}`);
        return {};
    }
  }

  /**
   * A create Heroku refuses because the member already exists (the mirror was behind) becomes an
   * update, so granting is idempotent. Only that refusal: any other (an unknown user, a bad
   * permission, a missing second factor) is an answer in its own right.
   */
  private async createOrUpdate<T>(
    create: () => Promise<HerokuResponse<T>>,
    update: () => Promise<HerokuResponse<T>>,
    facts: (body: T) => RecordedFacts,
  ): Promise<RecordedFacts> {
    try {
      return facts((await create()).body);
    } catch (error) {
      if (error instanceof HerokuError && error.failure === 'refused' && ALREADY_THERE.test(error.message))
        return facts((await update()).body);
      throw error;
    }
  }

  /**
   * Reads Heroku: the Enterprise Account's members, its teams (each team's members and apps once), and
   * each app's collaborators, refreshing the mirror slice by slice as it goes. A team or app that cannot
   * be read (403, 404, a refused range) becomes an `unreadable` slice and the scan goes on; only a
   * credential problem stops it. Left out, as Heroku's own CLI does: idsync's service account, and in
   * app lists the entries implied by a team role (admins, the `…@herokumanager.com` owner).
   */
  async *scan(): AsyncGenerator<PlatformSlice> {
    try {
      const self = (await this.client.request<HerokuUserRef>('GET', '/account')).body.email.toLowerCase();
      const enterprise = `/enterprise-accounts/${encodeURIComponent(await this.enterpriseAccount())}`;
      const removed = await this.mirror.recentRemovals();
      const keep = (edge: string, account: string) => account !== self && !removed.has(`${edge}|${account}`);

      const enterpriseIds = new Map<string, string>();
      const members: EnterpriseMember[] = [];
      for (const m of await this.client.listAll<HerokuEnterpriseMember>(
        `${enterprise}/members`,
        SORT.enterpriseMembers,
      )) {
        const account = m.user.email.toLowerCase();
        if (!keep('enterprise', account)) continue;
        enterpriseIds.set(account, m.user.id);
        members.push({
          account,
          permissions: canonical(
            m.permissions.map((p) => p.name as EnterprisePermission),
            ENTERPRISE_PERMISSIONS,
          ),
          // What Heroku says, never configuration: the receipt's token lifetimes depend on it.
          federated: m.identity_provider !== null && m.identity_provider !== undefined,
        });
      }
      const enterpriseSlice: PlatformSlice = { kind: 'enterprise', members };
      await this.mirror.replace(enterpriseSlice, enterpriseIds);
      yield enterpriseSlice;

      const teams = await this.client.listAll<HerokuContainer>(`${enterprise}/teams`, SORT.teams);
      const teamNames: string[] = [];
      const apps: HerokuContainer[] = [];
      let everyTeamRead = true;
      const concurrency = this.settings.concurrency;
      // Fetched a chunk at a time with several requests in flight, yielded in order, each read once.
      for (let i = 0; i < teams.length; i += concurrency) {
        const chunk = await pMap(
          teams.slice(i, i + concurrency),
          async (team) => {
            const path = `/teams/${encodeURIComponent(team.id)}`;
            const read = await isolated(() =>
              Promise.all([
                this.client.listAll<HerokuTeamMember>(`${path}/members`, SORT.teamMembers),
                this.client.listAll<HerokuContainer>(`${path}/apps`, SORT.teamApps),
              ]),
            );
            return { team, local: await this.mirror.bindContainer('team', team.name, team.id), read };
          },
          { concurrency },
        );
        for (const { team, local, read } of chunk) {
          teamNames.push(local);
          if ('failure' in read) {
            everyTeamRead = false;
            yield {
              kind: 'unreadable',
              edge: { team: local },
              reason: unreadableReason(team.name, read.failure),
            };
            continue;
          }
          const [teamMembers, teamApps] = read.value;
          const ids = new Map<string, string>();
          const slice: PlatformSlice = {
            kind: 'team',
            team: local,
            members: teamMembers
              .filter((m): m is HerokuTeamMember & { role: TeamRole } =>
                TEAM_ROLES.includes(m.role as TeamRole),
              )
              .map((m) => [m.email.toLowerCase(), m.role, m.id] as const)
              .filter(([account]) => !removed.has(`team:${local}|${account}`))
              .map(([account, role, id]) => {
                ids.set(account, id);
                return [account, role];
              }),
            // idsync's service account stays in the mirror (it counts as an admin for the last-admin
            // rule) but is never drift.
            implied: [self],
          };
          await this.mirror.replace(slice, ids);
          yield slice;
          apps.push(...teamApps);
        }
      }
      await this.mirror.forgetAllBut('team', teamNames);

      const appNames: string[] = [];
      let everyAppRead = everyTeamRead;
      for (let i = 0; i < apps.length; i += concurrency) {
        const chunk = await pMap(
          apps.slice(i, i + concurrency),
          async (app) => ({
            app,
            local: await this.mirror.bindContainer('app', app.name, app.id),
            read: await isolated(() =>
              this.client.listAll<HerokuCollaborator>(
                `/teams/apps/${encodeURIComponent(app.id)}/collaborators`,
                SORT.collaborators,
              ),
            ),
          }),
          { concurrency },
        );
        for (const { app, local, read } of chunk) {
          appNames.push(local);
          if ('failure' in read) {
            everyAppRead = false;
            yield {
              kind: 'unreadable',
              edge: { app: local },
              reason: unreadableReason(app.name, read.failure),
            };
            continue;
          }
          const ids = new Map<string, string>();
          const implied: string[] = [];
          const collaborators: [string, AppPermission[]][] = [];
          for (const c of read.value) {
            const account = c.user.email.toLowerCase();
            // Implied by the team (Dev Center org-users-access; `heroku access` filters the same).
            if (c.role === 'admin' || c.role === 'owner' || account.endsWith('@herokumanager.com')) {
              if (account !== self) implied.push(account);
              continue;
            }
            if (!keep(`app:${local}`, account)) continue;
            ids.set(account, c.id);
            collaborators.push([
              account,
              canonical(
                c.permissions.map((p) => p.name as AppPermission),
                APP_PERMISSIONS,
              ),
            ]);
          }
          const slice: PlatformSlice = { kind: 'app', app: local, collaborators, implied };
          await this.mirror.replace(slice, ids);
          yield slice;
        }
      }
      // Apps of an unreadable team were never listed: forget nothing rather than forget them.
      if (everyAppRead) await this.mirror.forgetAllBut('app', appNames);
    } catch (error) {
      if (error instanceof HerokuError && error.failure === 'credentials')
        await this.hooks.stopTenant(error.message);
      throw error;
    }
  }

  /**
   * Heroku offers no endpoint to revoke another user's tokens (`/oauth/authorizations` acts on the
   * caller's own). What is left depends on whether Heroku said the user is under SSO (its
   * `identity_provider`, read by scans): token lifetimes per help.heroku.com/PBGP6IDE.
   */
  async residualRisk(account: string, idpEventAt: Date): Promise<HumanStep[]> {
    const member = await this.mirror.enterpriseMember(account);
    const steps: HumanStep[] = [];
    const disable = `ask Heroku support to disable the account ${account}, or have its owner change its password (ends the Dashboard API key) and delete each authorization (\`heroku authorizations\`, then \`heroku authorizations:revoke <id>\`)`;
    if (member?.federated === true) {
      const by = new Date(idpEventAt.getTime() + SSO_TOKEN_LIFETIME_MS).toISOString();
      steps.push({
        residual: true,
        edge: 'Heroku CLI and API tokens',
        why: `Heroku says ${account} signs in through SSO; tokens from their last login stay valid until they expire, at the latest ${by}`,
        action: `nothing to do unless the risk cannot wait until ${by}; then ask Heroku support to revoke them`,
      });
    } else {
      steps.push({
        residual: true,
        edge: 'Heroku API keys',
        why:
          member?.federated === false
            ? `Heroku says ${account} is not under SSO: their Dashboard API key stays valid until their password changes, CLI tokens for a year, and authorizations they created may never expire; Heroku has no endpoint for idsync to revoke them`
            : `idsync has not read from Heroku whether ${account} is under SSO (no drift scan since they were added): treat their API key and authorizations as long-lived; Heroku has no endpoint for idsync to revoke them`,
        action: disable,
      });
    }
    steps.push({
      residual: true,
      edge: 'OAuth grants to third-party apps',
      why: `apps ${account} authorised with their Heroku account keep refresh tokens; only ${account} (or Heroku support) can revoke them`,
      action: `ask Heroku support to revoke ${account}'s OAuth grants if the account is not disabled`,
    });
    const scanned = await this.mirror.lastScanAt();
    steps.push({
      residual: true,
      edge: 'memberships added on Heroku by hand',
      why: `idsync removed every membership it knew of from its last full read of Heroku (${scanned ? scanned.toISOString() : 'never: run `idsync drift scan`'}); one added on Heroku's dashboard since then is not known yet`,
      action:
        'the next drift scan reports any such membership as critical excess access; run `idsync drift scan` now to check at once',
    });
    steps.push({
      residual: true,
      edge: 'apps outside the Enterprise Account',
      why: `${account} may still collaborate on personal apps or apps of teams outside the Enterprise Account, which idsync cannot see`,
      action: `check with \`heroku apps --all\` as that user's manager, or ask Heroku support for ${account}'s collaborations`,
    });
    return steps;
  }
}

function enterpriseFacts(body: HerokuEnterpriseMember | undefined): RecordedFacts {
  if (!body?.user) return {};
  return {
    remoteId: body.user.id,
    federated: body.identity_provider === undefined ? null : body.identity_provider !== null,
  };
}

function describeContainer(container: Container): string {
  return container.kind === 'enterprise'
    ? 'the Enterprise Account'
    : container.kind === 'team'
      ? `team ${container.name}`
      : `app ${container.name}`;
}

/** Runs one read; a Heroku refusal becomes a value (credential problems and outages still throw). */
async function isolated<T>(read: () => Promise<T>): Promise<{ value: T } | { failure: HerokuError }> {
  try {
    return { value: await read() };
  } catch (error) {
    if (error instanceof HerokuError && error.failure !== 'credentials' && error.failure !== 'unavailable')
      return { failure: error };
    throw error;
  }
}

function unreadableReason(name: string, error: HerokuError): string {
  const hint =
    error.failure === 'forbidden'
      ? `: make idsync's service account an admin of ${name}`
      : error.failure === 'not-found'
        ? ': deleted or renamed while the scan ran'
        : '';
  return `${error.message}${hint}`;
}
