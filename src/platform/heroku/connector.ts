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
import type { PlatformMirror } from '../mirror.js';
import { type HerokuClient, HerokuError } from './client.js';
import type { HerokuSettings } from './settings.js';

/** SSO users' CLI tokens expire this long after their last login (Heroku's documented behaviour). */
const SSO_TOKEN_LIFETIME_MS = 8 * 3600_000;

interface HerokuEnterpriseMember {
  user: { email: string };
  permissions: { name: string }[];
  identity_provider: { id?: string } | null;
}
interface HerokuTeamMember {
  email: string;
  role: string | null;
}
interface HerokuCollaborator {
  user: { email: string };
  permissions: { name: string }[];
}

/**
 * Heroku Teams and Enterprise Accounts through the Platform API. Reads of one user come from the
 * mirror (Heroku cannot list one user's teams without listing every team); every change goes to Heroku
 * first and is written to the mirror once Heroku accepted it; drift scans read Heroku itself and
 * refresh the mirror.
 */
export class HerokuConnector implements PlatformConnector {
  readonly name = 'heroku';

  constructor(
    private readonly client: HerokuClient,
    private readonly mirror: PlatformMirror,
    private readonly settings: HerokuSettings,
    /** Called when Heroku refuses the token: the tenant is stopped until someone fixes it. */
    private readonly onUnauthorized: (reason: string) => Promise<void>,
  ) {}

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
    try {
      await this.send(operation);
    } catch (error) {
      if (!(error instanceof HerokuError)) throw error;
      switch (error.failure) {
        case 'not-found':
          if (isRemoval(operation)) {
            await this.mirror.record(operation);
            return { status: 'already-done' };
          }
          return { status: 'blocked', reason: `Heroku: ${error.message}` };
        case 'refused':
          return { status: 'blocked', reason: `Heroku refused: ${error.message}` };
        case 'unauthorized':
          await this.onUnauthorized(error.message);
          throw error;
        case 'unavailable':
          throw error;
      }
    }
    await this.mirror.record(operation, this.settings.federated);
    return { status: 'applied' };
  }

  private async send(operation: PlatformOperation): Promise<void> {
    const enterprise = `/enterprise-accounts/${encodeURIComponent(this.settings.enterpriseAccount)}/members`;
    const account = encodeURIComponent(operation.account);
    switch (operation.kind) {
      case 'grant-enterprise':
        return this.createOrUpdate(
          () =>
            this.client.request('POST', enterprise, {
              user: operation.account,
              permissions: operation.permissions,
              federated: this.settings.federated,
            }),
          () =>
            this.client.request('PATCH', `${enterprise}/${account}`, { permissions: operation.permissions }),
        );
      case 'change-enterprise':
        await this.client.request('PATCH', `${enterprise}/${account}`, { permissions: operation.to });
        return;
      case 'revoke-enterprise':
        await this.client.request('DELETE', `${enterprise}/${account}`);
        return;
      case 'add-team-member':
      case 'change-team-role':
      case 'promote-fallback-admin': {
        const role = targetRole(operation);
        // PUT creates or updates: the one idempotent way to set a member's role.
        await this.client.request('PUT', `/teams/${encodeURIComponent(operation.team)}/members`, {
          email: operation.account,
          role,
          federated: this.settings.federated,
        });
        return;
      }
      case 'remove-team-member':
        await this.client.request(
          'DELETE',
          `/teams/${encodeURIComponent(operation.team)}/members/${account}`,
        );
        return;
      case 'grant-app-access': {
        const collaborators = `/teams/apps/${encodeURIComponent(operation.app)}/collaborators`;
        return this.createOrUpdate(
          () =>
            this.client.request('POST', collaborators, {
              user: operation.account,
              permissions: operation.permissions,
              silent: true,
            }),
          () =>
            this.client.request('PATCH', `${collaborators}/${account}`, {
              permissions: operation.permissions,
            }),
        );
      }
      case 'change-app-access':
        await this.client.request(
          'PATCH',
          `/teams/apps/${encodeURIComponent(operation.app)}/collaborators/${account}`,
          { permissions: operation.to },
        );
        return;
      case 'revoke-app-access':
        await this.client.request(
          'DELETE',
          `/teams/apps/${encodeURIComponent(operation.app)}/collaborators/${account}`,
        );
        return;
    }
  }

  /**
   * A create that Heroku refuses because the member already exists (the mirror was behind) becomes an
   * update, so granting is idempotent.
   */
  private async createOrUpdate(
    create: () => Promise<unknown>,
    update: () => Promise<unknown>,
  ): Promise<void> {
    try {
      await create();
    } catch (error) {
      if (error instanceof HerokuError && error.failure === 'refused' && error.status !== 403) {
        await update();
        return;
      }
      throw error;
    }
  }

  /**
   * Reads Heroku: the Enterprise Account's members, its teams (each team's members and apps once), and
   * each app's collaborators, refreshing the mirror slice by slice as it goes.
   */
  async *scan(): AsyncGenerator<PlatformSlice> {
    try {
      const account = encodeURIComponent(this.settings.enterpriseAccount);
      const members: EnterpriseMember[] = (
        await this.client.listAll<HerokuEnterpriseMember>(`/enterprise-accounts/${account}/members`)
      ).map((m) => ({
        account: m.user.email.toLowerCase(),
        permissions: canonical(
          m.permissions.map((p) => p.name as EnterprisePermission),
          ENTERPRISE_PERMISSIONS,
        ),
        federated: m.identity_provider !== null && m.identity_provider !== undefined,
      }));
      const enterpriseSlice: PlatformSlice = { kind: 'enterprise', members };
      await this.mirror.replace(enterpriseSlice);
      yield enterpriseSlice;

      const teams = await this.client.listAll<{ name: string }>(`/enterprise-accounts/${account}/teams`);
      const appNames: string[] = [];
      const concurrency = this.settings.concurrency;
      // Fetched a chunk at a time with several requests in flight, yielded in order, each read once.
      for (let i = 0; i < teams.length; i += concurrency) {
        const chunk = await pMap(
          teams.slice(i, i + concurrency),
          async (team) => {
            const path = `/teams/${encodeURIComponent(team.name)}`;
            const [members, apps] = await Promise.all([
              this.client.listAll<HerokuTeamMember>(`${path}/members`),
              this.client.listAll<{ name: string }>(`${path}/apps`),
            ]);
            return { team: team.name, members, apps };
          },
          { concurrency },
        );
        for (const { team, members, apps } of chunk) {
          const slice: PlatformSlice = {
            kind: 'team',
            team,
            members: members
              .filter((m): m is HerokuTeamMember & { role: TeamRole } =>
                TEAM_ROLES.includes(m.role as TeamRole),
              )
              .map((m) => [m.email.toLowerCase(), m.role]),
          };
          await this.mirror.replace(slice);
          yield slice;
          appNames.push(...apps.map((a) => a.name));
        }
      }
      await this.mirror.forgetAllBut(
        'team',
        teams.map((t) => t.name),
      );

      for (let i = 0; i < appNames.length; i += concurrency) {
        const chunk = await pMap(
          appNames.slice(i, i + concurrency),
          async (app) => ({
            app,
            collaborators: await this.client.listAll<HerokuCollaborator>(
              `/teams/apps/${encodeURIComponent(app)}/collaborators`,
            ),
          }),
          { concurrency },
        );
        for (const { app, collaborators } of chunk) {
          const slice: PlatformSlice = {
            kind: 'app',
            app,
            collaborators: collaborators.map((c) => [
              c.user.email.toLowerCase(),
              canonical(
                c.permissions.map((p) => p.name as AppPermission),
                APP_PERMISSIONS,
              ),
            ]),
          };
          await this.mirror.replace(slice);
          yield slice;
        }
      }
      await this.mirror.forgetAllBut('app', appNames);
    } catch (error) {
      if (error instanceof HerokuError && error.failure === 'unauthorized')
        await this.onUnauthorized(error.message);
      throw error;
    }
  }

  /**
   * Heroku offers no endpoint to revoke another user's API tokens. What is left depends on whether the
   * user signs in through SSO (CLI tokens expire 8 hours after login, and no login is possible once the
   * IdP has deactivated them) or not (API keys never expire).
   */
  async residualRisk(account: string, idpEventAt: Date): Promise<HumanStep[]> {
    const member = await this.mirror.enterpriseMember(account);
    const steps: HumanStep[] = [];
    if (member?.federated) {
      const by = new Date(idpEventAt.getTime() + SSO_TOKEN_LIFETIME_MS).toISOString();
      steps.push({
        residual: true,
        edge: 'Heroku CLI and API tokens',
        why: `${account} signs in through SSO; tokens from their last login stay valid until they expire, at the latest ${by}`,
        action: `nothing to do unless the risk cannot wait until ${by}; then ask Heroku support to revoke them`,
      });
    } else {
      steps.push({
        residual: true,
        edge: 'Heroku API keys',
        why: `${account} is not under SSO (or Heroku did not say): their API keys never expire and Heroku has no endpoint for idsync to revoke them`,
        action: `have the account's owner regenerate its API key (heroku authorizations:revoke), or ask Heroku support to disable the account ${account}`,
      });
    }
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
