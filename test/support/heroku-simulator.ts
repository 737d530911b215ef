import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import express, { type Request, type Response } from 'express';
import type { Database } from '../../src/db/client.js';
import { setPlatform } from '../../src/platform/settings.js';
import { SecretBox } from '../../src/security/secret-box.js';
import { checkRequest, exampleOf, parseRange } from './heroku-schema.js';

/*
 * An in-memory Heroku Platform API for the resources idsync manages. It behaves like the real one where
 * a source outside this project says so; each behaviour names its source (REAL-API-NOTES.md in
 * ../shared/reference/heroku-platform-api has the details and the confidence of each). Where no source
 * settles a detail the comment says "unverified" and the simulator picks the plausible answer.
 * Every request is checked against the public schema (method, href, body and Range); violations are
 * collected for the tests to assert on. Response bodies start from the schema's examples.
 */

export type TeamRole = 'admin' | 'member' | 'viewer';
/** The state of the token's own account (reference error table: 402 delinquent, 403 suspended). */
export type AccountState = 'ok' | 'suspended' | 'delinquent' | 'forbidden';

interface HerokuUser {
  id: string;
  email: string;
  /** Under the Enterprise Account's SSO: `identity_provider` is set on its member objects. */
  sso: boolean;
}
interface EnterpriseMember {
  /** The user's id: the Enterprise Account member identity is the user's email or id (schema). */
  id: string;
  user: HerokuUser;
  permissions: string[];
}
interface TeamMember {
  /** The team-member id (schema team-member identity: email or this id). */
  id: string;
  user: HerokuUser;
  role: TeamRole;
}
interface Collaborator {
  id: string;
  user: HerokuUser;
  permissions: string[];
}
interface Team {
  id: string;
  name: string;
  /** Keyed by user id. */
  members: Map<string, TeamMember>;
}
interface App {
  id: string;
  name: string;
  teamId: string;
  collaborators: Map<string, Collaborator>;
}
interface Release {
  id: string;
  version: number;
  user: { id: string; email: string };
  description: string;
  createdAt: Date;
}
export interface AuditEvent {
  id: string;
  type: string;
  action: string;
  actor: { id: string; email: string };
  app: { id: string; name: string } | null;
  team: { id: string; name: string } | null;
  data: Record<string, unknown>;
  createdAt: Date;
}

export interface SimulatorOptions {
  /** Bucket size per account (Heroku: about 4,500). */
  capacity?: number;
  /** Refill per minute (Heroku: about 75). */
  refillPerMinute?: number;
  latencyMs?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  status: number;
  range: string | undefined;
  at: number;
}

/** Every permission of a team app: what a team admin holds implicitly (Dev Center org-users-access). */
const ALL_APP_PERMISSIONS = ['view', 'deploy', 'operate', 'manage'];

interface ListSpec<T> {
  /**
   * Sort fields this list accepts, the first being its default. Heroku answers 416 for any other and
   * lists the accepted ones in `Accept-Ranges` (Platform API reference "Ranges"; heroku/cli #1674).
   */
  fields: readonly string[];
  sortValue: (item: T, field: string) => string | number;
}

export class HerokuSimulator {
  readonly token = `sim-${randomUUID()}`;
  /** The token's own account: idsync's service account. Not under SSO (REAL-API-NOTES D6). */
  readonly account: HerokuUser = { id: randomUUID(), email: 'admin@example.com', sso: false };
  readonly enterprise = { id: randomUUID(), name: 'acme' };
  /** Heroku accounts by email. */
  readonly users = new Map<string, HerokuUser>();
  /** Emails with no Heroku account yet: created by their first SSO login (help.heroku.com/DB6SL67N). */
  readonly withoutAccount = new Set<string>();
  /** Whether an account created on first reference signs in through SSO. */
  newAccountsSso = true;
  readonly members = new Map<string, EnterpriseMember>();
  readonly teams = new Map<string, Team>();
  readonly apps = new Map<string, App>();
  readonly releases = new Map<string, Release[]>();
  readonly events: AuditEvent[] = [];
  /** The token's role in each team (team id → role, null: not a member); admin by default. */
  readonly tokenRoles = new Map<string, TeamRole | null>();
  /** Apps whose writes need a second factor (403 two_factor; heroku-cli-command api-client twoFactorRetry). */
  readonly twoFactorApps = new Set<string>();
  accountState: AccountState = 'ok';
  /**
   * How long a deleted membership still shows in lists: Heroku is eventually consistent after a DELETE
   * (terraform-provider-heroku polls up to 10 s "to avoid immediate-recreate race").
   */
  deleteLagMs = 0;
  /** Sent on every response; Heroku's throttling client scales its pacing by it (zombocom/rate_throttle_client). */
  rateLimitMultiplier: number | undefined;
  readonly requests: RecordedRequest[] = [];
  readonly violations: string[] = [];
  latencyMs: number;
  /** Each request fails with this status while > 0 (decremented per request). */
  failNext = 0;
  failStatus = 503;
  /** Probability that a request fails with 503 (a flaky API). */
  faultRate = 0;
  private ghosts: {
    container: string;
    entry: TeamMember | Collaborator | EnterpriseMember;
    until: number;
  }[] = [];
  private capacity: number;
  private refillPerMs: number;
  private bucket: number;
  private bucketAt = Date.now();
  private server: Server | undefined;
  url = '';

  constructor(options: SimulatorOptions = {}) {
    this.capacity = options.capacity ?? 4_500;
    this.refillPerMs = (options.refillPerMinute ?? 75) / 60_000;
    this.bucket = this.capacity;
    this.latencyMs = options.latencyMs ?? 0;
    this.users.set(this.account.email, this.account);
  }

  /**
   * Points a tenant at this simulator, the token sealed with `secretKey`; `budget` sets the tenant's
   * rate-budget settings (its key, refill and reserve).
   */
  async connect(
    db: Database,
    tenantId: string,
    secretKey: string,
    budget: { budgetKey: string; refillPerMinute: number; reserve: number },
  ): Promise<void> {
    await setPlatform(
      db,
      tenantId,
      { connector: 'heroku', enterpriseAccount: this.enterprise.name, apiUrl: this.url, token: this.token },
      SecretBox.fromConfig({ secretKey, dataDir: '/nonexistent' }),
    );
    await db.execute(
      sql`UPDATE tenants SET connector_settings = connector_settings || ${JSON.stringify(budget)}::jsonb WHERE id = ${tenantId}`,
    );
  }

  /** Empties the bucket: every request answers 429 until it refills. */
  drainBudget(): void {
    this.bucket = 0;
    this.bucketAt = Date.now();
  }

  setBudget(options: { capacity?: number; remaining?: number; refillPerMinute?: number }): void {
    if (options.capacity !== undefined) this.capacity = options.capacity;
    if (options.refillPerMinute !== undefined) this.refillPerMs = options.refillPerMinute / 60_000;
    if (options.remaining !== undefined) this.bucket = options.remaining;
    this.bucketAt = Date.now();
  }

  /** The Heroku account of `email`, created on first reference unless it has none yet. */
  user(email: string, sso = this.newAccountsSso): HerokuUser | undefined {
    const key = email.toLowerCase();
    const found = this.users.get(key);
    if (found) return found;
    if (this.withoutAccount.has(key)) return undefined;
    const created = { id: randomUUID(), email: key, sso };
    this.users.set(key, created);
    return created;
  }

  /** A first login through the IdP creates the Heroku account (SSO JIT, help.heroku.com/DB6SL67N). */
  ssoLogin(email: string): void {
    this.withoutAccount.delete(email.toLowerCase());
    this.user(email, true)!.sso = true;
  }

  addEnterpriseMember(email: string, permissions: string[] = ['view'], sso = true): void {
    const user = this.user(email, sso)!;
    this.members.set(user.id, { id: user.id, user, permissions: withView(permissions) });
  }

  /** A team, with the token's account as one of its admins (the documented setup, REAL-API-NOTES D6). */
  addTeam(name: string, members: [email: string, role: TeamRole][] = []): Team {
    const team: Team = { id: randomUUID(), name, members: new Map() };
    this.teams.set(team.id, team);
    this.setTokenRole(name, 'admin');
    for (const [email, role] of members) this.addTeamMember(name, email, role);
    return team;
  }

  addTeamMember(teamName: string, email: string, role: TeamRole): void {
    const team = this.team(teamName)!;
    const user = this.user(email)!;
    team.members.set(user.id, { id: randomUUID(), user, role });
  }

  /** The token's own role in a team (Heroku's `team.role`); not an admin: member writes answer 403. */
  setTokenRole(teamName: string, role: TeamRole | null): void {
    const team = this.team(teamName)!;
    this.tokenRoles.set(team.id, role);
    if (role === null) team.members.delete(this.account.id);
    else team.members.set(this.account.id, { id: randomUUID(), user: this.account, role });
  }

  addApp(name: string, teamName: string, collaborators: [email: string, permissions: string[]][] = []): App {
    const app: App = { id: randomUUID(), name, teamId: this.team(teamName)!.id, collaborators: new Map() };
    for (const [email, permissions] of collaborators) {
      const user = this.user(email)!;
      app.collaborators.set(user.id, { id: randomUUID(), user, permissions: withView(permissions) });
    }
    this.apps.set(app.id, app);
    return app;
  }

  addCollaborator(appName: string, email: string, permissions: string[]): void {
    const app = this.app(appName)!;
    const user = this.user(email)!;
    app.collaborators.set(user.id, { id: randomUUID(), user, permissions: withView(permissions) });
  }

  team(name: string): Team | undefined {
    return this.teams.get(name) ?? [...this.teams.values()].find((t) => t.name === name);
  }

  app(name: string): App | undefined {
    return this.apps.get(name) ?? [...this.apps.values()].find((a) => a.name === name);
  }

  /** Renames keep the id; the old name answers 404 from then on (schema: PATCH /teams/{team} `name`). */
  renameTeam(from: string, to: string): void {
    this.team(from)!.name = to;
  }

  /** Schema: PATCH /apps/{app} `name`. */
  renameApp(from: string, to: string): void {
    this.app(from)!.name = to;
  }

  /** Schema: PATCH /enterprise-accounts/{ea} `name`; Dev Center `heroku enterprises:rename`. */
  renameEnterprise(to: string): void {
    this.enterprise.name = to;
  }

  /** A release of `app` by `email` (schema release: `user` is who created it). */
  addRelease(appName: string, email: string, description: string, createdAt = new Date()): Release {
    const app = this.app(appName)!;
    const list = this.releases.get(app.id) ?? [];
    const user = this.user(email)!;
    const release = {
      id: randomUUID(),
      version: list.length + 1,
      user: { id: user.id, email: user.email },
      description,
      createdAt,
    };
    list.push(release);
    this.releases.set(app.id, list);
    return release;
  }

  /** An audit-trail event (e.g. a membership added on the dashboard by another admin). */
  addEvent(
    event: Omit<AuditEvent, 'id' | 'createdAt' | 'data' | 'app' | 'team'> & Partial<AuditEvent>,
  ): AuditEvent {
    const full: AuditEvent = {
      id: randomUUID(),
      app: null,
      team: null,
      data: {},
      createdAt: new Date(),
      ...event,
    };
    this.events.push(full);
    return full;
  }

  /**
   * What a person does on Heroku's dashboard, outside idsync: the change happens and the audit trail
   * records it with that person as the actor (as the API routes record idsync's own changes).
   */
  readonly dashboard = {
    addTeamMember: (teamName: string, email: string, role: TeamRole, actor = 'someone@example.com') => {
      const existed = this.team(teamName)!.members.has(this.user(email)!.id);
      this.addTeamMember(teamName, email, role);
      const team = this.team(teamName)!;
      this.addEvent({
        type: 'team_membership',
        action: existed ? 'update' : 'create',
        actor: this.actor(actor),
        team: { id: team.id, name: team.name },
        data: subjectData(this.user(email)!, { role }),
      });
    },
    addCollaborator: (
      appName: string,
      email: string,
      permissions: string[],
      actor = 'someone@example.com',
    ) => {
      this.addCollaborator(appName, email, permissions);
      const app = this.app(appName)!;
      this.addEvent({
        type: 'collaborator',
        action: 'create',
        actor: this.actor(actor),
        app: { id: app.id, name: app.name },
        data: subjectData(this.user(email)!),
      });
    },
    createTeam: (name: string, actor = 'someone@example.com') => {
      const team = this.addTeam(name);
      this.addEvent({
        type: 'team',
        action: 'create',
        actor: this.actor(actor),
        team: { id: team.id, name: team.name },
        data: { id: team.id, name: team.name },
      });
      return team;
    },
    /** A deploy: a release by `email` and its `code_release.create` event. */
    deploy: (appName: string, email: string, at = new Date()) => {
      this.addRelease(appName, email, 'Deploy', at);
      const app = this.app(appName)!;
      this.addEvent({
        type: 'code_release',
        action: 'create',
        actor: this.actor(email),
        app: { id: app.id, name: app.name },
        createdAt: at,
      });
    },
  };

  private actor(email: string): { id: string; email: string } {
    const user = this.user(email)!;
    return { id: user.id, email: user.email };
  }

  /** Every grant `email` holds, as readable strings (empty when fully offboarded). */
  grantsOf(email: string): string[] {
    const user = this.users.get(email.toLowerCase());
    if (!user) return [];
    const grants: string[] = [];
    if (this.members.has(user.id)) grants.push('enterprise');
    for (const team of this.teams.values()) if (team.members.has(user.id)) grants.push(`team ${team.name}`);
    for (const app of this.apps.values()) if (app.collaborators.has(user.id)) grants.push(`app ${app.name}`);
    return grants;
  }

  async start(): Promise<string> {
    const app = express();
    app.use(express.json({ type: () => true }));
    app.use((req, res, next) => void this.gate(req, res, next));
    this.routes(app);
    app.use((req: Request, res: Response) => {
      this.fail(res, 404, 'not_found', `no route ${req.method} ${req.path}`);
    });
    await new Promise<void>((resolve) => {
      this.server = app.listen(0, '127.0.0.1', () => resolve());
    });
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  private remaining(): number {
    const now = Date.now();
    this.bucket = Math.min(this.capacity, this.bucket + (now - this.bucketAt) * this.refillPerMs);
    this.bucketAt = now;
    return Math.floor(this.bucket);
  }

  /** Latency, schema check, authentication, faults and the rate limit, in the order Heroku applies them. */
  private async gate(req: Request, res: Response, next: () => void): Promise<void> {
    const range = req.get('range');
    const record = () =>
      this.requests.push({
        method: req.method,
        path: req.path,
        status: res.statusCode,
        range,
        at: Date.now(),
      });
    res.on('finish', record);
    if (this.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    const accept = req.get('accept');
    // The audit trail is served under a variant media type (heroku-enterprise audits commands).
    if (
      accept !== 'application/vnd.heroku+json; version=3' &&
      accept !== 'application/vnd.heroku+json; version=3.audit-trail'
    ) {
      this.violations.push(`${req.method} ${req.path}: Accept header ${accept}`);
    }
    const body = req.method === 'GET' || req.method === 'DELETE' ? undefined : req.body;
    const check = checkRequest(req.method, req.path, body, range);
    this.violations.push(...check.problems.map((p) => `${req.method} ${req.path}: ${p}`));
    if (req.get('authorization') !== `Bearer ${this.token}`) {
      this.fail(res, 401, 'unauthorized', 'Invalid credentials provided.');
      return;
    }
    // Reference error table: 402 delinquent, 403 suspended, 403 forbidden (message wording unverified).
    if (this.accountState === 'delinquent') {
      this.fail(res, 402, 'delinquent', 'This account is delinquent.');
      return;
    }
    if (this.accountState === 'suspended') {
      this.fail(res, 403, 'suspended', 'This account has been suspended.');
      return;
    }
    if (this.accountState === 'forbidden') {
      this.fail(res, 403, 'forbidden', 'You do not have access to this resource.');
      return;
    }
    if (this.failNext > 0) {
      this.failNext -= 1;
      this.fail(res, this.failStatus, 'internal_server_error', 'Internal server error.');
      return;
    }
    if (this.faultRate > 0 && Math.random() < this.faultRate) {
      this.fail(res, 503, 'unavailable', 'Service temporarily unavailable.');
      return;
    }
    const free = req.path === '/account/rate-limits';
    const left = this.remaining();
    if (!free && left < 1) {
      res.set('RateLimit-Remaining', '0');
      this.fail(res, 429, 'rate_limit', 'Your account reached the API rate limit.');
      return;
    }
    if (!free) this.bucket -= 1;
    res.set('RateLimit-Remaining', String(Math.floor(this.bucket)));
    if (this.rateLimitMultiplier !== undefined)
      res.set('RateLimit-Multiplier', String(this.rateLimitMultiplier));
    // A body the link's schema refuses is `422 invalid_params` (reference error table).
    if (check.bodyInvalid) {
      this.fail(res, 422, 'invalid_params', check.problems.join('; '));
      return;
    }
    next();
  }

  private fail(res: Response, status: number, id: string, message: string): void {
    res.status(status).type('application/json').send(JSON.stringify({ id, message }));
  }

  /**
   * Range paging as the reference documents it: `<field> ..; max=N` first, then the `Next-Range`
   * answered with 206 (`<field> ]<last>..; max=N`), default page 200, maximum 1,000; a sort order goes
   * after max with a comma (`max=10, order=desc`), the semicolon form is `400 bad_request`
   * (martyzz1/heroku3.py #12); a field the list does not accept is `416 requested_range_not_satisfiable`
   * (heroku/cli #1674); every list answers `Accept-Ranges`.
   */
  private page<T>(req: Request, res: Response, items: T[], spec: ListSpec<T>, render: (item: T) => unknown) {
    res.set('Accept-Ranges', spec.fields.join(', '));
    const header = req.get('range');
    const parsed = header === undefined ? { field: spec.fields[0]! } : parseRange(header);
    if (parsed === undefined) {
      return this.fail(
        res,
        400,
        'bad_request',
        'Invalid `Range` header. Please use format like `id ..; max=10, order=desc`.',
      );
    }
    const { field } = parsed;
    if (!spec.fields.includes(field)) {
      return this.fail(
        res,
        416,
        'requested_range_not_satisfiable',
        'Requested range order is not allowed, please try `id` or another specified in `Accept-Ranges`.',
      );
    }
    const max = Math.min(parsed.max ?? 200, 1000);
    const desc = parsed.order === 'desc';
    const compare = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0);
    const sorted = [...items].sort(
      (a, b) => compare(spec.sortValue(a, field), spec.sortValue(b, field)) * (desc ? -1 : 1),
    );
    const after = parsed.after;
    const rest =
      after === undefined
        ? sorted
        : sorted.filter((i) => {
            const value = String(spec.sortValue(i, field));
            const c =
              typeof spec.sortValue(i, field) === 'number'
                ? Number(value) - Number(after)
                : compare(value, after);
            return desc ? c < 0 : c > 0;
          });
    const page = rest.slice(0, max);
    if (rest.length > max) {
      const last = spec.sortValue(page[page.length - 1]!, field);
      res.status(206).set('Next-Range', `${field} ]${last}..; max=${max}${desc ? ', order=desc' : ''};`);
    } else {
      res.status(200);
    }
    res.type('application/json').send(JSON.stringify(page.map(render)));
  }

  /** Entries deleted less than `deleteLagMs` ago, still listed (read-after-delete lag). */
  private withGhosts<T extends { user: HerokuUser }>(container: string, live: Map<string, T>): T[] {
    const now = Date.now();
    this.ghosts = this.ghosts.filter((g) => g.until > now);
    const ghosts = this.ghosts
      .filter((g) => g.container === container && !live.has(g.entry.user.id))
      .map((g) => g.entry as unknown as T);
    return [...live.values(), ...ghosts];
  }

  private deleted(container: string, entry: TeamMember | Collaborator | EnterpriseMember): void {
    if (this.deleteLagMs > 0) this.ghosts.push({ container, entry, until: Date.now() + this.deleteLagMs });
  }

  private event(type: string, action: string, extra: Partial<AuditEvent> = {}): void {
    this.addEvent({ type, action, actor: { id: this.account.id, email: this.account.email }, ...extra });
  }

  private routes(app: express.Express): void {
    // Every container is addressed by id or by its current name (schema identities); "id should be
    // preferred to avoid ambiguity" (reference "Data Integrity"). A missing one is the generic
    // `404 not_found` (reference error table).
    const ea = (req: Request, res: Response) => {
      const ok = req.params.ea === this.enterprise.id || req.params.ea === this.enterprise.name;
      if (!ok) this.fail(res, 404, 'not_found', 'Couldn’t find that enterprise account.');
      return ok;
    };
    const team = (req: Request, res: Response) => {
      const found = this.team(String(req.params.team));
      if (!found) this.fail(res, 404, 'not_found', 'Couldn’t find that team.');
      return found;
    };
    const teamApp = (req: Request, res: Response) => {
      const found = this.app(String(req.params.app));
      if (!found) this.fail(res, 404, 'not_found', 'Couldn’t find that app.');
      return found;
    };
    /** Managing a team's members is admin-only (Dev Center enterprise-team-permissions). */
    const teamAdmin = (found: Team, res: Response) => {
      const ok = this.tokenRoles.get(found.id) === 'admin';
      if (!ok) this.fail(res, 403, 'forbidden', `You do not have access to the team ${found.name}.`);
      return ok;
    };
    const twoFactor = (found: App, res: Response) => {
      if (!this.twoFactorApps.has(found.name)) return false;
      this.fail(
        res,
        403,
        'two_factor',
        'A second authentication factor or pre-authorization is required for this request.',
      );
      return true;
    };
    /** "Couldn't find that user" is the text Heroku's clients match (terraform; status unverified). */
    const userFor = (email: unknown, res: Response) => {
      const found = this.user(String(email));
      if (!found) this.fail(res, 404, 'not_found', 'Couldn’t find that user.');
      return found;
    };
    const byIdentity = <T extends { id: string; user: HerokuUser }>(map: Map<string, T>, identity: string) =>
      [...map.values()].find(
        (m) => m.user.email === identity.toLowerCase() || m.id === identity || m.user.id === identity,
      );
    const identityProvider = (user: HerokuUser) =>
      user.sso ? { id: this.enterprise.id, name: this.enterprise.name, redacted: false, owner: null } : null;
    const renderEnterpriseMember = (m: EnterpriseMember) =>
      exampleOf('enterprise-account-member', {
        id: m.user.id,
        enterprise_account: { id: this.enterprise.id, name: this.enterprise.name },
        user: { email: m.user.email, id: m.user.id },
        permissions: m.permissions.map((name) => ({ name, description: name })),
        identity_provider: identityProvider(m.user),
      });
    const renderTeamMember = (m: TeamMember) =>
      exampleOf('team-member', {
        id: m.id,
        email: m.user.email,
        role: m.role,
        federated: m.user.sso,
        identity_provider: identityProvider(m.user),
        user: { email: m.user.email, id: m.user.id, name: null },
      });
    const renderCollaborator = (a: App, c: Collaborator, role: string | null) =>
      exampleOf('team-app-collaborator', {
        id: c.id,
        app: { id: a.id, name: a.name },
        user: { email: c.user.email, id: c.user.id, federated: c.user.sso },
        permissions: c.permissions.map((name) => ({ name, description: name })),
        role,
      });
    const renderTeam = (t: Team) =>
      exampleOf('team', {
        id: t.id,
        name: t.name,
        role: this.tokenRoles.get(t.id) ?? null,
        type: 'enterprise',
        enterprise_account: { id: this.enterprise.id, name: this.enterprise.name },
      });
    const renderApp = (a: App) =>
      exampleOf('team-app', {
        id: a.id,
        name: a.name,
        team: { id: a.teamId, name: this.teams.get(a.teamId)!.name },
      });
    const byId: ListSpec<{ id: string }> = { fields: ['id'], sortValue: (item) => item.id };

    app.get('/account', (_req, res) => {
      res.json(
        exampleOf('account', {
          id: this.account.id,
          email: this.account.email,
          federated: this.account.sso,
          identity_provider: this.account.sso ? { id: this.enterprise.id, name: this.enterprise.name } : null,
        }),
      );
    });
    app.get('/account/rate-limits', (_req, res) => {
      res.json({ remaining: this.remaining() });
    });
    app.get('/enterprise-accounts/:ea', (req, res) => {
      if (ea(req, res))
        res.json(exampleOf('enterprise-account', { id: this.enterprise.id, name: this.enterprise.name }));
    });
    // Accepted sort fields unverified (REAL-API-NOTES D12): the reference's default, `id`.
    app.get('/enterprise-accounts/:ea/members', (req, res) => {
      if (!ea(req, res)) return;
      const members = this.withGhosts(`ea`, this.members);
      this.page(req, res, members, { fields: ['id'], sortValue: (m) => m.user.id }, renderEnterpriseMember);
    });
    app.post('/enterprise-accounts/:ea/members', (req, res) => {
      if (!ea(req, res)) return;
      const user = userFor(req.body.user, res);
      if (!user) return;
      // Existing-member refusal: status and wording unverified (REAL-API-NOTES §5 check 4).
      if (this.members.has(user.id))
        return this.fail(
          res,
          422,
          'invalid_params',
          `${user.email} is already a member of this enterprise account.`,
        );
      // `federated` means "created as part of SSO JIT" (schema); it does not put an existing
      // password user under SSO (REAL-API-NOTES D3).
      const member = { id: user.id, user, permissions: withView(req.body.permissions) };
      this.members.set(user.id, member);
      this.event('enterprise_account_membership', 'create', { data: subjectData(user) });
      res.status(201).json(renderEnterpriseMember(member));
    });
    app.patch('/enterprise-accounts/:ea/members/:member', (req, res) => {
      if (!ea(req, res)) return;
      const member = byIdentity(this.members, String(req.params.member));
      if (!member) return this.fail(res, 404, 'not_found', 'Couldn’t find that member.');
      // "All members of an Enterprise Account have the View permission" (Dev Center enterprise-account-access).
      member.permissions = withView(req.body.permissions);
      this.event('enterprise_account_membership', 'update', { data: subjectData(member.user) });
      res.json(renderEnterpriseMember(member));
    });
    app.delete('/enterprise-accounts/:ea/members/:member', (req, res) => {
      if (!ea(req, res)) return;
      const member = byIdentity(this.members, String(req.params.member));
      if (!member) return this.fail(res, 404, 'not_found', 'Couldn’t find that member.');
      this.members.delete(member.user.id);
      this.deleted('ea', member);
      this.event('enterprise_account_membership', 'destroy', { data: subjectData(member.user) });
      res.json(renderEnterpriseMember(member));
    });
    app.get('/enterprise-accounts/:ea/teams', (req, res) => {
      if (ea(req, res)) this.page(req, res, [...this.teams.values()], byId, renderTeam);
    });
    // The audit trail: "all events for one day, defaulting to current day", filtered by the query
    // parameters order, actor, action, type and day (schema audit-trail-event List); no `ranges`.
    app.get('/enterprise-accounts/:ea/events', (req, res) => {
      if (!ea(req, res)) return;
      const day = typeof req.query.day === 'string' ? req.query.day : new Date().toISOString().slice(0, 10);
      if (!/^\d{4}-\d{2}-\d{2}$/.test(day))
        return this.fail(res, 422, 'invalid_params', 'day must be formatted as YYYY-MM-DD.');
      const q = (name: string) => (typeof req.query[name] === 'string' ? String(req.query[name]) : undefined);
      const events = this.events
        .filter((e) => e.createdAt.toISOString().slice(0, 10) === day)
        .filter((e) => !q('actor') || e.actor.email === q('actor'))
        .filter((e) => !q('action') || e.action === q('action'))
        .filter((e) => !q('type') || e.type === q('type'))
        .sort((a, b) => (a.createdAt.getTime() - b.createdAt.getTime()) * (q('order') === 'desc' ? -1 : 1));
      res.json(
        events.map((e) =>
          exampleOf('audit-trail-event', {
            id: e.id,
            type: e.type,
            action: e.action,
            actor: e.actor,
            app: e.app,
            team: e.team,
            owner: null,
            enterprise_account: { id: this.enterprise.id, name: this.enterprise.name },
            data: e.data,
            created_at: e.createdAt.toISOString(),
          }),
        ),
      );
    });
    app.get('/teams/:team', (req, res) => {
      const found = team(req, res);
      if (found) res.json(renderTeam(found));
    });
    // `ranges: ["email"]` in the schema's team-member List link; terraform reads it by email (#381).
    app.get('/teams/:team/members', (req, res) => {
      const found = team(req, res);
      if (!found) return;
      if (this.tokenRoles.get(found.id) == null)
        return this.fail(res, 403, 'forbidden', `You do not have access to the team ${found.name}.`);
      const members = this.withGhosts(`team:${found.id}`, found.members);
      this.page(req, res, members, { fields: ['email'], sortValue: (m) => m.user.email }, renderTeamMember);
    });
    app.put('/teams/:team/members', (req, res) => {
      const found = team(req, res);
      if (!found || !teamAdmin(found, res)) return;
      const user = userFor(req.body.email, res);
      if (!user) return;
      const current = found.members.get(user.id);
      // The last admin cannot be demoted (Dev Center org-users-access); status and text unverified.
      if (current?.role === 'admin' && req.body.role !== 'admin' && this.adminCount(found) === 1) {
        return this.fail(res, 422, 'invalid_params', 'A team must have at least one admin.');
      }
      const member = current ?? { id: randomUUID(), user, role: req.body.role };
      member.role = req.body.role;
      found.members.set(user.id, member);
      this.event('team_membership', current ? 'update' : 'create', {
        team: { id: found.id, name: found.name },
        data: subjectData(user, { role: member.role }),
      });
      res.status(current ? 200 : 201).json(renderTeamMember(member));
    });
    app.delete('/teams/:team/members/:member', (req, res) => {
      const found = team(req, res);
      if (!found || !teamAdmin(found, res)) return;
      const member = byIdentity(found.members, String(req.params.member));
      if (!member) return this.fail(res, 404, 'not_found', 'Couldn’t find that member.');
      if (member.role === 'admin' && this.adminCount(found) === 1) {
        return this.fail(res, 422, 'invalid_params', 'A team must have at least one admin.');
      }
      found.members.delete(member.user.id);
      this.deleted(`team:${found.id}`, member);
      this.event('team_membership', 'destroy', {
        team: { id: found.id, name: found.name },
        data: subjectData(member.user),
      });
      res.json(renderTeamMember(member));
    });
    app.get('/teams/:team/apps', (req, res) => {
      const found = team(req, res);
      if (!found) return;
      if (this.tokenRoles.get(found.id) == null)
        return this.fail(res, 403, 'forbidden', `You do not have access to the team ${found.name}.`);
      this.page(
        req,
        res,
        [...this.apps.values()].filter((a) => a.teamId === found.id),
        byId,
        renderApp,
      );
    });
    app.get('/teams/apps/:app', (req, res) => {
      const found = teamApp(req, res);
      if (found) res.json(renderApp(found));
    });
    /*
     * A team app's collaborator list also holds every team admin (role `admin`, full permissions: Dev
     * Center org-users-access) and the team's `<team>@herokumanager.com` owner account: the official CLI
     * (`heroku access`) and electron/sheriff filter both out. Sorted by email only: terraform #379/#380
     * moved to `email` after `id` was refused.
     */
    app.get('/teams/apps/:app/collaborators', (req, res) => {
      const found = teamApp(req, res);
      if (!found) return;
      const owningTeam = this.teams.get(found.teamId)!;
      if (this.tokenRoles.get(owningTeam.id) == null)
        return this.fail(res, 403, 'forbidden', `You do not have access to the app ${found.name}.`);
      const explicit = this.withGhosts(`app:${found.id}`, found.collaborators).map((c) => ({
        c,
        role: owningTeam.members.get(c.user.id)?.role ?? 'collaborator',
      }));
      const admins = [...owningTeam.members.values()]
        .filter((m) => m.role === 'admin' && !found.collaborators.has(m.user.id))
        .map((m) => ({ c: { id: m.id, user: m.user, permissions: ALL_APP_PERMISSIONS }, role: 'admin' }));
      const ownerUser = { id: owningTeam.id, email: `${owningTeam.name}@herokumanager.com`, sso: false };
      const owner = {
        c: { id: owningTeam.id, user: ownerUser, permissions: ALL_APP_PERMISSIONS },
        role: 'owner',
      };
      this.page(
        req,
        res,
        [...explicit, ...admins, owner],
        { fields: ['email'], sortValue: (e) => e.c.user.email },
        (e) => renderCollaborator(found, e.c, e.role),
      );
    });
    app.get('/teams/apps/:app/collaborators/:collaborator', (req, res) => {
      const found = teamApp(req, res);
      if (!found) return;
      const collaborator = byIdentity(found.collaborators, String(req.params.collaborator));
      if (!collaborator) return this.fail(res, 404, 'not_found', 'Couldn’t find that collaborator.');
      res.json(renderCollaborator(found, collaborator, 'collaborator'));
    });
    app.post('/teams/apps/:app/collaborators', (req, res) => {
      const found = teamApp(req, res);
      if (!found || !teamAdmin(this.teams.get(found.teamId)!, res) || twoFactor(found, res)) return;
      const user = userFor(req.body.user, res);
      if (!user) return;
      // The text terraform matches (framework_resource_team_collaborator.go); status unverified.
      if (found.collaborators.has(user.id))
        return this.fail(
          res,
          422,
          'invalid_params',
          `${user.email} is already a collaborator on app ${found.name}.`,
        );
      // `view` is always part of the set (heroku/cli access/add.ts appends it).
      const collaborator = { id: randomUUID(), user, permissions: withView(req.body.permissions ?? []) };
      found.collaborators.set(user.id, collaborator);
      this.event('collaborator', 'create', {
        app: { id: found.id, name: found.name },
        data: subjectData(user),
      });
      res.status(201).json(renderCollaborator(found, collaborator, 'collaborator'));
    });
    app.patch('/teams/apps/:app/collaborators/:collaborator', (req, res) => {
      const found = teamApp(req, res);
      if (!found || !teamAdmin(this.teams.get(found.teamId)!, res) || twoFactor(found, res)) return;
      const collaborator = byIdentity(found.collaborators, String(req.params.collaborator));
      if (!collaborator) return this.fail(res, 404, 'not_found', 'Couldn’t find that collaborator.');
      collaborator.permissions = withView(req.body.permissions);
      res.json(renderCollaborator(found, collaborator, 'collaborator'));
    });
    app.delete('/teams/apps/:app/collaborators/:collaborator', (req, res) => {
      const found = teamApp(req, res);
      if (!found || !teamAdmin(this.teams.get(found.teamId)!, res) || twoFactor(found, res)) return;
      // Email is the schema's identity; electron/sheriff deletes by collaborator id.
      const collaborator = byIdentity(found.collaborators, String(req.params.collaborator));
      if (!collaborator) return this.fail(res, 404, 'not_found', 'Couldn’t find that collaborator.');
      found.collaborators.delete(collaborator.user.id);
      this.deleted(`app:${found.id}`, collaborator);
      this.event('collaborator', 'destroy', {
        app: { id: found.id, name: found.name },
        data: subjectData(collaborator.user),
      });
      res.json(renderCollaborator(found, collaborator, 'collaborator'));
    });
    // Releases, newest first with `version ..; max=N, order=desc` (heroku/cli releases; schema
    // release `user`: who created it). The schema declares no `ranges`; id and version are accepted.
    app.get('/apps/:app/releases', (req, res) => {
      const found = teamApp(req, res);
      if (!found) return;
      this.page(
        req,
        res,
        this.releases.get(found.id) ?? [],
        { fields: ['id', 'version'], sortValue: (r, field) => (field === 'version' ? r.version : r.id) },
        (r) =>
          exampleOf('release', {
            id: r.id,
            version: r.version,
            user: r.user,
            description: r.description,
            app: { id: found.id, name: found.name },
            created_at: r.createdAt.toISOString(),
            updated_at: r.createdAt.toISOString(),
          }),
      );
    });
  }

  private adminCount(team: Team): number {
    return [...team.members.values()].filter((m) => m.role === 'admin').length;
  }
}

/**
 * The `data` of a membership event. The schema leaves `data` open and no public source shows it for
 * membership events (unverified); the simulator names the member as `data.user`.
 */
function subjectData(user: { id: string; email: string }, extra: Record<string, unknown> = {}) {
  return { user: { id: user.id, email: user.email }, ...extra };
}

function withView(permissions: readonly string[]): string[] {
  return [...new Set(['view', ...permissions])];
}
