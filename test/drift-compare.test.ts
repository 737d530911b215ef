import { describe, expect, it } from 'vitest';
import { type DesiredIndex, DriftComparer } from '../src/drift/compare.js';
import type { TeamRole } from '../src/reconcile/model.js';

function index(): DesiredIndex {
  return {
    users: new Map([
      ['ada@x.com', { userId: 'u-ada', offboarded: false }],
      ['bob@x.com', { userId: 'u-bob', offboarded: false }],
      ['cy@x.com', { userId: 'u-cy', offboarded: false }],
      ['gone@x.com', { userId: 'u-gone', offboarded: true }],
      ['fallback@x.com', { userId: 'u-fb', offboarded: false }],
    ]),
    enterprise: new Map([
      ['ada@x.com', 'view'],
      ['bob@x.com', 'view,create'],
      ['cy@x.com', 'view'],
    ]),
    teams: new Map([
      [
        'core',
        new Map<string, TeamRole>([
          ['ada@x.com', 'member'],
          ['bob@x.com', 'admin'],
        ]),
      ],
      ['never-listed', new Map<string, TeamRole>([['ada@x.com', 'viewer']])],
    ]),
    apps: new Map([['api', new Map([['ada@x.com', 'view,deploy']])]]),
  };
}

const summarise = (findings: ReturnType<DriftComparer['compare']>) =>
  findings
    .map(
      (f) =>
        `${f.class}/${f.severity} ${f.account} ${f.team ?? f.app ?? 'enterprise'} ${f.expected ?? '-'}→${f.actual ?? '-'}`,
    )
    .sort();

describe('comparing the platform with the IdP, slice by slice', () => {
  it('classifies every disagreement and nothing else', () => {
    const comparer = new DriftComparer(index(), 'fallback@x.com');
    const findings = [
      ...comparer.compare({
        kind: 'enterprise',
        members: [
          { account: 'ada@x.com', permissions: ['view'], federated: true },
          { account: 'bob@x.com', permissions: ['view'], federated: true },
          { account: 'gone@x.com', permissions: ['view'], federated: true },
          { account: 'mallory@x.com', permissions: ['view', 'manage'], federated: false },
        ],
      }),
      ...comparer.compare({
        kind: 'team',
        team: 'core',
        members: [
          ['ada@x.com', 'admin'],
          ['mallory@x.com', 'member'],
          ['fallback@x.com', 'admin'],
        ],
      }),
      ...comparer.compare({ kind: 'team', team: 'unruled', members: [['ada@x.com', 'viewer']] }),
      ...comparer.compare({ kind: 'app', app: 'api', collaborators: [['ada@x.com', ['view']]] }),
      ...comparer.finish(),
    ];
    expect(summarise(findings)).toEqual(
      [
        'wrong-role/low bob@x.com enterprise view,create→view',
        'excess-access/critical gone@x.com enterprise -→view',
        'orphan/high mallory@x.com enterprise -→view,manage',
        'wrong-role/high ada@x.com core member→admin',
        'orphan/medium mallory@x.com core -→member',
        'excess-access/info fallback@x.com core -→admin',
        'missing-access/low bob@x.com core admin→-',
        'excess-access/high ada@x.com unruled -→viewer',
        'wrong-role/low ada@x.com api view,deploy→view',
        'missing-access/low ada@x.com never-listed viewer→-',
        'missing-access/low cy@x.com enterprise view→-',
      ].sort(),
    );
    // Keys identify the same finding in the next report; they never collide within one.
    expect(new Set(findings.map((f) => f.key)).size).toBe(findings.length);
  });

  it('finds nothing when the platform is exactly what the rules say', () => {
    const comparer = new DriftComparer(index(), undefined);
    const findings = [
      ...comparer.compare({
        kind: 'enterprise',
        members: [
          { account: 'ada@x.com', permissions: ['view'], federated: true },
          { account: 'bob@x.com', permissions: ['view', 'create'], federated: true },
          { account: 'cy@x.com', permissions: ['view'], federated: true },
        ],
      }),
      ...comparer.compare({
        kind: 'team',
        team: 'core',
        members: [
          ['ada@x.com', 'member'],
          ['bob@x.com', 'admin'],
        ],
      }),
      ...comparer.compare({ kind: 'team', team: 'never-listed', members: [['ada@x.com', 'viewer']] }),
      ...comparer.compare({ kind: 'app', app: 'api', collaborators: [['ada@x.com', ['view', 'deploy']]] }),
      ...comparer.finish(),
    ];
    expect(findings).toEqual([]);
  });
});
