import { describe, expect, it } from 'vitest';
import { reportFindings } from '../src/drift/reports.js';
import { runDriftScan } from '../src/drift/scan.js';
import { Sweeper } from '../src/jobs/sweeper.js';
import { BuiltinConnector } from '../src/platform/builtin.js';
import { addRule } from '../src/reconcile/rules.js';
import { createAdminToken } from '../src/security/admin-tokens.js';
import { createTenant, updateTenantPolicy } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { callWithToken } from './support/http-clients.js';
import { capturingLogger } from './support/log-capture.js';
import { startReconcileTest } from './support/reconcile-setup.js';

const DAY = 86_400_000;

async function seat(
  database: TestDatabase,
  tenantId: string,
  userName: string,
  platformAccount: string,
  role: 'admin' | 'member' | 'viewer',
  lastLoginDaysAgo: number | null,
) {
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin, active, last_sso_login_at, created_at)
    VALUES (${tenantId}, ${userName}, 'scim', true,
      ${lastLoginDaysAgo === null ? null : new Date(Date.now() - lastLoginDaysAgo * DAY).toISOString()}::timestamptz,
      now() - interval '200 days')
    RETURNING id::text`;
  await database.sql`
    WITH t AS (INSERT INTO teams (tenant_id, name) VALUES (${tenantId}, 'core')
      ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id)
    INSERT INTO platform_team_members (tenant_id, team_id, account, role)
    SELECT ${tenantId}, t.id, ${platformAccount}, ${role}::team_role FROM t`;
  return user!.id as string;
}

/*
 * Seats from real activity on the built-in platform: a platform service reports what its users did
 * through `POST /api/tenants/:t/activity`; `idsync seats inactive` and the admin API show last login
 * and last activity side by side, flag viewer and member seats, and total the saving. Platform accounts
 * are matched to users through account_key() (NFC + full case folding), not lower().
 */
describe('inactive seats from SSO logins and platform activity (built-in platform)', async () => {
  const { database, tenant, daemon, adminToken } = await startReconcileTest();
  await updateTenantPolicy(
    database.db,
    'acme',
    { seatPrices: { admin: 30, member: 20, viewer: 10 } },
    'test',
  );
  await seat(database, tenant.id, 'viv@example.com', 'viv@example.com', 'viewer', 60);
  await seat(database, tenant.id, 'max@example.com', 'max@example.com', 'member', 60);
  await seat(database, tenant.id, 'root@example.com', 'root@example.com', 'admin', null);
  // The platform spells the account with "ss": lower('Straße') is 'straße', account_key() is 'strasse'.
  const strasse = await seat(database, tenant.id, 'Straße@example.com', 'strasse@example.com', 'member', 90);
  // Stored NFC; the platform reports her activity with a decomposed é (e + U+0301).
  await seat(database, tenant.id, 'josé@example.com', 'josé@example.com', 'viewer', 90);

  const base = `http://127.0.0.1:${daemon.port}/api/tenants/acme`;
  const api = (path: string, method = 'GET', body?: unknown, token = adminToken) =>
    callWithToken(`${base}${path}`, token, 'application/json', method, body);

  it('POST /activity records what platform users did, keeps only the latest, and refuses bad input precisely', async () => {
    const recent = new Date(Date.now() - 2 * DAY).toISOString();
    const older = new Date(Date.now() - 40 * DAY).toISOString();
    const posted = await api('/activity', 'POST', {
      activity: [
        { account: 'MAX@example.com', kind: 'deploy', app: 'api', at: recent },
        { account: 'jose\u0301@example.com', kind: 'login', at: recent },
        // Older than what is stored for max: must not move his last activity back.
        { account: 'max@example.com', kind: 'config', app: 'web', at: older },
      ],
    });
    expect(posted.status).toBe(202);
    expect(posted.body).toEqual({ recorded: 3 });
    // A second, older report for max in its own request: GREATEST keeps the deploy.
    expect(
      (
        await api('/activity', 'POST', {
          activity: [{ account: 'max@example.com', kind: 'config', at: older }],
        })
      ).status,
    ).toBe(202);
    const [max] =
      await database.sql`SELECT kind, app FROM platform_activity WHERE account_key = 'max@example.com'`;
    expect(max).toEqual({ kind: 'deploy', app: 'api' });

    const bad = await api('/activity', 'POST', {
      activity: [{ account: 'max@example.com', kind: 'Deploy!' }],
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({
      code: 'invalid',
      message: expect.stringContaining('activity.0.kind: kind must be a short lower-case word'),
    });
    const future = await api('/activity', 'POST', {
      activity: [
        { account: 'max@example.com', kind: 'deploy', at: new Date(Date.now() + DAY).toISOString() },
      ],
    });
    expect(future.status).toBe(400);
    expect(future.text).toContain('in the future');
    expect((await api('/activity', 'POST', { activity: [] })).status).toBe(400);
    expect(
      (await api('/activity', 'POST', { activity: [{ account: 'x', kind: 'deploy' }] }, 'wrong')).status,
    ).toBe(401);
    // Recording activity changes what the seat audit says: operators only, and only for their tenant.
    const auditor = (
      await createAdminToken(database.db, {
        name: 'audit',
        role: 'auditor',
        tenantId: tenant.id,
        actor: 'test',
      })
    ).token;
    const report = { activity: [{ account: 'viv@example.com', kind: 'deploy' }] };
    const refused = await api('/activity', 'POST', report, auditor);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    const other = await createTenant(database.db, 'other', 'test');
    const foreign = (
      await createAdminToken(database.db, {
        name: 'ops-other',
        role: 'operator',
        tenantId: other.tenant.id,
        actor: 'test',
      })
    ).token;
    expect((await api('/activity', 'POST', report, foreign)).status).toBe(404);
    expect(await database.sql`SELECT 1 FROM platform_activity WHERE account_key = 'viv@example.com'`).toEqual(
      [],
    );
  });

  it('lists seats with neither a login nor activity in N days, flags viewers and members, totals cost and saving', async () => {
    const view = (await api('/seats/inactive')).body;
    const names = view.seats.map((s: any) => s.userName);
    // max and josé were active two days ago; Straße is matched through account_key despite "ss".
    expect(names).toEqual(['root@example.com', 'Straße@example.com', 'viv@example.com']);
    const byName = Object.fromEntries(view.seats.map((s: any) => [s.userName, s]));
    expect(byName['Straße@example.com']).toMatchObject({
      userId: strasse,
      teams: { core: 'member' },
      seatRole: 'member',
      monthlyCost: 20,
      flagged: true,
      lastActivity: null,
    });
    expect(byName['root@example.com']).toMatchObject({ seatRole: 'admin', flagged: false, monthlyCost: 30 });
    expect(byName['viv@example.com']).toMatchObject({ seatRole: 'viewer', flagged: true, monthlyCost: 10 });
    expect(view.totalMonthlyCost).toBe(60);
    expect(view.monthlySaving).toBe(30);
    // A window longer than everyone's absence but root's (never signed in, created 200 days ago).
    expect((await api('/seats/inactive?days=100')).body.seats.map((s: any) => s.userName)).toEqual([
      'root@example.com',
    ]);
  });

  it('idsync seats inactive shows last login and last activity as text, and exports CSV', async () => {
    const env = { DATABASE_URL: database.url };
    const text = await runCli(['seats', 'inactive', '--tenant', 'acme', '--days', '1'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /^5 seats without an SSO login or platform activity in 1 days, 90\/month; saving 60\/month from 4 viewer and member seats/,
    );
    expect(text.stdout).toMatch(/max@example\.com\tlast-login=\S+\tlast-activity=\S+ deploy api\tmember/);
    const csv = await runCli(['seats', 'inactive', '--tenant', 'acme', '--format', 'csv'], env);
    expect(csv.code).toBe(0);
    const [header, ...rows] = csv.stdout.trim().split('\r\n');
    expect(header).toBe(
      'user_id,user_name,last_sso_login_at,last_activity_at,last_activity_kind,last_activity_app,inactive_days,seat_role,teams,enterprise_permissions,monthly_cost,flagged,suggested_action',
    );
    expect(rows).toHaveLength(3);
    expect(rows.find((r) => r.includes('Straße'))).toMatch(/,member,core:member,,20,yes,/);
  });

  it('the sweeper finds an offboarded user whose platform account differs from the userName only in case folding', async () => {
    const [gross] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin, active, deactivated_at)
      VALUES (${tenant.id}, 'Groß@example.com', 'scim', false, now() - interval '1 hour') RETURNING id::text`;
    await database.sql`
      INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
      VALUES (${tenant.id}, 'gross@example.com', '{view}')`;
    await database.sql`DELETE FROM outbox WHERE subject_id = ${gross!.id}`;
    const { log } = capturingLogger('silent');
    const sweeper = new Sweeper({ database, log, intervalMs: 60_000, graceMs: 1_000 });
    const swept = await sweeper.sweepOnce();
    expect(swept.swept).toBe(true);
    const queued = await database.sql`
      SELECT lane FROM outbox WHERE subject_type = 'user' AND subject_id = ${gross!.id}`;
    expect(queued.map((r) => r.lane)).toEqual(['deprovision']);
  });
});

describe('drift matches platform accounts to users by account_key()', async () => {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  await addRule(
    database.db,
    tenant.id,
    { target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' },
    'test',
  );
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'Straße@example.com', 'scim', true)
    RETURNING id::text`;
  await database.sql`
    WITH g AS (INSERT INTO groups (tenant_id, display_name) VALUES (${tenant.id}, 'Engineering') RETURNING id)
    INSERT INTO group_members (tenant_id, group_id, user_id) SELECT ${tenant.id}, g.id, ${user!.id} FROM g`;
  // The platform spells her account with "ss" (full case folding of ß): the same person.
  await database.sql`
    WITH t AS (INSERT INTO teams (tenant_id, name) VALUES (${tenant.id}, 'core')
      ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id)
    INSERT INTO platform_team_members (tenant_id, team_id, account, role)
    SELECT ${tenant.id}, t.id, 'strasse@example.com', 'member' FROM t`;

  it('a member spelled in another case-folded form is neither an orphan nor missing', async () => {
    const scan = await runDriftScan(
      { database, connector: new BuiltinConnector(database.db, tenant.id) },
      tenant.id,
      'test',
    );
    const findings = await reportFindings(database.db, scan.reportId, {});
    // With lower(): an orphan "strasse@…" on core and a missing "straße@…" on core.
    expect(findings.filter((f) => f.team === 'core').map((f) => `${f.class} ${f.account}`)).toEqual([]);
  });
});
