import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DomainError } from '../src/errors.js';
import { MAX_REPORTED_ERRORS, readImportFile } from '../src/import/csv-rows.js';
import { type ImportOptions, type ImportReport, importAssignments } from '../src/import/importer.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';

const fileOf = (text: string) => Readable.from([Buffer.from(text, 'utf8')]);
const options = (extra: Partial<ImportOptions> = {}): ImportOptions => ({
  dryRun: false,
  skipInvalid: false,
  replace: false,
  actor: 'test',
  ...extra,
});

describe('import limits', async () => {
  const database = await createTestDatabase();
  const { db, sql } = database;
  const run = async (tenantId: string, csv: string, extra: Partial<ImportOptions> = {}) =>
    importAssignments(db, tenantId, await readImportFile(fileOf(csv)), options(extra));

  it('keeps at most 1,000 errors, with the total count, from parsing and from the database checks', async () => {
    const bad = Array.from({ length: 1_500 }, (_, i) => `user${i}@example.com,core,chief`).join('\n');
    const parsed = await readImportFile(fileOf(`account,team,role\n${bad}\n`));
    expect(parsed.errors).toHaveLength(MAX_REPORTED_ERRORS);
    expect(parsed.errorCount).toBe(1_500);
    expect(parsed.errors[0]).toEqual({
      line: 2,
      reason: 'unknown role "chief"; roles are admin, member, viewer',
    });

    const { tenant } = await createTenant(db, 'many-errors', 'test');
    await sql`INSERT INTO users (tenant_id, user_name, origin, active)
      SELECT ${tenant.id}, 'off' || n || '@example.com', 'scim', false FROM generate_series(1, 1200) n`;
    const deactivated = Array.from({ length: 1_200 }, (_, i) => `off${i + 1}@example.com,core,member`);
    const report = await run(
      tenant.id,
      `account,team,role\n${deactivated.join('\n')}\nok@example.com,core,chief\n`,
    );
    expect(report.errorCount).toBe(1_201);
    expect(report.errors).toHaveLength(MAX_REPORTED_ERRORS);
    expect(report.errors[0]!.line).toBe(2);
    expect(report.applied).toBe(false);
  });

  it('refuses a file over the row cap with a precise too_large error', async () => {
    const rows = Array.from({ length: 6 }, (_, i) => `user${i}@example.com,core,member`).join('\n');
    const refusal = await readImportFile(fileOf(`account,team,role\n${rows}\n`), undefined, 5).catch(
      (e) => e,
    );
    // On a mismatch, say what came back instead (seen once in a full run: an error that was not a DomainError).
    expect(refusal, String(refusal)).toBeInstanceOf(DomainError);
    expect(refusal).toMatchObject({
      kind: 'too_large',
      message:
        'an import file may have at most 5 data rows and line 7 is past them; split the file into several',
    });
  });

  it('runs one import per tenant at a time: a second one at once is refused with a conflict', async () => {
    const { tenant } = await createTenant(db, 'one-at-a-time', 'test');
    const first = await readImportFile(fileOf('account,team,role\nada@example.com,core,member\n'));
    const second = await readImportFile(fileOf('account,team,role\nbob@example.com,core,member\n'));
    let concurrent: Promise<ImportReport | unknown> | undefined;
    const report = await importAssignments(db, tenant.id, first, {
      ...options({ replace: true }),
      // Started while the first holds its transaction open, which waits until the second has its
      // answer: the two overlap for certain, however slow the machine.
      onStep: async (step) => {
        if (step !== 'planning') return;
        concurrent = importAssignments(db, tenant.id, second, options({ replace: true })).catch(
          (e: unknown) => e,
        );
        await concurrent;
      },
    });
    expect(report.applied).toBe(true);
    const refusal = (await concurrent) as DomainError;
    // On a mismatch, say what came back instead (seen once in a full run: an error that was not a DomainError).
    expect(refusal, String(refusal)).toBeInstanceOf(DomainError);
    expect(refusal).toMatchObject({ kind: 'conflict', reason: 'importInProgress' });
    expect(refusal.message).toContain('another import for this tenant is in progress');
    const held = await sql`SELECT u.user_name FROM assignments a JOIN users u ON u.id = a.user_id
      WHERE a.tenant_id = ${tenant.id}`;
    expect(held.map((r) => r.user_name)).toEqual(['ada@example.com']);
  });

  it('--replace spares every imported assignment of an account whose refused row names only the account', async () => {
    const { tenant } = await createTenant(db, 'refused-account', 'test');
    await run(
      tenant.id,
      'account,team,role,app,permissions\nada@example.com,core,admin,,\nada@example.com,,,api,view\n',
    );
    // Ada's row has an unreadable team cell (empty): it is refused and names only her account.
    const report = await run(
      tenant.id,
      'account,team,role\nada@example.com,,member\nbob@example.com,core,member\n',
      {
        replace: true,
        skipInvalid: true,
      },
    );
    expect(report.applied).toBe(true);
    expect(report.errorCount).toBe(1);
    const left =
      await sql`SELECT u.user_name, a.team_name, a.app_name FROM assignments a JOIN users u ON u.id = a.user_id
      WHERE a.tenant_id = ${tenant.id} ORDER BY u.user_name, a.team_name NULLS LAST`;
    expect(left).toEqual([
      { user_name: 'ada@example.com', team_name: 'core', app_name: null },
      { user_name: 'ada@example.com', team_name: null, app_name: 'api' },
      { user_name: 'bob@example.com', team_name: 'core', app_name: null },
    ]);
  });

  it('downgrading many people (role or permissions) passes the mass-change brake like removals do', async () => {
    const { tenant } = await createTenant(db, 'downgrades', 'test');
    const accounts = Array.from({ length: 6 }, (_, i) => `lead${i}@example.com`);
    await run(tenant.id, `account,team,role\n${accounts.map((a) => `${a},core,admin`).join('\n')}\n`);
    for (const account of accounts)
      await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions) VALUES (${tenant.id}, ${account}, '{view}')`;
    const report = await run(
      tenant.id,
      `account,team,role\n${accounts.map((a) => `${a},core,viewer`).join('\n')}\n`,
    );
    expect(report.applied).toBe(true);
    expect(report.heldUsers).toBe(6);
    const [held] =
      await sql`SELECT id, event, affected_users FROM held_changes WHERE tenant_id = ${tenant.id}`;
    expect(held).toEqual({ id: `import:${report.importId}`, event: 'import.downgraded', affected_users: 6 });
    // An upgrade is no loss: never held.
    const upgrade = await run(
      tenant.id,
      `account,team,role\n${accounts.map((a) => `${a},core,admin`).join('\n')}\n`,
    );
    expect(upgrade.heldUsers).toBe(0);
  });
});
