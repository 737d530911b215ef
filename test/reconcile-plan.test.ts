import { describe, expect, it } from 'vitest';
import { holdRemovals } from '../src/reconcile/brake.js';
import { desiredAccess, type UserFacts } from '../src/reconcile/desired.js';
import {
  type Access,
  type AppPermission,
  type AssignmentRule,
  NO_ACCESS,
  type Operation,
  TEAM_ROLES,
  type TeamRole,
} from '../src/reconcile/model.js';
import { type PlanContext, plan } from '../src/reconcile/plan.js';

const rules: AssignmentRule[] = [
  { id: 'r1', idpGroup: 'Engineering', target: 'team', team: 'core', role: 'member' },
  { id: 'r2', idpGroup: 'Eng Leads', target: 'team', team: 'core', role: 'admin' },
  { id: 'r3', idpGroup: 'Everyone', target: 'team', team: 'core', role: 'viewer' },
  { id: 'r4', idpGroup: 'Finance', target: 'enterprise', permissions: ['billing', 'view'] },
  { id: 'r5', idpGroup: 'Eng Leads', target: 'enterprise', permissions: ['manage'] },
  { id: 'r6', idpGroup: 'Engineering', target: 'app', app: 'api', permissions: ['deploy', 'view'] },
  { id: 'r7', idpGroup: 'SRE', target: 'app', app: 'api', permissions: ['operate'] },
];

const user = (groups: string[], extra: Partial<UserFacts> = {}): UserFacts => ({
  active: true,
  deprovisioned: false,
  groups,
  ...extra,
});

const access = (
  enterprise: Access['enterprise'],
  teams: Record<string, TeamRole> = {},
  apps: Record<string, AppPermission[]> = {},
): Access => ({ enterprise, teams: new Map(Object.entries(teams)), apps: new Map(Object.entries(apps)) });

const context = (overrides: Partial<PlanContext> = {}): PlanContext => ({
  account: 'ada@example.com',
  userId: 'user-ada',
  revokeTokens: false,
  teamAdmins: new Map(),
  fallbackAdmin: undefined,
  ...overrides,
});

const kinds = (operations: Operation[]) => operations.map((o) => o.kind);

describe('desired access', () => {
  it('gives an inactive or deleted user nothing, whatever their groups', () => {
    expect(desiredAccess(user(['Eng Leads', 'Finance'], { active: false }), rules)).toEqual(NO_ACCESS);
    expect(desiredAccess(user(['Eng Leads', 'Finance'], { deprovisioned: true }), rules)).toEqual(NO_ACCESS);
  });

  it('lets the highest role win across rules, whatever their order', () => {
    for (const order of [rules, [...rules].reverse()]) {
      expect(desiredAccess(user(['Everyone', 'Engineering', 'Eng Leads']), order).teams.get('core')).toBe(
        'admin',
      );
      expect(desiredAccess(user(['Everyone', 'Engineering']), order).teams.get('core')).toBe('member');
      expect(desiredAccess(user(['Everyone']), order).teams.get('core')).toBe('viewer');
    }
  });

  it('unions permissions in canonical order and matches group names case-insensitively', () => {
    const desired = desiredAccess(user(['finance', 'ENG LEADS', 'engineering', 'sre']), rules);
    expect(desired.enterprise).toEqual(['view', 'manage', 'billing']);
    expect(desired.apps.get('api')).toEqual(['view', 'deploy', 'operate']);
  });

  it('implies Enterprise Account membership (view) for team or app access', () => {
    expect(desiredAccess(user(['Everyone']), rules).enterprise).toEqual(['view']);
    expect(desiredAccess(user(['SRE']), rules).enterprise).toEqual(['view']);
    expect(desiredAccess(user(['Nothing']), rules)).toEqual(NO_ACCESS);
  });
});

describe('plan', () => {
  it('grants everything a new user is entitled to, enterprise first', () => {
    const desired = desiredAccess(user(['Engineering']), rules);
    const result = plan(desired, NO_ACCESS, context());
    expect(result.operations).toEqual([
      { kind: 'grant-enterprise', account: 'ada@example.com', permissions: ['view'] },
      { kind: 'add-team-member', account: 'ada@example.com', team: 'core', role: 'member' },
      { kind: 'grant-app-access', account: 'ada@example.com', app: 'api', permissions: ['view', 'deploy'] },
    ]);
    expect(result.blocked).toEqual([]);
  });

  it('does nothing when actual already matches desired (idempotent)', () => {
    const desired = desiredAccess(user(['Engineering', 'Finance']), rules);
    expect(plan(desired, desired, context())).toEqual({ operations: [], blocked: [] });
  });

  it('changes roles in both directions for every pair of roles', () => {
    for (const from of TEAM_ROLES) {
      for (const to of TEAM_ROLES) {
        const result = plan(
          access(['view'], { core: to }),
          access(['view'], { core: from }),
          context({
            teamAdmins: new Map([['core', new Set(['ada@example.com', 'other@example.com'])]]),
          }),
        );
        expect(result.operations).toEqual(
          from === to
            ? []
            : [{ kind: 'change-team-role', account: 'ada@example.com', team: 'core', from, to }],
        );
      }
    }
  });

  it('removes in the order apps, teams, Enterprise Account, then revokes tokens on deactivation', () => {
    const actual = access(['view', 'manage'], { core: 'member', web: 'viewer' }, { api: ['deploy'] });
    const result = plan(NO_ACCESS, actual, context({ revokeTokens: true }));
    expect(kinds(result.operations)).toEqual([
      'revoke-app-access',
      'remove-team-member',
      'remove-team-member',
      'revoke-enterprise',
      'revoke-tokens',
    ]);
  });

  it('puts grants before removals so access moving between teams is never briefly lost', () => {
    const result = plan(access(['view'], { web: 'member' }), access(['view'], { core: 'member' }), context());
    expect(kinds(result.operations)).toEqual(['add-team-member', 'remove-team-member']);
  });

  it('promotes the fallback admin before removing or demoting a team’s last admin', () => {
    const teamAdmins = new Map([['core', new Set(['ada@example.com'])]]);
    for (const desired of [NO_ACCESS, access(['view'], { core: 'member' })]) {
      const result = plan(
        desired,
        access(['view'], { core: 'admin' }),
        context({ teamAdmins, fallbackAdmin: 'it@example.com' }),
      );
      expect(result.operations[0]).toEqual({
        kind: 'promote-fallback-admin',
        account: 'it@example.com',
        team: 'core',
        from: null,
      });
      expect(result.blocked).toEqual([]);
    }
  });

  it('with no fallback admin, leaves that one edge, finishes the rest and reports it as blocked', () => {
    const teamAdmins = new Map([['core', new Set(['ada@example.com'])]]);
    const actual = access(['view'], { core: 'admin', web: 'member' }, { api: ['view'] });
    const result = plan(NO_ACCESS, actual, context({ teamAdmins, revokeTokens: true }));
    expect(kinds(result.operations)).toEqual(['revoke-app-access', 'remove-team-member', 'revoke-tokens']);
    expect(result.operations[1]).toMatchObject({ team: 'web' });
    expect(result.blocked).toEqual([
      { reason: 'last-admin', account: 'ada@example.com', team: 'core', wanted: 'remove-team-member' },
    ]);
  });

  it('does not treat the leaving admin as their own fallback', () => {
    const teamAdmins = new Map([['core', new Set(['ada@example.com'])]]);
    const result = plan(
      NO_ACCESS,
      access(['view'], { core: 'admin' }),
      context({ teamAdmins, fallbackAdmin: 'ada@example.com' }),
    );
    expect(result.blocked).toHaveLength(1);
  });

  it('removes an admin freely when another admin remains', () => {
    const teamAdmins = new Map([['core', new Set(['ada@example.com', 'bob@example.com'])]]);
    const result = plan(NO_ACCESS, access(['view'], { core: 'admin' }), context({ teamAdmins }));
    expect(kinds(result.operations)).toEqual(['remove-team-member', 'revoke-enterprise']);
  });

  it('gives a re-activated user back what the rules grant', () => {
    const facts = user(['Engineering']);
    const deactivated = desiredAccess({ ...facts, active: false }, rules);
    expect(deactivated).toEqual(NO_ACCESS);
    const result = plan(desiredAccess(facts, rules), deactivated, context());
    expect(kinds(result.operations)).toEqual(['grant-enterprise', 'add-team-member', 'grant-app-access']);
  });

  it('changes app and enterprise permissions in place', () => {
    const result = plan(
      access(['view', 'billing'], {}, { api: ['view', 'operate'] }),
      access(['view'], {}, { api: ['view'] }),
      context(),
    );
    expect(result.operations).toEqual([
      { kind: 'change-enterprise', account: 'ada@example.com', from: ['view'], to: ['view', 'billing'] },
      {
        kind: 'change-app-access',
        account: 'ada@example.com',
        app: 'api',
        from: ['view'],
        to: ['view', 'operate'],
      },
    ]);
  });
});

describe('mass-change brake on a plan', () => {
  it('holds removals, demotions and token revocation of a held change, and lets grants through', () => {
    const desired = access(['view'], { web: 'member', core: 'viewer' });
    const actual = access(['view'], { core: 'admin', ops: 'member' }, { api: ['deploy'] });
    const result = plan(
      desired,
      actual,
      context({
        revokeTokens: true,
        teamAdmins: new Map([['core', new Set(['ada@example.com', 'other@example.com'])]]),
      }),
    );
    const { kept, held } = holdRemovals(result.operations, 'change-1');
    expect(kinds(kept)).toEqual(['add-team-member']);
    expect(held.map((h) => (h.reason === 'mass-change-held' ? h.operation.kind : h.reason))).toEqual([
      'revoke-app-access',
      'change-team-role',
      'remove-team-member',
      'revoke-tokens',
    ]);
    expect(held.every((h) => h.reason === 'mass-change-held' && h.changeId === 'change-1')).toBe(true);
  });
});
