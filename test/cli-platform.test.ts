import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { SecretBox } from '../src/security/secret-box.js';
import { createTenant } from '../src/tenants/tenants.js';
import { runCli } from './support/cli.js';
import { createTestDatabase } from './support/database.js';
import { HerokuSimulator } from './support/heroku-simulator.js';

describe('idsync platform set|check|budget against the Heroku simulator', async () => {
  const simulator = new HerokuSimulator();
  await simulator.start();
  simulator.addEnterpriseMember('ada@example.com');
  simulator.addTeam('core', [['ada@example.com', 'admin']]);
  simulator.addTeam('web', [['ada@example.com', 'admin']]);
  const database = await createTestDatabase();
  await createTenant(database.db, 'acme', 'test');
  afterAll(() => simulator.stop());
  const env = {
    DATABASE_URL: database.url,
    REDIS_URL: inject('redisUrl'),
    IDSYNC_QUEUE_PREFIX: `cli-platform-${randomBytes(3).toString('hex')}`,
    HEROKU_TEST_TOKEN: simulator.token,
  };

  it('stores the token as a variable name, checks it, remembers the account and shows the budget', async () => {
    const set = await runCli(
      [
        'platform',
        'set',
        'heroku',
        '--tenant',
        'acme',
        '--enterprise-account',
        'acme',
        '--api-url',
        simulator.url,
        '--token-env',
        'HEROKU_TEST_TOKEN',
      ],
      env,
    );
    expect(set.stderr).toBe('');
    expect(set.stdout).toContain('now manages the heroku platform');
    const [tenant] =
      await database.sql`SELECT connector, connector_settings FROM tenants WHERE name = 'acme'`;
    expect(tenant!.connector_settings).toMatchObject({ token: { env: 'HEROKU_TEST_TOKEN' } });
    expect(JSON.stringify(tenant)).not.toContain(simulator.token);

    const check = await runCli(['platform', 'check', '--tenant', 'acme'], env);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(`token OK: ${simulator.account.email} (${simulator.account.id})`);
    expect(check.stdout).toContain('members: 1');
    expect(check.stdout).toMatch(
      /teams \(2\): (core \(admin\), web \(admin\)|web \(admin\), core \(admin\))/,
    );
    expect(check.stdout).not.toContain('WARNING');
    const [after] =
      await database.sql`SELECT connector_settings->>'budgetKey' AS key FROM tenants WHERE name = 'acme'`;
    expect(after!.key).toBe(simulator.account.id);

    const budget = await runCli(['platform', 'budget', '--tenant', 'acme'], env);
    expect(budget.code).toBe(0);
    expect(budget.stdout).toMatch(/remaining: 449\d of 449\d, refilling 75\/min \(Heroku said so at /);
    expect(budget.stdout).toContain('queued: 0 deprovisions');
  }, 60_000);

  it('says plainly when the token is refused or missing, and refuses an unknown connector', async () => {
    const refused = await runCli(['platform', 'check', '--tenant', 'acme'], {
      ...env,
      HEROKU_TEST_TOKEN: 'wrong',
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('401 Invalid credentials provided.');
    const missing = await runCli(['platform', 'check', '--tenant', 'acme'], {
      ...env,
      HEROKU_TEST_TOKEN: '',
    });
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain('HEROKU_TEST_TOKEN is not set');
    const unknown = await runCli(['platform', 'set', 'salesforce', '--tenant', 'acme'], env);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain('unknown connector salesforce');
  }, 60_000);
});

describe('sealed platform tokens', () => {
  it('open with the same key only, and a tampered one does not open', () => {
    const box = SecretBox.fromConfig({ secretKey: 'k'.repeat(40), dataDir: '/nonexistent' });
    const sealed = box.seal('HRKU-secret');
    expect(sealed).not.toContain('HRKU');
    expect(box.open(sealed)).toBe('HRKU-secret');
    expect(() =>
      SecretBox.fromConfig({ secretKey: 'x'.repeat(40), dataDir: '/nonexistent' }).open(sealed),
    ).toThrow();
    const [v, iv, tag, data] = sealed.split('.');
    expect(() => box.open([v, iv, tag, `${data!.slice(0, -2)}AA`].join('.'))).toThrow();
  });

  it('refuse to use a per-machine key file with a shared database', () => {
    expect(() =>
      SecretBox.fromConfig({ secretKey: undefined, dataDir: '/tmp', databaseUrl: 'postgres://db/idsync' }),
    ).toThrow(/IDSYNC_SECRET_KEY/);
  });
});
