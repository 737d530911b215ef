import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import express, { type Request, type Response } from 'express';
import type { Database } from '../../src/db/client.js';
import { setPlatform } from '../../src/platform/settings.js';
import { SecretBox } from '../../src/security/secret-box.js';
import { checkRequest, exampleOf } from './heroku-schema.js';

/*
 * An in-memory Heroku Platform API for the resources idsync manages, behaving like the real one where
 * idsync depends on it: Range pagination with Next-Range (default 200, max 1,000), a token bucket per
 * account reported in RateLimit-Remaining with 429 when empty, a team refusing to lose its last admin,
 * 404s in Heroku's error format, and injectable latency and 5xx faults. Every request is checked against
 * the public schema (method, href and body); violations are collected for the tests to assert on.
 * Response bodies start from the schema's examples.
 */

interface Member {
  id: string;
  email: string;
}
interface EnterpriseMember extends Member {
  permissions: string[];
  federated: boolean;
}
interface TeamMember extends Member {
  role: 'admin' | 'member' | 'viewer';
  federated: boolean;
}
interface Collaborator extends Member {
  permissions: string[];
}
interface Team {
  id: string;
  name: string;
  members: Map<string, TeamMember>;
}
interface App {
  id: string;
  name: string;
  team: string;
  collaborators: Map<string, Collaborator>;
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
  at: number;
}

export class HerokuSimulator {
  readonly token = `sim-${randomUUID()}`;
  readonly account = { id: randomUUID(), email: 'admin@example.com' };
  readonly enterprise = { id: randomUUID(), name: 'acme' };
  readonly members = new Map<string, EnterpriseMember>();
  readonly teams = new Map<string, Team>();
  readonly apps = new Map<string, App>();
  readonly requests: RecordedRequest[] = [];
  readonly violations: string[] = [];
  latencyMs: number;
  /** Each request fails with this status while > 0 (decremented per request). */
  failNext = 0;
  failStatus = 503;
  /** Probability that a request fails with 503 (a flaky API). */
  faultRate = 0;
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

  addEnterpriseMember(email: string, permissions: string[] = ['view'], federated = true): void {
    this.members.set(email, { id: randomUUID(), email, permissions, federated });
  }

  addTeam(name: string, members: [email: string, role: TeamMember['role']][] = []): void {
    const team: Team = { id: randomUUID(), name, members: new Map() };
    for (const [email, role] of members)
      team.members.set(email, { id: randomUUID(), email, role, federated: true });
    this.teams.set(name, team);
  }

  addApp(name: string, team: string, collaborators: [email: string, permissions: string[]][] = []): void {
    const app: App = { id: randomUUID(), name, team, collaborators: new Map() };
    for (const [email, permissions] of collaborators) {
      app.collaborators.set(email, { id: randomUUID(), email, permissions });
    }
    this.apps.set(name, app);
  }

  /** Every grant `email` holds, as readable strings (empty when fully offboarded). */
  grantsOf(email: string): string[] {
    const grants: string[] = [];
    if (this.members.has(email)) grants.push('enterprise');
    for (const team of this.teams.values()) if (team.members.has(email)) grants.push(`team ${team.name}`);
    for (const app of this.apps.values()) if (app.collaborators.has(email)) grants.push(`app ${app.name}`);
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
    const record = () =>
      this.requests.push({ method: req.method, path: req.path, status: res.statusCode, at: Date.now() });
    res.on('finish', record);
    if (this.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    if (req.get('accept') !== 'application/vnd.heroku+json; version=3') {
      this.violations.push(`${req.method} ${req.path}: Accept header ${req.get('accept')}`);
    }
    const body = req.method === 'GET' || req.method === 'DELETE' ? undefined : req.body;
    const check = checkRequest(req.method, req.path, body);
    this.violations.push(...check.problems.map((p) => `${req.method} ${req.path}: ${p}`));
    if (req.get('authorization') !== `Bearer ${this.token}`) {
      this.fail(res, 401, 'unauthorized', 'Invalid credentials provided.');
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
    next();
  }

  private fail(res: Response, status: number, id: string, message: string): void {
    res.status(status).type('application/json').send(JSON.stringify({ id, message }));
  }

  /** Range: `id ..; max=N;` or `id ]<last id>..; max=N;` (exclusive start), sorted by id. */
  private page<T extends { id: string }>(
    req: Request,
    res: Response,
    items: T[],
    render: (item: T) => unknown,
  ) {
    const range = req.get('range') ?? '';
    const max = Math.min(Number(/max=(\d+)/.exec(range)?.[1] ?? 200), 1000);
    const after = /^id \]([^.]+)\.\./.exec(range)?.[1];
    const sorted = [...items].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const start = after ? sorted.findIndex((i) => i.id > after) : 0;
    const rest = start < 0 ? [] : sorted.slice(start);
    const page = rest.slice(0, max);
    if (rest.length > max) {
      res.status(206).set('Next-Range', `id ]${page[page.length - 1]!.id}..; max=${max};`);
    } else {
      res.status(200);
    }
    res.type('application/json').send(JSON.stringify(page.map(render)));
  }

  private routes(app: express.Express): void {
    const ea = (req: Request, res: Response) => {
      const ok = req.params.ea === this.enterprise.id || req.params.ea === this.enterprise.name;
      if (!ok) this.fail(res, 404, 'not_found', 'Couldn’t find that enterprise account.');
      return ok;
    };
    const team = (req: Request, res: Response) => {
      const found = this.teams.get(String(req.params.team));
      if (!found) this.fail(res, 404, 'not_found', 'Couldn’t find that team.');
      return found;
    };
    const teamApp = (req: Request, res: Response) => {
      const found = this.apps.get(String(req.params.app));
      if (!found) this.fail(res, 404, 'not_found', 'Couldn’t find that app.');
      return found;
    };
    const byIdentity = <T extends Member>(map: Map<string, T>, identity: string) =>
      map.get(identity) ?? [...map.values()].find((m) => m.id === identity);
    const renderEnterpriseMember = (m: EnterpriseMember) =>
      exampleOf('enterprise-account-member', {
        id: m.id,
        enterprise_account: { id: this.enterprise.id, name: this.enterprise.name },
        user: { email: m.email, id: m.id },
        permissions: m.permissions.map((name) => ({ name, description: name })),
        identity_provider: m.federated
          ? { id: this.enterprise.id, name: 'acme', redacted: false, owner: null }
          : null,
      });
    const renderTeamMember = (m: TeamMember) =>
      exampleOf('team-member', {
        id: m.id,
        email: m.email,
        role: m.role,
        federated: m.federated,
        user: { email: m.email, id: m.id, name: null },
      });
    const renderCollaborator = (a: App, c: Collaborator) =>
      exampleOf('team-app-collaborator', {
        id: c.id,
        app: { id: a.id, name: a.name },
        user: { email: c.email, id: c.id, federated: true },
        permissions: c.permissions.map((name) => ({ name, description: name })),
        role: 'member',
      });

    app.get('/account', (_req, res) => {
      res.json(exampleOf('account', { id: this.account.id, email: this.account.email }));
    });
    app.get('/account/rate-limits', (_req, res) => {
      res.json({ remaining: this.remaining() });
    });
    app.get('/enterprise-accounts/:ea', (req, res) => {
      if (ea(req, res))
        res.json(exampleOf('enterprise-account', { id: this.enterprise.id, name: this.enterprise.name }));
    });
    app.get('/enterprise-accounts/:ea/members', (req, res) => {
      if (ea(req, res)) this.page(req, res, [...this.members.values()], renderEnterpriseMember);
    });
    app.post('/enterprise-accounts/:ea/members', (req, res) => {
      if (!ea(req, res)) return;
      const email = String(req.body.user).toLowerCase();
      if (this.members.has(email))
        return this.fail(res, 422, 'invalid_params', 'User is already a member of this enterprise account.');
      const member = {
        id: randomUUID(),
        email,
        permissions: req.body.permissions,
        federated: Boolean(req.body.federated),
      };
      this.members.set(email, member);
      res.status(201).json(renderEnterpriseMember(member));
    });
    app.patch('/enterprise-accounts/:ea/members/:member', (req, res) => {
      if (!ea(req, res)) return;
      const member = byIdentity(this.members, String(req.params.member));
      if (!member) return this.fail(res, 404, 'not_found', 'Couldn’t find that member.');
      member.permissions = req.body.permissions;
      res.json(renderEnterpriseMember(member));
    });
    app.delete('/enterprise-accounts/:ea/members/:member', (req, res) => {
      if (!ea(req, res)) return;
      const member = byIdentity(this.members, String(req.params.member));
      if (!member) return this.fail(res, 404, 'not_found', 'Couldn’t find that member.');
      this.members.delete(member.email);
      res.json(renderEnterpriseMember(member));
    });
    app.get('/enterprise-accounts/:ea/teams', (req, res) => {
      if (ea(req, res)) {
        this.page(req, res, [...this.teams.values()], (t) =>
          exampleOf('team', {
            id: t.id,
            name: t.name,
            enterprise_account: { id: this.enterprise.id, name: this.enterprise.name },
          }),
        );
      }
    });
    app.get('/teams/:team/members', (req, res) => {
      const found = team(req, res);
      if (found) this.page(req, res, [...found.members.values()], renderTeamMember);
    });
    app.put('/teams/:team/members', (req, res) => {
      const found = team(req, res);
      if (!found) return;
      const email = String(req.body.email).toLowerCase();
      const current = found.members.get(email);
      if (current?.role === 'admin' && req.body.role !== 'admin' && this.adminCount(found) === 1) {
        return this.fail(res, 422, 'invalid_params', 'A team must have at least one admin.');
      }
      const member = current ?? {
        id: randomUUID(),
        email,
        role: req.body.role,
        federated: Boolean(req.body.federated),
      };
      member.role = req.body.role;
      found.members.set(email, member);
      res.status(current ? 200 : 201).json(renderTeamMember(member));
    });
    app.delete('/teams/:team/members/:member', (req, res) => {
      const found = team(req, res);
      if (!found) return;
      const member = byIdentity(found.members, String(req.params.member));
      if (!member) return this.fail(res, 404, 'not_found', 'Couldn’t find that member.');
      if (member.role === 'admin' && this.adminCount(found) === 1) {
        return this.fail(res, 422, 'invalid_params', 'A team must have at least one admin.');
      }
      found.members.delete(member.email);
      res.json(renderTeamMember(member));
    });
    app.get('/teams/:team/apps', (req, res) => {
      const found = team(req, res);
      if (found) {
        this.page(
          req,
          res,
          [...this.apps.values()].filter((a) => a.team === found.name),
          (a) => exampleOf('team-app', { id: a.id, name: a.name, team: { name: a.team } }),
        );
      }
    });
    app.get('/teams/apps/:app/collaborators', (req, res) => {
      const found = teamApp(req, res);
      if (found) this.page(req, res, [...found.collaborators.values()], (c) => renderCollaborator(found, c));
    });
    app.post('/teams/apps/:app/collaborators', (req, res) => {
      const found = teamApp(req, res);
      if (!found) return;
      const email = String(req.body.user).toLowerCase();
      if (found.collaborators.has(email))
        return this.fail(res, 422, 'invalid_params', 'User is already a collaborator on this app.');
      const collaborator = { id: randomUUID(), email, permissions: req.body.permissions ?? ['view'] };
      found.collaborators.set(email, collaborator);
      res.status(201).json(renderCollaborator(found, collaborator));
    });
    app.patch('/teams/apps/:app/collaborators/:collaborator', (req, res) => {
      const found = teamApp(req, res);
      if (!found) return;
      const collaborator = byIdentity(found.collaborators, String(req.params.collaborator));
      if (!collaborator) return this.fail(res, 404, 'not_found', 'Couldn’t find that collaborator.');
      collaborator.permissions = req.body.permissions;
      res.json(renderCollaborator(found, collaborator));
    });
    app.delete('/teams/apps/:app/collaborators/:collaborator', (req, res) => {
      const found = teamApp(req, res);
      if (!found) return;
      const collaborator = byIdentity(found.collaborators, String(req.params.collaborator));
      if (!collaborator) return this.fail(res, 404, 'not_found', 'Couldn’t find that collaborator.');
      found.collaborators.delete(collaborator.email);
      res.json(renderCollaborator(found, collaborator));
    });
  }

  private adminCount(team: Team): number {
    return [...team.members.values()].filter((m) => m.role === 'admin').length;
  }
}
