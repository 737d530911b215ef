import type { PlatformSlice } from '../platform/connector.js';
import { roleRank, type TeamRole } from '../reconcile/model.js';

export const FINDING_CLASSES = [
  'excess-access',
  'missing-access',
  'wrong-role',
  'orphan',
  'blocked',
  'failed-job',
  /** A team or app the scan could not read (e.g. Heroku refused idsync's account on it). */
  'unreadable',
] as const;
export type FindingClass = (typeof FINDING_CLASSES)[number];

export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface Finding {
  /** The same finding keeps its key from report to report: account, edge and class. */
  key: string;
  class: FindingClass;
  severity: Severity;
  account: string;
  userId: string | null;
  team: string | null;
  app: string | null;
  expected: string | null;
  actual: string | null;
  action: string;
}

export interface KnownUser {
  userId: string;
  /** Deactivated or deleted in the IdP: any access left is a failed offboarding. */
  offboarded: boolean;
}

/** What the IdP wants, by edge: built from every user and the rules before the platform is read. */
export interface DesiredIndex {
  users: Map<string, KnownUser>;
  enterprise: Map<string, string>;
  teams: Map<string, Map<string, TeamRole>>;
  apps: Map<string, Map<string, string>>;
}

type Edge = { kind: 'enterprise' } | { kind: 'team'; team: string } | { kind: 'app'; app: string };

const edgeName = (edge: Edge) =>
  edge.kind === 'enterprise'
    ? 'the Enterprise Account'
    : edge.kind === 'team'
      ? `team ${edge.team}`
      : `app ${edge.app}`;

/**
 * Compares the platform, one slice at a time, with the desired index. Pure and streaming: each slice is
 * compared as it arrives and then dropped, so a scan holds the desired state and one team at a time.
 */
export class DriftComparer {
  private enterpriseCompared = false;

  constructor(
    private readonly desired: DesiredIndex,
    /** The tenant's fallback admin: teams idsync made them admin of are idsync's own doing. */
    private readonly fallbackAdmin: string | undefined,
  ) {}

  compare(slice: PlatformSlice): Finding[] {
    switch (slice.kind) {
      case 'enterprise': {
        const actual = slice.members.map((m) => [m.account, m.permissions.join(',')] as [string, string]);
        this.enterpriseCompared = true;
        return this.compareEdge({ kind: 'enterprise' }, actual, this.desired.enterprise, samePermissions);
      }
      case 'team': {
        const wanted = new Map(this.desired.teams.get(slice.team) ?? []);
        this.desired.teams.delete(slice.team);
        const implied = new Set(slice.implied);
        for (const account of implied) wanted.delete(account);
        const members = slice.members.filter(([account]) => !implied.has(account));
        return this.compareEdge({ kind: 'team', team: slice.team }, members, wanted, (a, w) =>
          roleRank(a as TeamRole) > roleRank(w as TeamRole) ? 'more' : a === w ? 'same' : 'less',
        );
      }
      case 'app': {
        const wanted = new Map(this.desired.apps.get(slice.app) ?? []);
        this.desired.apps.delete(slice.app);
        // Access a team role implies (a team admin on every team app) satisfies any rule for the app.
        for (const account of slice.implied ?? []) wanted.delete(account);
        const actual = slice.collaborators.map(([account, p]) => [account, p.join(',')] as [string, string]);
        return this.compareEdge({ kind: 'app', app: slice.app }, actual, wanted, samePermissions);
      }
      case 'unreadable': {
        // Nothing is known of this edge: no missing-access findings for it, one finding saying why.
        const edge: Edge =
          'team' in slice.edge
            ? { kind: 'team', team: slice.edge.team }
            : { kind: 'app', app: slice.edge.app };
        if (edge.kind === 'team') this.desired.teams.delete(edge.team);
        else this.desired.apps.delete(edge.app);
        return [
          this.finding(
            'unreadable',
            'high',
            edge,
            '(scan)',
            null,
            null,
            slice.reason.slice(0, 500),
            `${edgeName(edge)} was not read, so its drift is unknown: fix the cause, then run \`idsync drift scan\``,
          ),
        ];
      }
    }
  }

  /** Desired edges on teams and apps the platform never listed (and on the Enterprise Account if it was not read). */
  finish(): Finding[] {
    const findings: Finding[] = [];
    if (!this.enterpriseCompared) {
      for (const [account, permissions] of this.desired.enterprise) {
        findings.push(this.missing({ kind: 'enterprise' }, account, permissions));
      }
    }
    for (const [team, wanted] of this.desired.teams) {
      for (const [account, role] of wanted)
        findings.push(this.missing({ kind: 'team', team }, account, role));
    }
    for (const [app, wanted] of this.desired.apps) {
      for (const [account, permissions] of wanted)
        findings.push(this.missing({ kind: 'app', app }, account, permissions));
    }
    this.desired.teams.clear();
    this.desired.apps.clear();
    return findings;
  }

  private compareEdge(
    edge: Edge,
    actual: readonly (readonly [string, string])[],
    wanted: ReadonlyMap<string, string>,
    rank: (actual: string, wanted: string) => 'more' | 'same' | 'less',
  ): Finding[] {
    const findings: Finding[] = [];
    const present = new Set<string>();
    for (const [account, value] of actual) {
      present.add(account);
      const user = this.desired.users.get(account);
      const want = wanted.get(account);
      if (!user) {
        findings.push(
          this.finding(
            'orphan',
            isPrivileged(edge, value) ? 'high' : 'medium',
            edge,
            account,
            null,
            null,
            value,
            `not known to the IdP (added on the platform by hand?): remove it from ${edgeName(edge)}, or provision the person through the IdP`,
          ),
        );
      } else if (user.offboarded) {
        findings.push(
          this.finding(
            'excess-access',
            'critical',
            edge,
            account,
            user.userId,
            null,
            value,
            `offboarded in the IdP but still in ${edgeName(edge)}: remove it now (policy fix does, or \`idsync plan --user ${account}\`)`,
          ),
        );
      } else if (want === undefined) {
        const ours = edge.kind === 'team' && value === 'admin' && account === this.fallbackAdmin;
        findings.push(
          ours
            ? this.finding(
                'excess-access',
                'info',
                edge,
                account,
                user.userId,
                null,
                value,
                `kept: idsync made the fallback admin an admin of ${edgeName(edge)} so its last admin could leave`,
              )
            : this.finding(
                'excess-access',
                'high',
                edge,
                account,
                user.userId,
                null,
                value,
                `no rule grants this: remove it from ${edgeName(edge)}, or add a rule that grants it`,
              ),
        );
      } else {
        const comparison = rank(value, want);
        if (comparison !== 'same') {
          findings.push(
            this.finding(
              'wrong-role',
              comparison === 'more' ? 'high' : 'low',
              edge,
              account,
              user.userId,
              want,
              value,
              `set it to ${want} as the rules say (a reconcile does)`,
            ),
          );
        }
      }
    }
    for (const [account, want] of wanted) {
      if (!present.has(account)) findings.push(this.missing(edge, account, want));
    }
    return findings;
  }

  private missing(edge: Edge, account: string, want: string): Finding {
    return this.finding(
      'missing-access',
      'low',
      edge,
      account,
      this.desired.users.get(account)?.userId ?? null,
      want,
      null,
      `grant ${want} on ${edgeName(edge)} as the rules say (a reconcile does)`,
    );
  }

  private finding(
    findingClass: FindingClass,
    severity: Severity,
    edge: Edge,
    account: string,
    userId: string | null,
    expected: string | null,
    actual: string | null,
    action: string,
  ): Finding {
    const team = edge.kind === 'team' ? edge.team : null;
    const app = edge.kind === 'app' ? edge.app : null;
    return {
      key: `${findingClass}|${account}|${edge.kind}|${team ?? app ?? ''}`,
      class: findingClass,
      severity,
      account,
      userId,
      team,
      app,
      expected,
      actual,
      action,
    };
  }
}

/** Permission lists in canonical order: more if the platform has any permission the rules do not give. */
function samePermissions(actual: string, wanted: string): 'more' | 'same' | 'less' {
  if (actual === wanted) return 'same';
  const want = new Set(wanted.split(','));
  return actual.split(',').some((p) => !want.has(p)) ? 'more' : 'less';
}

function isPrivileged(edge: Edge, value: string): boolean {
  if (edge.kind === 'team') return value === 'admin';
  return value.split(',').includes('manage');
}
