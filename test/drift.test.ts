import { randomBytes } from 'node:crypto';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { addWebhook } from '../src/alerts/endpoints.js';
import { failedJobsOf } from '../src/drift/failed-jobs.js';
import { reportFindings } from '../src/drift/reports.js';
import { runDriftScan } from '../src/drift/scan.js';
import { closeQueues, openQueues } from '../src/jobs/queues.js';
import { BuiltinConnector } from '../src/platform/builtin.js';
import { addRule } from '../src/reconcile/rules.js';
import { SecretBox } from '../src/security/secret-box.js';
import { createTenant, updateTenantPolicy } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase, type TestDatabase, uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

const ADMIN_TOKEN = randomBytes(24).toString('hex');

async function seedUser(
  database: TestDatabase,
  tenantId: string,
  userName: string,
  groups: string[],
  lastLoginDaysAgo: number | null,
  active = true,
) {
  const [user] = await database.sql`
    INSERT INTO users (tenant_id, user_name, origin, active, last_sso_login_at, created_at)
    VALUES (${tenantId}, ${userName}, 'scim', ${active},
      ${lastLoginDaysAgo === null ? null : new Date(Date.now() - lastLoginDaysAgo * 86_400_000).toISOString()}::timestamptz, now() - interval '200 days')
    RETURNING id::text`;
  for (const group of groups) {
    await database.sql`
      WITH g AS (
        INSERT INTO groups (tenant_id, display_name) VALUES (${tenantId}, ${group})
        ON CONFLICT (tenant_id, lower(display_name)) DO UPDATE SET display_name = EXCLUDED.display_name RETURNING id)
      INSERT INTO group_members (tenant_id, group_id, user_id) SELECT ${tenantId}, g.id, ${user!.id} FROM g`;
  }
  return user!.id as string;
}

async function grant(
  database: TestDatabase,
  tenantId: string,
  account: string,
  edges: { enterprise?: string; teams?: Record<string, string>; apps?: Record<string, string> },
) {
  if (edges.enterprise) {
    await database.sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions) VALUES (${tenantId}, ${account}, ${edges.enterprise}::enterprise_permission[])`;
  }
  for (const [team, role] of Object.entries(edges.teams ?? {})) {
    await database.sql`
      WITH t AS (INSERT INTO teams (tenant_id, name) VALUES (${tenantId}, ${team}) ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id)
      INSERT INTO platform_team_members (tenant_id, team_id, account, role) SELECT ${tenantId}, t.id, ${account}, ${role}::team_role FROM t`;
  }
  for (const [app, permissions] of Object.entries(edges.apps ?? {})) {
    await database.sql`
      WITH a AS (INSERT INTO apps (tenant_id, name) VALUES (${tenantId}, ${app}) ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id)
      INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions) SELECT ${tenantId}, a.id, ${account}, ${permissions}::app_permission[] FROM a`;
  }
}

describe('drift reports, offboarding evidence and inactive seats (built-in platform, admin API)', async () => {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  await addRule(
    database.db,
    tenant.id,
    { target: 'enterprise', idpGroup: 'Engineering', permissions: ['view'] },
    'test',
  );
  await addRule(
    database.db,
    tenant.id,
    { target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' },
    'test',
  );
  await addRule(
    database.db,
    tenant.id,
    { target: 'app', idpGroup: 'Engineering', app: 'api', permissions: ['view', 'deploy'] },
    'test',
  );
  await database.sql`DELETE FROM outbox`;
  const ada = await seedUser(database, tenant.id, 'ada@example.com', ['Engineering'], 2);
  await seedUser(database, tenant.id, 'bob@example.com', ['Engineering'], 45);
  await seedUser(database, tenant.id, 'gone@example.com', [], 400, false);
  await grant(database, tenant.id, 'ada@example.com', {
    enterprise: '{view}',
    teams: { core: 'member' },
    apps: { api: '{view,deploy}' },
  });
  await grant(database, tenant.id, 'bob@example.com', {
    enterprise: '{view}',
    teams: { core: 'admin', ops: 'admin' },
  });
  await grant(database, tenant.id, 'gone@example.com', { enterprise: '{view}', teams: { core: 'viewer' } });
  await grant(database, tenant.id, 'mallory@example.com', { teams: { core: 'member' } });
  await updateTenantPolicy(
    database.db,
    'acme',
    { seatPrices: { admin: 25, member: 25, viewer: 25 } },
    'test',
  );

  const { log } = capturingLogger('silent');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { adminToken: ADMIN_TOKEN }),
    log,
  });
  afterAll(() => daemon.stop());
  const base = `http://127.0.0.1:${daemon.port}/api/tenants/acme`;
  const api = async (path: string, method = 'GET') => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const text = await response.text();
    return {
      status: response.status,
      type: response.headers.get('content-type') ?? '',
      text,
      body: text.startsWith('{') ? JSON.parse(text) : undefined,
    };
  };
  const scanAndWait = async (seq: number) => {
    expect((await api('/drift/scan', 'POST')).status).toBe(202);
    await expect
      .poll(async () => (await api('/drift')).body?.seq, { timeout: 20_000, interval: 100 })
      .toBe(seq);
    return (await api('/drift')).body;
  };

  it('refuses to answer before the first scan, precisely', async () => {
    const none = await api('/drift');
    expect(none.status).toBe(404);
    expect(none.body.error.message).toContain('idsync drift scan');
  });

  it('a scan reports each disagreement with severity, expected, actual and a suggested action', async () => {
    const report = await scanAndWait(1);
    const seen = report.findings
      .map((f: any) => `${f.class}/${f.severity} ${f.account} ${f.team ?? f.app ?? 'enterprise'}`)
      .sort();
    expect(seen).toEqual(
      [
        'excess-access/critical gone@example.com core',
        'excess-access/critical gone@example.com enterprise',
        'excess-access/high bob@example.com ops',
        'missing-access/low bob@example.com api',
        'orphan/medium mallory@example.com core',
        'wrong-role/high bob@example.com core',
      ].sort(),
    );
    expect(report.summary.byClass).toMatchObject({
      'excess-access': 3,
      orphan: 1,
      'wrong-role': 1,
      'missing-access': 1,
    });
    expect(report.summary.difference).toMatchObject({ new: 6, resolved: 0, stillOpen: 0 });
    const orphan = report.findings.find((f: any) => f.class === 'orphan');
    expect(orphan).toMatchObject({
      actual: 'member',
      expected: null,
      status: 'new',
      action: expect.stringContaining('remove it from team core'),
    });

    const filtered = await api('/drift?class=orphan');
    expect(filtered.body.findings).toHaveLength(1);
    expect((await api('/drift?user=BOB')).body.findings).toHaveLength(3);
    expect((await api('/drift?class=nonsense')).status).toBe(400);
    const csv = await api('/drift?format=csv');
    expect(csv.type).toContain('text/csv');
    expect(csv.text.split('\r\n')[0]).toBe(
      'report,class,severity,status,account,user_id,team,app,expected,actual,since,suggested_action',
    );
    expect(csv.text).toContain('orphan,medium,new,mallory@example.com');
  });

  it('the default policy fixes missing access; the next report shows what was resolved and keeps "since"', async () => {
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT count(*)::int AS n FROM platform_app_collaborators WHERE account = 'bob@example.com'`
          )[0]!.n,
        { timeout: 20_000 },
      )
      .toBe(1);
    const first = (await api('/drift')).body;
    const second = await scanAndWait(2);
    expect(second.summary.difference).toMatchObject({
      previousReportId: first.id,
      resolved: 1,
      stillOpen: 5,
    });
    const orphanBefore = first.findings.find((f: any) => f.class === 'orphan');
    const orphanNow = second.findings.find((f: any) => f.class === 'orphan');
    expect(orphanNow).toMatchObject({ status: 'open', since: orphanBefore.since });
    const difference = (await api(`/drift/${second.id}/difference`)).body;
    expect(difference.resolved.map((f: any) => `${f.class} ${f.account} ${f.app}`)).toEqual([
      'missing-access bob@example.com api',
    ]);
    expect(second.previousHash).toBe(first.hash);
  });

  it('reports are tamper-evident: editing a stored finding breaks the hash chain', async () => {
    expect((await api('/drift/verify')).body).toEqual({ reports: 2, valid: true });
    await expect(
      database.sql`UPDATE drift_findings SET actual = 'viewer' WHERE class = 'orphan'`,
    ).rejects.toThrow(/append-only/);
    await database.sql.begin(async (tx) => {
      await tx`ALTER TABLE drift_findings DISABLE TRIGGER drift_findings_no_update`;
      await tx`UPDATE drift_findings f SET actual = 'viewer' FROM drift_reports r WHERE r.id = f.report_id AND r.seq = 1 AND f.class = 'orphan'`;
      await tx`ALTER TABLE drift_findings ENABLE TRIGGER drift_findings_no_update`;
    });
    expect((await api('/drift/verify')).body).toMatchObject({
      valid: false,
      brokenAt: { seq: 1, problem: 'content does not match its hash' },
    });
  });

  it('offboarding evidence: time to effect per user and p50/p95/max, with a CSV for auditors', async () => {
    await database.sql.begin(async (tx) => {
      await tx`UPDATE users SET active = false WHERE id = ${ada}`;
      await tx`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
        VALUES (${tenant.id}, 'deprovision', 'user', ${ada}, ${JSON.stringify({ event: 'user.deactivated', at: new Date().toISOString() })}::jsonb)`;
    });
    await expect
      .poll(async () => (await api('/offboarding')).body.stats.complete, { timeout: 20_000 })
      .toBe(1);
    const view = (await api('/offboarding')).body;
    expect(view.offboardings[0]).toMatchObject({
      userName: 'ada@example.com',
      edgesRemoved: 3,
      status: 'complete',
    });
    expect(view.stats.p50Ms).toBe(view.offboardings[0].timeToEffectMs);
    expect(view.stats.p95Ms).toBe(view.stats.maxMs);
    expect((await api('/offboarding?from=2020-01-01&to=2020-02-01')).body.stats.offboarded).toBe(0);
    expect((await api('/offboarding?from=yesterday')).status).toBe(400);
    const csv = await api('/offboarding?format=csv');
    expect(csv.text).toMatch(/^user_id,user_name,idp_event,/);
    expect(csv.text).toContain(`${ada},ada@example.com,user.deactivated,`);
  });

  it('inactive seats: who has not signed in for N days, their roles, cost and a suggested action', async () => {
    const view = (await api('/seats/inactive')).body;
    expect(view.days).toBe(30);
    expect(view.seats.map((s: any) => s.userName)).toEqual(['bob@example.com']);
    expect(view.seats[0]).toMatchObject({
      seatRole: 'admin',
      teams: { core: 'admin', ops: 'admin' },
      monthlyCost: 25,
      suggestedAction: expect.stringContaining('downgrade to viewer'),
    });
    expect(view.totalMonthlyCost).toBe(25);
    expect((await api('/seats/inactive?days=100')).body.seats).toEqual([]);
    expect((await api('/seats/inactive?format=csv')).text).toContain('bob@example.com');
  });

  it('refuses a fix policy for findings that need a human, and unknown seat roles', async () => {
    await expect(
      updateTenantPolicy(database.db, 'acme', { driftPolicy: { orphan: 'fix' } }, 'test'),
    ).rejects.toThrow(/need a human/);
    await expect(
      updateTenantPolicy(database.db, 'acme', { seatPrices: { owner: 1 } }, 'test'),
    ).rejects.toThrow(/per role/);
  });
});

describe('scheduled drift scans', async () => {
  const database = await createTestDatabase();
  await createTenant(database.db, 'acme', 'test');
  const { log } = capturingLogger('silent');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { driftTickMs: 300 }),
    log,
  });
  afterAll(() => daemon.stop());

  it('every tenant gets a report when its interval has passed, and not again before', async () => {
    await expect
      .poll(async () => (await database.sql`SELECT count(*)::int AS n FROM drift_reports`)[0]!.n, {
        timeout: 20_000,
        interval: 200,
      })
      .toBe(1);
    const [report] = await database.sql`SELECT summary->>'trigger' AS trigger FROM drift_reports`;
    expect(report!.trigger).toBe('schedule');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await database.sql`SELECT count(*)::int AS n FROM drift_reports`)[0]!.n).toBe(1);
  });
});

describe('findings idsync itself could not finish: blocked operations and failed jobs', async () => {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  const prefix = uniquePrefix('drift-failed');
  const queues = openQueues(redis, prefix);
  afterAll(async () => {
    await closeQueues(queues);
    redis.disconnect();
  });

  it('reports an offboarding stopped at a last admin, a held mass change, and a job that failed every attempt', async () => {
    const boss = await seedUser(database, tenant.id, 'boss@example.com', [], null, false);
    await database.sql`
      INSERT INTO receipts (tenant_id, user_id, account, idp_event, idp_event_at, left_to_human)
      VALUES (${tenant.id}, ${boss}, 'boss@example.com', 'user.deactivated', now(), ${JSON.stringify([
        {
          edge: 'team core',
          why: 'boss@example.com is the last admin of team core',
          action: 'make someone else an admin of core',
        },
      ])}::jsonb)`;
    await database.sql`
      INSERT INTO held_changes (id, tenant_id, event, affected_users, enterprise_size)
      VALUES ('chg-1', ${tenant.id}, 'group.members_removed', 40, 100)`;
    const worker = new Worker(
      'idsync-deprovision',
      async () => {
        throw new Error('Heroku said no');
      },
      { connection: new Redis(inject('redisUrl'), { maxRetriesPerRequest: null }), prefix },
    );
    await queues.deprovision.add(
      'user',
      { tenantId: tenant.id, subjectType: 'user', subjectId: boss },
      { attempts: 1 },
    );
    await expect.poll(() => queues.deprovision.getFailedCount(), { timeout: 10_000 }).toBe(1);
    await worker.close();

    const result = await runDriftScan(
      {
        database,
        connector: new BuiltinConnector(database.db, tenant.id),
        failedJobs: () => failedJobsOf(database.db, queues, tenant.id),
      },
      tenant.id,
      'test',
    );
    expect(result.summary.byClass).toMatchObject({ blocked: 2, 'failed-job': 1 });
    const findings = await reportFindings(database.db, result.reportId);
    expect(findings.map((f) => `${f.class} ${f.account} ${f.team ?? ''} ${f.action}`).sort()).toEqual([
      'blocked (40 users)  review with `idsync changes`, then `idsync approve chg-1`',
      'blocked boss@example.com core make someone else an admin of core',
      expect.stringMatching(/^failed-job boss@example.com {2}fix the cause, then `idsync jobs retry \d+`$/),
    ]);
    expect(findings.find((f) => f.class === 'failed-job')).toMatchObject({
      severity: 'high',
      actual: 'Heroku said no',
    });
  });
});

describe('a drift.critical alert commits with its report', async () => {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const box = SecretBox.fromConfig({ secretKey: 'k'.repeat(40), dataDir: '/nonexistent' });
  await addWebhook(
    database.db,
    box,
    tenant.id,
    { url: 'https://alerts.example.com/idsync', events: ['drift.critical'], format: 'standard' },
    'test',
    { allowPrivateNetworks: false },
  );
  await seedUser(database, tenant.id, 'gone@example.com', [], 400, false);
  await grant(database, tenant.id, 'gone@example.com', { enterprise: '{view}' });
  const scan = () =>
    runDriftScan(
      { database, connector: new BuiltinConnector(database.db, tenant.id), failedJobs: async () => [] },
      tenant.id,
      'test',
    );
  const count = async (table: 'drift_reports' | 'webhook_deliveries') =>
    (
      await database.sql`SELECT count(*)::int AS n FROM ${database.sql(table)} WHERE tenant_id = ${tenant.id}`
    )[0]!.n as number;

  it('when the alert cannot be written, the report is not stored either (no report without its alert)', async () => {
    // The alert's write fails, as a crash between the two writes would leave it unwritten.
    await database.sql.unsafe(`
      CREATE FUNCTION refuse_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'delivery write refused by the test'; END $$;
      CREATE TRIGGER refuse_delivery BEFORE INSERT ON webhook_deliveries
        FOR EACH ROW EXECUTE FUNCTION refuse_delivery();`);
    await expect(scan()).rejects.toThrow();
    expect(await count('drift_reports')).toBe(0);
    expect(await count('webhook_deliveries')).toBe(0);
    await database.sql.unsafe('DROP TRIGGER refuse_delivery ON webhook_deliveries');
    // The next scan finds the same user new again and both commit.
    await scan();
    expect(await count('drift_reports')).toBe(1);
    const [delivery] = await database.sql`
      SELECT event_type, payload FROM webhook_deliveries WHERE tenant_id = ${tenant.id}`;
    expect(delivery).toMatchObject({
      event_type: 'drift.critical',
      payload: {
        data: { critical: 1, findings: [expect.objectContaining({ account: 'gone@example.com' })] },
      },
    });
  });
});
