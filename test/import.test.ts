import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readImportFile } from '../src/import/csv-rows.js';
import { type ImportOptions, importAssignments } from '../src/import/importer.js';
import { createAdminToken } from '../src/security/admin-tokens.js';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { createTestDatabase } from './support/database.js';
import { startReconcileTest } from './support/reconcile-setup.js';
import { GROUP, USER } from './support/scim-fixtures.js';

const BOM = '\uFEFF';

const fileOf = (text: string) => Readable.from([Buffer.from(text, 'utf8')]);
const options = (extra: Partial<ImportOptions> = {}): ImportOptions => ({
  dryRun: false,
  skipInvalid: false,
  replace: false,
  actor: 'test',
  ...extra,
});

describe('reading an import file', () => {
  it('reads a BOM, `;` as the delimiter and quoted fields (RFC 4180), and reports lines', async () => {
    const text = `${BOM}E-Mail;Team;Role;App;Permissions\r\n"ada@example.com";core;Admin;;\r\n\r\nbob@example.com;;;api;"view;deploy"\r\n"carol@example.com";"web";"member";;\r\n`;
    const parsed = await readImportFile(fileOf(text));
    expect(parsed.fileError).toBeUndefined();
    expect(parsed.errors).toEqual([]);
    expect(parsed.rows).toEqual([
      { line: 2, account: 'ada@example.com', team: 'core', role: 'admin' },
      { line: 4, account: 'bob@example.com', app: 'api', permissions: ['view', 'deploy'] },
      { line: 5, account: 'carol@example.com', team: 'web', role: 'member' },
    ]);
  });

  it('takes `,` with a quoted comma list, and a field spanning lines keeps the start line', async () => {
    const text =
      'account,app,permissions\nada@example.com,api,"deploy,operate"\n"x\ny@example.com",api,view\nbob@example.com,web-app,manage\n';
    const parsed = await readImportFile(fileOf(text));
    expect(parsed.rows[0]).toEqual({
      line: 2,
      account: 'ada@example.com',
      app: 'api',
      permissions: ['view', 'deploy', 'operate'],
    });
    expect(parsed.errors).toEqual([{ line: 3, reason: expect.stringContaining('not an e-mail address') }]);
    expect(parsed.rows[1]).toMatchObject({ line: 5, account: 'bob@example.com' });
  });

  it('names each bad row with its line and reason', async () => {
    const text = [
      'account,team,role,app,permissions',
      'ada@example.com,core,owner,,',
      'not-an-email,core,member,,',
      'bob@example.com,core,member,api,view',
      'carol@example.com,,,api,fly',
      'dave@example.com,,,,',
      'erin@example.com,Core Team,member,,',
      'frank@example.com,core,member,,,extra',
    ].join('\n');
    const parsed = await readImportFile(fileOf(text));
    expect(parsed.rows).toEqual([]);
    expect(parsed.errors.map((e) => [e.line, e.reason])).toEqual([
      [2, 'unknown role "owner"; roles are admin, member, viewer'],
      [3, 'account "not-an-email" is not an e-mail address'],
      [4, 'gives both a team and an app; a row grants one of them'],
      [5, 'unknown permission "fly"; permissions are view, deploy, operate, manage'],
      [6, 'names neither a team nor an app'],
      [7, expect.stringContaining('team "Core Team": team must be lowercase')],
      [8, 'has 6 fields, the header has 5'],
    ]);
  });

  it('refuses a file it cannot read as a whole: unknown header, bad CSV, bad UTF-8', async () => {
    expect((await readImportFile(fileOf('mail,group\n'))).fileError?.reason).toContain(
      'unknown column "group"',
    );
    expect((await readImportFile(fileOf('account,team\n'))).fileError?.reason).toContain('team and role');
    const unclosed = await readImportFile(fileOf('account,team,role\nada@example.com,"core,member\n'));
    expect(unclosed.fileError?.reason).toMatch(/^not valid CSV/);
    const latin1 = Buffer.from('account,team,role\nj\xf6rg@example.com,core,member\n', 'latin1');
    expect((await readImportFile(Readable.from([latin1]))).fileError?.reason).toContain('not valid UTF-8');
  });
});

describe('importing into the database', async () => {
  const database = await createTestDatabase();
  const { db, sql } = database;
  const { tenant } = await createTenant(db, 'imports', 'test');
  const { tenant: other } = await createTenant(db, 'other-tenant', 'test');
  const run = async (text: string, extra: Partial<ImportOptions> = {}, tenantId = tenant.id) =>
    importAssignments(db, tenantId, await readImportFile(fileOf(text)), options(extra));
  const outboxRows = async (tenantId = tenant.id) =>
    (await sql`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = ${tenantId}`)[0]!.n as number;
  const assignmentsOf = async (tenantId = tenant.id) =>
    (await sql`
      SELECT u.user_name AS account, a.team_name AS team, a.team_role::text AS role, a.app_name AS app,
        a.app_permissions::text AS permissions
      FROM assignments a JOIN users u ON u.id = a.user_id WHERE a.tenant_id = ${tenantId} AND a.source = 'import'
      ORDER BY 1, 2, 4`) as unknown as Record<string, string | null>[];

  const FILE = [
    'account,team,role,app,permissions',
    'ada@example.com,core,admin,,',
    'bob@example.com,core,member,,',
    'bob@example.com,,,api,deploy',
  ].join('\n');

  it('a dry run plans and changes nothing', async () => {
    const report = await run(FILE, { dryRun: true });
    expect(report.applied).toBe(false);
    const counts = Object.fromEntries(report.plan.map((p) => [p.operation, p.count]));
    expect(counts).toMatchObject({ 'create-user': 2, 'add-team-role': 2, 'add-app-access': 1 });
    expect(report.plan.find((p) => p.operation === 'add-team-role')!.sample[0]).toEqual({
      line: 2,
      account: 'ada@example.com',
      team: 'core',
      to: 'admin',
    });
    expect(await assignmentsOf()).toEqual([]);
    expect(await outboxRows()).toBe(0);
    expect((await sql`SELECT count(*)::int AS n FROM users WHERE tenant_id = ${tenant.id}`)[0]!.n).toBe(0);
  });

  it('applies a valid file: imported users, assignments, one outbox row per user changed', async () => {
    const report = await run(FILE);
    expect(report.applied).toBe(true);
    expect(report.queuedUsers).toBe(2);
    expect(await assignmentsOf()).toEqual([
      { account: 'ada@example.com', team: 'core', role: 'admin', app: null, permissions: null },
      { account: 'bob@example.com', team: 'core', role: 'member', app: null, permissions: null },
      { account: 'bob@example.com', team: null, role: null, app: 'api', permissions: '{view,deploy}' },
    ]);
    const users =
      await sql`SELECT user_name, origin::text FROM users WHERE tenant_id = ${tenant.id} ORDER BY 1`;
    expect(users.map((u) => u.origin)).toEqual(['csv', 'csv']);
    expect(await outboxRows()).toBe(2);
  });

  it('re-importing the same file is a no-op: no outbox rows, everything unchanged', async () => {
    const before = await outboxRows();
    const report = await run(FILE);
    expect(report.applied).toBe(true);
    expect(report.queuedUsers).toBe(0);
    expect(report.plan.find((p) => p.operation === 'unchanged')!.count).toBe(3);
    expect(await outboxRows()).toBe(before);
  });

  it('a file with bad rows applies nothing; --skip-invalid applies the good ones', async () => {
    const bad = [
      'account,team,role',
      'carol@example.com,core,viewer',
      'dave@example.com,core,boss',
      'carol@example.com,core,admin',
    ].join('\n');
    const before = await outboxRows();
    const refused = await run(bad);
    expect(refused.applied).toBe(false);
    expect(refused.errors.map((e) => [e.line, e.reason])).toEqual([
      [3, 'unknown role "boss"; roles are admin, member, viewer'],
      [4, 'conflicts with line 2 (the same account and team core with another role)'],
    ]);
    expect(await outboxRows()).toBe(before);
    expect((await assignmentsOf()).some((a) => a.account === 'carol@example.com')).toBe(false);

    const skipped = await run(bad, { skipInvalid: true });
    expect(skipped.applied).toBe(true);
    expect(skipped.errors).toHaveLength(2);
    expect((await assignmentsOf()).filter((a) => a.account === 'carol@example.com')).toEqual([
      { account: 'carol@example.com', team: 'core', role: 'viewer', app: null, permissions: null },
    ]);
  });

  it('--replace removes only import-granted access the file does not name', async () => {
    // A rule-granted team and a SCIM user with group membership stay whatever the import says.
    await sql`INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role)
      VALUES (${tenant.id}, 'Staff', 'team', 'core', 'member')`;
    const before = await outboxRows();
    const report = await run('account,team,role\nada@example.com,core,admin\n', { replace: true });
    expect(report.applied).toBe(true);
    const counts = Object.fromEntries(report.plan.map((p) => [p.operation, p.count]));
    expect(counts).toMatchObject({ 'remove-team-role': 2, 'remove-app-access': 1, unchanged: 1 });
    expect(await assignmentsOf()).toEqual([
      { account: 'ada@example.com', team: 'core', role: 'admin', app: null, permissions: null },
    ]);
    expect(await outboxRows()).toBe(before + 2);
    expect(
      (await sql`SELECT count(*)::int AS n FROM assignment_rules WHERE tenant_id = ${tenant.id}`)[0]!.n,
    ).toBe(1);
  });

  it('refuses accounts the IdP deactivated or deleted, and unknown teams once the platform has teams', async () => {
    await sql`INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'off@example.com', 'scim', false)`;
    await sql`INSERT INTO users (tenant_id, user_name, origin, deprovisioned_at) VALUES (${tenant.id}, 'gone@example.com', 'scim', now())`;
    await sql`INSERT INTO teams (tenant_id, name) VALUES (${tenant.id}, 'core') ON CONFLICT DO NOTHING`;
    const report = await run(
      'account,team,role\noff@example.com,core,member\ngone@example.com,core,member\nada@example.com,typo,member\n',
      { dryRun: true },
    );
    expect(report.errors.map((e) => [e.line, e.reason])).toEqual([
      [2, 'account off@example.com is deactivated in the identity provider; an import grants it nothing'],
      [3, 'account gone@example.com was deleted by the identity provider; an import does not re-create it'],
      [4, expect.stringContaining('unknown team typo')],
    ]);
  });

  it('--replace that would strip many people passes the mass-change brake as one change', async () => {
    const { tenant: big } = await createTenant(db, 'brake-tenant', 'test');
    const accounts = Array.from({ length: 6 }, (_, i) => `member${i}@example.com`);
    await run(`account,team,role\n${accounts.map((a) => `${a},core,member`).join('\n')}\n`, {}, big.id);
    // What the platform has after the reconciler applied that import.
    const [core] = await sql`INSERT INTO teams (tenant_id, name) VALUES (${big.id}, 'core') RETURNING id`;
    for (const account of accounts) {
      await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions) VALUES (${big.id}, ${account}, '{view}')`;
      await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role) VALUES (${big.id}, ${core!.id}, ${account}, 'member')`;
    }
    const report = await run(
      'account,team,role\nnewcomer@example.com,core,member\n',
      { replace: true },
      big.id,
    );
    expect(report.applied).toBe(true);
    expect(report.heldUsers).toBe(6);
    const [held] = await sql`SELECT id, event, affected_users FROM held_changes WHERE tenant_id = ${big.id}`;
    expect(held).toEqual({ id: `import:${report.importId}`, event: 'import.replaced', affected_users: 6 });
  });

  it('keeps tenants apart: the same file in another tenant touches only that tenant', async () => {
    const mine = await assignmentsOf();
    const report = await run(FILE, {}, other.id);
    expect(report.plan.find((p) => p.operation === 'create-user')!.count).toBe(2);
    expect(await assignmentsOf(other.id)).toHaveLength(3);
    expect(await assignmentsOf()).toEqual(mine);
    const replaced = await run(
      'account,team,role\nzed@example.com,core,member\n',
      { replace: true },
      other.id,
    );
    expect(replaced.plan.find((p) => p.operation === 'remove-team-role')!.count).toBe(2);
    expect(await assignmentsOf()).toEqual(mine);
  });
});

describe('imports and every-team rules end to end (daemon, worker, built-in platform)', async () => {
  const { database, tenant, daemon, admin, scim } = await startReconcileTest({
    config: { workerConcurrency: 2 },
  });
  const { sql } = database;
  await createTenant(database.db, 'rival', 'test');
  const operator = await createAdminToken(database.db, {
    name: 'ops',
    tenantId: tenant.id,
    role: 'operator',
    actor: 'test',
  });
  const auditor = await createAdminToken(database.db, {
    name: 'audit',
    tenantId: tenant.id,
    role: 'auditor',
    actor: 'test',
  });
  const base = `http://127.0.0.1:${daemon.port}`;
  const postCsv = async (path: string, csv: string, token = operator.token) => {
    const response = await fetch(`${base}/api${path}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/csv' },
      body: csv,
    });
    return { status: response.status, body: (await response.json()) as any };
  };
  const teamsOf = async (account: string) =>
    Object.fromEntries(
      (
        await sql`SELECT t.name, m.role::text FROM platform_team_members m JOIN teams t ON t.id = m.team_id
          WHERE m.tenant_id = ${tenant.id} AND m.account = ${account} ORDER BY t.name`
      ).map((r) => [r.name, r.role]),
    );
  const appsOf = async (account: string) =>
    Object.fromEntries(
      (
        await sql`SELECT a.name, c.permissions::text FROM platform_app_collaborators c JOIN apps a ON a.id = c.app_id
          WHERE c.tenant_id = ${tenant.id} AND c.account = ${account}`
      ).map((r) => [r.name, r.permissions]),
    );

  it('POST /imports needs the operator role, and answers in the admin API error format', async () => {
    const csv = 'account,team,role\nada@example.com,core,member\n';
    expect((await postCsv('/tenants/acme/imports', csv, auditor.token)).status).toBe(403);
    expect((await postCsv('/tenants/rival/imports', csv)).status).toBe(404);
    const refused = await postCsv('/tenants/acme/imports', 'account,team,role\nada@example.com,core,chief\n');
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('invalid');
    expect(refused.body.error.message).toContain('line 2: unknown role "chief"');
    expect(refused.body.error.details.errors).toEqual([
      { line: 2, reason: 'unknown role "chief"; roles are admin, member, viewer' },
    ]);
    const json = await fetch(`${base}/api/tenants/acme/imports`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${operator.token}`, 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(json.status).toBe(415);
    const dry = await postCsv('/tenants/acme/imports?dryRun=true', csv);
    expect(dry.status).toBe(200);
    expect(dry.body.applied).toBe(false);
    expect((await sql`SELECT count(*)::int AS n FROM assignments`)[0]!.n).toBe(0);
  });

  it('POST /imports while another import of the tenant runs answers 409 conflict (importInProgress)', async () => {
    // What a running import holds: its transaction's advisory lock on the tenant.
    const running = await database.sql.reserve();
    await running`BEGIN`;
    await running`SELECT pg_advisory_xact_lock(hashtextextended(${`import:${tenant.id}`}, 0))`;
    try {
      const busy = await postCsv(
        '/tenants/acme/imports?dryRun=true',
        'account,team,role\nada@example.com,core,member\n',
      );
      expect(busy.status).toBe(409);
      expect(busy.body.error).toMatchObject({
        code: 'conflict',
        message: 'another import for this tenant is in progress; try again when it has finished',
      });
    } finally {
      await running`ROLLBACK`;
      running.release();
    }
    expect(
      (await postCsv('/tenants/acme/imports?dryRun=true', 'account,team,role\nada@example.com,core,member\n'))
        .status,
    ).toBe(200);
  });

  it('the reconciler applies an imported assignment on the built-in platform', async () => {
    const applied = await postCsv(
      '/tenants/acme/imports',
      'account;team;role;app;permissions\nada@example.com;core;admin;;\nada@example.com;;;api;deploy\n',
    );
    expect(applied.status).toBe(201);
    expect(applied.body.queuedUsers).toBe(1);
    // The team and the app are separate platform calls: wait for both.
    await expect
      .poll(
        async () => ({ teams: await teamsOf('ada@example.com'), apps: await appsOf('ada@example.com') }),
        {
          timeout: 15_000,
        },
      )
      .toEqual({ teams: { core: 'admin' }, apps: { api: '{view,deploy}' } });
    const plan = await admin('GET', '/tenants/acme/users/ada@example.com/plan');
    expect(plan.body.operations).toEqual([]);
  });

  it('the console takes an upload from its own page, with an operator token only', async () => {
    const login = await fetch(`${base}/console/acme/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: operator.token }),
      redirect: 'manual',
    });
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const form = () => {
      const data = new FormData();
      data.set('dryRun', 'true');
      data.set('file', new Blob(['account,app,permissions\nbob@example.com,api,operate\n']), 'access.csv');
      return data;
    };
    const crossSite = await fetch(`${base}/console/acme/imports`, {
      method: 'POST',
      headers: { Cookie: cookie, Origin: 'https://evil.example' },
      body: form(),
    });
    expect(crossSite.status).toBe(403);
    const page = await fetch(`${base}/console/acme/imports`, {
      method: 'POST',
      // The console's own origin is the configured public URL (a proxy may stand in front).
      headers: { Cookie: cookie, Origin: new URL(daemon.resources.config.publicUrl).origin },
      body: form(),
    });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Dry run: nothing was changed.');
    expect(html).toMatch(/add-app-access<\/td><td>1/);
  });

  it('an every-team rule covers existing teams, teams a scan finds later, and goes when the user leaves the group', async () => {
    // Another admin in each team, so the leaver is not anyone's last admin (but for "solo").
    await sql`INSERT INTO teams (tenant_id, name, listed_at) VALUES (${tenant.id}, 'web', now()), (${tenant.id}, 'solo', now())
      ON CONFLICT (tenant_id, name) DO UPDATE SET listed_at = now()`;
    await sql`UPDATE teams SET listed_at = now() WHERE tenant_id = ${tenant.id}`;
    await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
      SELECT ${tenant.id}, id, 'keeper@example.com', 'admin' FROM teams WHERE tenant_id = ${tenant.id} AND name <> 'solo'`;
    const rule = await admin('POST', '/tenants/acme/rules', {
      target: 'all-teams',
      idpGroup: 'EA Admins',
      role: 'admin',
    });
    expect(rule.status, JSON.stringify(rule.body)).toBe(201);
    const user = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'boss@example.com',
      active: true,
    });
    const group = await scim('POST', '/Groups', {
      schemas: [GROUP],
      displayName: 'EA Admins',
      members: [{ value: user.body.id }],
    });
    expect(group.status).toBe(201);
    await expect
      .poll(() => teamsOf('boss@example.com'), { timeout: 15_000 })
      .toEqual({ core: 'admin', solo: 'admin', web: 'admin' });

    // A team created on the built-in platform after the rule: covered once a scan lists it.
    const [later] =
      await sql`INSERT INTO teams (tenant_id, name) VALUES (${tenant.id}, 'later') RETURNING id`;
    await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role) VALUES (${tenant.id}, ${later!.id}, 'keeper@example.com', 'admin')`;
    expect(await teamsOf('boss@example.com')).not.toHaveProperty('later');
    expect((await admin('POST', '/tenants/acme/drift/scan')).status).toBe(202);
    // The scan found the team and queued the rule's users (not a drift fix: the scan's desired state
    // was computed before it listed the new team).
    await expect
      .poll(
        async () =>
          (
            await sql`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = ${tenant.id}
              AND cause->>'event' = 'teams.appeared' AND subject_id = ${user.body.id}`
          )[0]!.n,
        { timeout: 20_000 },
      )
      .toBe(1);
    await expect
      .poll(() => teamsOf('boss@example.com'), { timeout: 20_000 })
      .toEqual({ core: 'admin', later: 'admin', solo: 'admin', web: 'admin' });

    // Out of the group: out of every team, but for the one it is the last admin of.
    expect(
      (
        await scim('PATCH', `/Groups/${group.body.id}`, {
          schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
          Operations: [{ op: 'remove', path: `members[value eq "${user.body.id}"]` }],
        })
      ).status,
    ).toBeLessThan(300);
    await expect.poll(() => teamsOf('boss@example.com'), { timeout: 15_000 }).toEqual({ solo: 'admin' });
  });
});

describe('idsync import from the CLI', async () => {
  const database = await createTestDatabase();
  const env = { DATABASE_URL: database.url };
  const dir = os.tmpdir();
  const write = (name: string, text: string) => {
    const file = path.join(dir, `${randomBytes(4).toString('hex')}-${name}`);
    writeFileSync(file, text);
    return file;
  };

  it('exits 0 when applied, 65 when rows are refused (nothing applied) or the file cannot be read, 64 on usage errors', async () => {
    expect((await runCli(['tenant', 'create', 'acme'], env)).code).toBe(0);
    const good = write('good.csv', 'account,team,role\nada@example.com,core,admin\n');
    const dry = await runCli(['import', good, '--tenant', 'acme', '--dry-run'], env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('dry run: nothing was changed');
    expect(dry.stdout).toContain('add-team-role: 1\n    line 2  ada@example.com  team core  admin');
    const applied = await runCli(['import', good, '--tenant', 'acme'], env);
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain('applied: 1 users queued for reconcile');
    const again = await runCli(['import', good, '--tenant', 'acme'], env);
    expect(again.stdout).toContain('applied: 0 users queued');

    const bad = write('bad.csv', 'account,team,role\nada@example.com,core,admin\nbob@example,core,member\n');
    const refused = await runCli(['import', bad, '--tenant', 'acme'], env);
    expect(refused.code).toBe(65);
    expect(refused.stdout).toContain('line 3: account "bob@example" is not an e-mail address');
    expect(refused.stderr).toContain('1 invalid rows; nothing was applied');
    const skipped = await runCli(['import', bad, '--tenant', 'acme', '--skip-invalid'], env);
    expect(skipped.code).toBe(0);

    const unreadable = await runCli(['import', '/nonexistent.csv', '--tenant', 'acme'], env);
    expect(unreadable.code).toBe(65);
    expect(unreadable.stderr).toBe('idsync: cannot read /nonexistent.csv\n');
    const directory = await runCli(['import', os.tmpdir(), '--tenant', 'acme'], env);
    expect(directory.code).toBe(65);
    expect(directory.stderr).toBe(`idsync: cannot read ${os.tmpdir()}\n`);
    expect((await runCli(['import', good], env)).code).toBe(64);
  });

  it('adds an every-team rule from the CLI, and refuses a role it does not know', async () => {
    const added = await runCli(
      ['rules', 'add', '--tenant', 'acme', '--group', 'EA Admins', '--all-teams', '--role', 'admin'],
      env,
    );
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/\tgroup "EA Admins" → every team \(now and later\) as admin\n$/);
    const bad = await runCli(
      ['rules', 'add', '--tenant', 'acme', '--group', 'X', '--all-teams', '--team', 'core'],
      env,
    );
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('exactly one of --team, --all-teams, --enterprise or --app');
  });
});
