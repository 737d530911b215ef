import { describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { createTestDatabase } from './support/database.js';

describe('idsync rules, plan and receipt from the CLI', async () => {
  const database = await createTestDatabase();
  const env = { DATABASE_URL: database.url };

  it('adds, lists and removes rules, and shows a plan without applying it', async () => {
    expect((await runCli(['tenant', 'create', 'acme'], env)).code).toBe(0);
    const added = await runCli(
      ['rules', 'add', '--tenant', 'acme', '--group', 'Engineering', '--team', 'core', '--role', 'admin'],
      env,
    );
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/^[0-9a-f-]{36}\tgroup "Engineering" → team core as admin\n$/);
    const app = await runCli(
      [
        'rules',
        'add',
        '--tenant',
        'acme',
        '--group',
        'Engineering',
        '--app',
        'api',
        '--permissions',
        'deploy,view',
      ],
      env,
    );
    expect(app.stdout).toContain('→ app api view,deploy');

    const bad = await runCli(
      ['rules', 'add', '--tenant', 'acme', '--group', 'X', '--team', 'core', '--role', 'owner'],
      env,
    );
    expect(bad.code).toBe(64);
    expect(bad.stderr).toBe('idsync: role must be one of admin, member, viewer\n');
    const misplaced = await runCli(
      ['rules', 'add', '--tenant', 'acme', '--group', 'X', '--team', 'core', '--permissions', 'deploy'],
      env,
    );
    expect(misplaced.code).toBe(64);
    expect(misplaced.stderr).toContain('--permissions goes with --app only');
    const two = await runCli(
      ['rules', 'add', '--tenant', 'acme', '--group', 'X', '--team', 'core', '--app', 'api'],
      env,
    );
    expect(two.stderr).toContain('exactly one of --team, --all-teams, --enterprise or --app');

    const [tenant] = await database.sql`SELECT id FROM tenants WHERE name = 'acme'`;
    const [user] = await database.sql`
      INSERT INTO users (tenant_id, user_name, origin) VALUES (${tenant!.id}, 'Ada@Example.com', 'scim') RETURNING id`;
    const [group] =
      await database.sql`INSERT INTO groups (tenant_id, display_name) VALUES (${tenant!.id}, 'engineering') RETURNING id`;
    await database.sql`INSERT INTO group_members (tenant_id, group_id, user_id) VALUES (${tenant!.id}, ${group!.id}, ${user!.id})`;

    const plan = await runCli(['plan', '--tenant', 'acme', '--user', 'ada@example.com'], env);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toBe(
      [
        'Ada@Example.com',
        '  grant ada@example.com Enterprise Account permissions view',
        '  add ada@example.com to team core as admin',
        '  grant ada@example.com view,deploy on app api',
        '',
      ].join('\n'),
    );
    const [platform] = await database.sql`SELECT count(*)::int AS n FROM platform_team_members`;
    expect(platform!.n).toBe(0);

    const list = await runCli(['rules', 'list', '--tenant', 'acme'], env);
    const ids = list.stdout
      .trim()
      .split('\n')
      .map((line) => line.split('\t')[0]!);
    expect(ids).toHaveLength(2);
    expect((await runCli(['rules', 'remove', ids[0]!, '--tenant', 'acme'], env)).code).toBe(0);
    expect((await runCli(['rules', 'list', '--tenant', 'acme'], env)).stdout.trim().split('\n')).toHaveLength(
      1,
    );
  });

  it('says plainly when there is no receipt or no such tenant', async () => {
    const none = await runCli(['receipt', 'nobody@example.com', '--tenant', 'acme'], env);
    expect(none.code).toBe(65);
    expect(none.stderr).toBe('idsync: no user nobody@example.com in this tenant\n');
    const tenant = await runCli(['plan', '--tenant', 'missing'], env);
    expect(tenant.stderr).toBe('idsync: no tenant named "missing"\n');
  });
});
