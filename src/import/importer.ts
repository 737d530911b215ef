import { randomUUID } from 'node:crypto';
import { type SQL, sql } from 'drizzle-orm';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { conflict, DomainError } from '../errors.js';
import { recordForReconcileEach } from '../jobs/outbox.js';
import { brakeChange } from '../reconcile/brake.js';
import {
  type ImportRow,
  MAX_REPORTED_ERRORS,
  type ParsedFile,
  type RefusedRow,
  type RowError,
} from './csv-rows.js';

/*
 * An import turns the rows of a file into assignments (source `import`) that the reconciler's desired
 * state adds to what the rules give. Everything past parsing is set-based SQL over a temporary table the
 * rows are copied into in batches (unnest of arrays, never a statement per row): the checks that need
 * the database, the plan, and the writes, all in one transaction. Only changed assignments are written
 * and only their users are queued, so importing the same file twice changes nothing the second time.
 */

export interface ImportOptions {
  dryRun: boolean;
  /** Apply the valid rows of a file that has invalid ones (else nothing of such a file is applied). */
  skipInvalid: boolean;
  /** Remove import-granted access the file does not name (never what rules, SCIM or SAML grant). */
  replace: boolean;
  actor: string;
  /** How many rows of each operation the report shows. */
  sampleSize?: number;
  /**
   * Told each step as it starts, inside the import's transaction (its lock held); the import waits for
   * what it returns, so a caller can act while the import is at that step.
   */
  onStep?: (step: string) => void | Promise<void>;
}

export const IMPORT_OPERATIONS = [
  'create-user',
  'add-team-role',
  'change-team-role',
  'add-app-access',
  'change-app-access',
  'remove-team-role',
  'remove-app-access',
  'unchanged',
] as const;
export type ImportOperation = (typeof IMPORT_OPERATIONS)[number];

export interface PlannedRow {
  /** The file's line (null for a removal: the access is not in the file). */
  line: number | null;
  account: string;
  team?: string;
  app?: string;
  /** The role or permissions before, when the assignment existed. */
  from?: string;
  to?: string;
}

export interface ImportReport {
  importId: string;
  dryRun: boolean;
  applied: boolean;
  /** Data records in the file; rows valid and applied (or, in a dry run, that would be). */
  records: number;
  valid: number;
  /** The first MAX_REPORTED_ERRORS refused rows, by line. */
  errors: RowError[];
  /** Every refused row, reported or not. */
  errorCount: number;
  fileError?: RowError;
  plan: { operation: ImportOperation; count: number; sample: PlannedRow[] }[];
  /** Users queued for a reconcile through the outbox. */
  queuedUsers: number;
  /** Users whose removals the mass-change brake holds (`idsync approve import:<id>`). */
  heldUsers: number;
}

const BATCH = 10_000;

export async function importAssignments(
  db: Database,
  tenantId: string,
  file: ParsedFile,
  options: ImportOptions,
): Promise<ImportReport> {
  const importId = randomUUID();
  const report: ImportReport = {
    importId,
    dryRun: options.dryRun,
    applied: false,
    records: file.records,
    valid: 0,
    errors: [...file.errors],
    errorCount: file.errorCount,
    plan: [],
    queuedUsers: 0,
    heldUsers: 0,
  };
  if (file.fileError) return { ...report, fileError: file.fileError, errors: [], errorCount: 0 };
  const step = options.onStep ?? (() => {});

  return db.transaction(async (tx) => {
    // One import per tenant at a time: two `--replace` imports at once would each remove what the
    // other adds. Held to the end of the transaction; a second import is refused, not queued.
    const [lock] = await tx.execute<{ locked: boolean }>(
      sql`SELECT pg_try_advisory_xact_lock(hashtextextended(${`import:${tenantId}`}, 0)) AS locked`,
    );
    if (!lock?.locked)
      throw conflict(
        'another import for this tenant is in progress; try again when it has finished',
        'importInProgress',
      );
    await step('staging rows');
    await stageRows(tx, tenantId, file);
    await step('checking accounts, teams and apps');
    const checked = await databaseChecks(tx, tenantId);
    // Both lists are sorted and capped: the first MAX_REPORTED_ERRORS of their union are among them.
    report.errors = [...report.errors, ...checked.errors]
      .sort((a, b) => a.line - b.line)
      .slice(0, MAX_REPORTED_ERRORS);
    report.errorCount += checked.count;
    const [{ valid } = { valid: 0 }] = await tx.execute<{ valid: number }>(
      sql`SELECT count(*)::int AS valid FROM import_rows WHERE NOT refused`,
    );
    report.valid = valid;
    await step('planning');
    report.plan = await planImport(tx, tenantId, options);
    const apply = !options.dryRun && (report.errorCount === 0 || options.skipInvalid);
    if (!apply) return report;
    await step('applying');
    const { queued, held } = await applyImport(tx, tenantId, importId, options);
    report.applied = true;
    report.queuedUsers = queued;
    report.heldUsers = held;
    await recordAudit(tx, {
      tenantId,
      actor: options.actor,
      action: 'import.applied',
      subjectType: 'tenant',
      subjectId: tenantId,
      after: {
        importId,
        records: report.records,
        valid: report.valid,
        skipped: report.errorCount,
        replace: options.replace,
        counts: Object.fromEntries(report.plan.map((p) => [p.operation, p.count])),
        queuedUsers: queued,
      },
      correlationId: `import:${importId}`,
    });
    return report;
  });
}

type Tx = Pick<Database, 'execute' | 'insert'>;

/**
 * Copies the rows into a temporary table, BATCH rows per statement. Rows refused while parsing come
 * along (marked refused) when their account and team or app could be read: `--replace` must spare the
 * access they name.
 */
async function stageRows(tx: Tx, tenantId: string, file: ParsedFile) {
  await tx.execute(sql`
    CREATE TEMP TABLE import_rows (
      line int PRIMARY KEY, account text NOT NULL, account_key text NOT NULL, user_id uuid,
      team text, role team_role, app text, permissions app_permission[], refused boolean NOT NULL
    ) ON COMMIT DROP`);
  await tx.execute(sql`CREATE TEMP TABLE import_changed (user_id uuid NOT NULL) ON COMMIT DROP`);
  const staged: (ImportRow | RefusedRow)[] = [...file.rows, ...file.refused];
  for (let start = 0; start < staged.length; start += BATCH) {
    const batch = staged.slice(start, start + BATCH);
    const role = (r: ImportRow | RefusedRow) => ('role' in r ? r.role : null);
    const permissions = (r: ImportRow | RefusedRow) =>
      'permissions' in r ? `{${r.permissions.join(',')}}` : null;
    await tx.execute(sql`
      INSERT INTO import_rows (line, account, account_key, team, role, app, permissions, refused)
      SELECT r.line, r.account, account_key(r.account), r.team, r.role::team_role, r.app,
        r.permissions::app_permission[], r.refused::boolean
      FROM unnest(${sql.param(batch.map((r) => r.line))}::int[], ${sql.param(batch.map((r) => r.account))}::text[],
        ${sql.param(batch.map((r) => r.team ?? null))}::text[], ${sql.param(batch.map(role))}::text[],
        ${sql.param(batch.map((r) => r.app ?? null))}::text[], ${sql.param(batch.map(permissions))}::text[],
        ${sql.param(batch.map((r) => ('refused' in r ? 't' : 'f')))}::text[])
        AS r(line, account, team, role, app, permissions, refused)`);
  }
  await tx.execute(sql`
    UPDATE import_rows r SET user_id = u.id FROM users u
    WHERE u.tenant_id = ${tenantId} AND u.user_name_key = r.account_key AND u.deprovisioned_at IS NULL`);
  await tx.execute(sql`CREATE INDEX ON import_rows (account_key)`);
  await tx.execute(sql`CREATE INDEX ON import_rows (user_id)`);
  await tx.execute(sql`ANALYZE import_rows`);
}

/**
 * The checks a row cannot make alone, each a set query naming lines: the same account and team (or app)
 * twice with different values, an account the IdP deactivated or deleted, and a team or app the
 * platform does not have (once idsync knows the platform's teams or apps at all: a first load on an
 * empty platform may name new ones).
 */
async function databaseChecks(tx: Tx, tenantId: string): Promise<{ errors: RowError[]; count: number }> {
  const refused = await tx.execute<{ line: number; reason: string; total: number }>(sql`
    WITH duplicates AS (
      SELECT line, first_value(line) OVER w AS first_line,
        min(coalesce(role::text, permissions::text)) OVER p <> max(coalesce(role::text, permissions::text)) OVER p AS conflicting
      FROM import_rows WHERE NOT refused
      WINDOW p AS (PARTITION BY account_key, team, app), w AS (p ORDER BY line)
    ),
    refused AS (
      SELECT d.line, 'conflicts with line ' || d.first_line || ' (the same account and '
        || CASE WHEN r.team IS NOT NULL THEN 'team ' || r.team ELSE 'app ' || r.app END || ' with another '
        || CASE WHEN r.team IS NOT NULL THEN 'role' ELSE 'permissions' END || ')' AS reason
      FROM duplicates d JOIN import_rows r USING (line) WHERE d.conflicting AND d.line <> d.first_line
      UNION ALL
      SELECT r.line, 'account ' || r.account || ' is deactivated in the identity provider; an import grants it nothing'
      FROM import_rows r JOIN users u ON u.id = r.user_id WHERE NOT r.refused AND NOT u.active
      UNION ALL
      SELECT r.line, 'account ' || r.account || ' was deleted by the identity provider; an import does not re-create it'
      FROM import_rows r WHERE NOT r.refused AND r.user_id IS NULL AND EXISTS (
        SELECT 1 FROM users u WHERE u.tenant_id = ${tenantId} AND u.user_name_key = r.account_key)
      UNION ALL
      SELECT r.line, 'unknown team ' || r.team || ' (not among the platform''s teams idsync knows; run a drift scan if it is new)'
      FROM import_rows r WHERE NOT r.refused AND r.team IS NOT NULL
        AND EXISTS (SELECT 1 FROM teams WHERE tenant_id = ${tenantId})
        AND NOT EXISTS (SELECT 1 FROM teams t WHERE t.tenant_id = ${tenantId} AND t.name = r.team)
      UNION ALL
      SELECT r.line, 'unknown app ' || r.app || ' (not among the platform''s apps idsync knows; run a drift scan if it is new)'
      FROM import_rows r WHERE NOT r.refused AND r.app IS NOT NULL
        AND EXISTS (SELECT 1 FROM apps WHERE tenant_id = ${tenantId})
        AND NOT EXISTS (SELECT 1 FROM apps a WHERE a.tenant_id = ${tenantId} AND a.name = r.app)
    ),
    first_reason AS (SELECT DISTINCT ON (line) line, reason FROM refused ORDER BY line),
    marked AS (
      UPDATE import_rows r SET refused = true FROM first_reason f WHERE r.line = f.line RETURNING r.line
    )
    SELECT line, reason, (SELECT count(*)::int FROM marked) AS total FROM first_reason
    ORDER BY line LIMIT ${MAX_REPORTED_ERRORS}`);
  // A row repeated with the same values is harmless: only its first line is kept.
  await tx.execute(sql`
    DELETE FROM import_rows r USING import_rows earlier
    WHERE earlier.account_key = r.account_key AND earlier.line < r.line
      AND earlier.team IS NOT DISTINCT FROM r.team AND earlier.app IS NOT DISTINCT FROM r.app
      AND NOT r.refused AND NOT earlier.refused`);
  return { errors: refused.map((r) => ({ line: r.line, reason: r.reason })), count: refused[0]?.total ?? 0 };
}

/** The tenant's import assignments compared with the staged rows: one row per planned operation. */
function plannedOperations(tenantId: string, replace: boolean): SQL {
  return sql`
    SELECT 'create-user' AS operation, min(r.line) AS line, min(r.account) AS account,
      NULL AS team, NULL AS app, NULL AS from_value, NULL AS to_value
    FROM import_rows r WHERE r.user_id IS NULL AND NOT r.refused GROUP BY r.account_key
    UNION ALL
    SELECT CASE WHEN a.user_id IS NULL THEN 'add-team-role' WHEN a.team_role = r.role THEN 'unchanged' ELSE 'change-team-role' END,
      r.line, r.account, r.team, NULL, a.team_role::text, r.role::text
    FROM import_rows r LEFT JOIN assignments a
      ON a.user_id = r.user_id AND a.source = 'import' AND a.team_name = r.team
    WHERE r.team IS NOT NULL AND NOT r.refused
    UNION ALL
    SELECT CASE WHEN a.user_id IS NULL THEN 'add-app-access' WHEN a.app_permissions = r.permissions THEN 'unchanged' ELSE 'change-app-access' END,
      r.line, r.account, NULL, r.app, array_to_string(a.app_permissions, ','), array_to_string(r.permissions, ',')
    FROM import_rows r LEFT JOIN assignments a
      ON a.user_id = r.user_id AND a.source = 'import' AND a.app_name = r.app
    WHERE r.app IS NOT NULL AND NOT r.refused
    ${
      replace
        ? sql`UNION ALL
    SELECT CASE WHEN a.team_name IS NOT NULL THEN 'remove-team-role' ELSE 'remove-app-access' END,
      NULL, u.user_name, a.team_name, a.app_name,
      coalesce(a.team_role::text, array_to_string(a.app_permissions, ',')), NULL
    FROM assignments a JOIN users u ON u.id = a.user_id
    WHERE ${notInFile(tenantId)}`
        : sql``
    }`;
}

/**
 * Import assignments of the tenant that no row of the file names (valid or not: a row refused for a
 * typo in its role must not cost the account the access it already has). A refused row whose team and
 * app could not be read names only its account: it spares all of that account's imported access.
 */
function notInFile(tenantId: string): SQL {
  return sql`a.tenant_id = ${tenantId} AND a.source = 'import' AND NOT EXISTS (
      SELECT 1 FROM import_rows f WHERE f.user_id = a.user_id
        AND (f.team = a.team_name OR f.app = a.app_name
          OR (f.refused AND f.team IS NULL AND f.app IS NULL)))`;
}

async function planImport(tx: Tx, tenantId: string, options: ImportOptions) {
  const sample = options.sampleSize ?? 10;
  const rows = await tx.execute<{
    operation: ImportOperation;
    count: number;
    line: number | null;
    account: string;
    team: string | null;
    app: string | null;
    from_value: string | null;
    to_value: string | null;
  }>(sql`
    WITH planned AS (${plannedOperations(tenantId, options.replace)}),
    numbered AS (
      SELECT *, count(*) OVER (PARTITION BY operation)::int AS count,
        row_number() OVER (PARTITION BY operation ORDER BY line NULLS LAST, account, team, app) AS n
      FROM planned
    )
    SELECT operation, count, line, account, team, app, from_value, to_value FROM numbered
    WHERE n <= ${sample} ORDER BY operation, n`);
  const byOperation = new Map<ImportOperation, { count: number; sample: PlannedRow[] }>();
  for (const r of rows) {
    const entry = byOperation.get(r.operation) ?? { count: r.count, sample: [] };
    entry.sample.push({
      line: r.line,
      account: r.account,
      ...(r.team ? { team: r.team } : {}),
      ...(r.app ? { app: r.app } : {}),
      ...(r.from_value ? { from: r.from_value } : {}),
      ...(r.to_value ? { to: r.to_value } : {}),
    });
    byOperation.set(r.operation, entry);
  }
  return IMPORT_OPERATIONS.map((operation) => ({
    operation,
    count: byOperation.get(operation)?.count ?? 0,
    sample: byOperation.get(operation)?.sample ?? [],
  }));
}

async function applyImport(
  tx: Tx,
  tenantId: string,
  importId: string,
  options: ImportOptions,
): Promise<{ queued: number; held: number }> {
  // Accounts no user has yet: created as imported users so the reconciler can act on them (a
  // platform that has no account for them yet waits for their first sign-in, as for any new user).
  await tx.execute(sql`
    INSERT INTO users (tenant_id, user_name, origin, attributes)
    SELECT DISTINCT ON (r.account_key) ${tenantId}, r.account, 'csv',
      jsonb_build_object('emails', jsonb_build_array(jsonb_build_object('value', r.account, 'primary', true)))
    FROM import_rows r WHERE r.user_id IS NULL AND NOT r.refused ORDER BY r.account_key, r.line
    ON CONFLICT (tenant_id, user_name_key) WHERE deprovisioned_at IS NULL DO NOTHING`);
  await tx.execute(sql`
    UPDATE import_rows r SET user_id = u.id FROM users u
    WHERE r.user_id IS NULL AND NOT r.refused AND u.tenant_id = ${tenantId} AND u.user_name_key = r.account_key
      AND u.deprovisioned_at IS NULL`);
  // Before the writes: whose role (admin > member > viewer, the enum's order) or app permissions the
  // file lowers. Lowering many people's access at once is for the mass-change brake, like removals.
  await tx.execute(sql`CREATE TEMP TABLE import_downgraded (user_id uuid NOT NULL) ON COMMIT DROP`);
  await tx.execute(sql`
    INSERT INTO import_downgraded
    SELECT DISTINCT a.user_id FROM import_rows r JOIN assignments a ON a.user_id = r.user_id AND a.source = 'import'
    WHERE NOT r.refused AND ((a.team_name = r.team AND r.role > a.team_role)
      OR (a.app_name = r.app AND NOT r.permissions @> a.app_permissions))`);
  await tx.execute(sql`
    WITH changed AS (
      INSERT INTO assignments (tenant_id, user_id, source, team_name, team_role, line)
      SELECT ${tenantId}, r.user_id, 'import', r.team, r.role, r.line FROM import_rows r
      WHERE r.team IS NOT NULL AND NOT r.refused
      ON CONFLICT (user_id, source, team_name) WHERE team_name IS NOT NULL
      DO UPDATE SET team_role = EXCLUDED.team_role, line = EXCLUDED.line, updated_at = now()
      WHERE assignments.team_role IS DISTINCT FROM EXCLUDED.team_role
      RETURNING user_id
    )
    INSERT INTO import_changed SELECT user_id FROM changed`);
  await tx.execute(sql`
    WITH changed AS (
      INSERT INTO assignments (tenant_id, user_id, source, app_name, app_permissions, line)
      SELECT ${tenantId}, r.user_id, 'import', r.app, r.permissions, r.line FROM import_rows r
      WHERE r.app IS NOT NULL AND NOT r.refused
      ON CONFLICT (user_id, source, app_name) WHERE app_name IS NOT NULL
      DO UPDATE SET app_permissions = EXCLUDED.app_permissions, line = EXCLUDED.line, updated_at = now()
      WHERE assignments.app_permissions IS DISTINCT FROM EXCLUDED.app_permissions
      RETURNING user_id
    )
    INSERT INTO import_changed SELECT user_id FROM changed`);
  const changeId = `import:${importId}`;
  if (options.replace) {
    await tx.execute(sql`CREATE TEMP TABLE import_removed (user_id uuid NOT NULL) ON COMMIT DROP`);
    await tx.execute(sql`
      WITH removed AS (DELETE FROM assignments a WHERE ${notInFile(tenantId)} RETURNING a.user_id)
      INSERT INTO import_removed SELECT DISTINCT user_id FROM removed`);
    await tx.execute(sql`INSERT INTO import_changed SELECT user_id FROM import_removed`);
  }
  // Removing or lowering many people's access at once is what the mass-change brake is for.
  const held = await brakeChange(tx, {
    tenantId,
    changeId,
    event: options.replace ? 'import.replaced' : 'import.downgraded',
    affectedUsers: options.replace
      ? sql`SELECT ${tenantId}::uuid, user_id FROM import_removed UNION SELECT ${tenantId}::uuid, user_id FROM import_downgraded`
      : sql`SELECT ${tenantId}::uuid, user_id FROM import_downgraded`,
    downgradedUsers: sql`SELECT user_id FROM import_downgraded`,
  });
  const queued = await recordForReconcileEach(
    tx,
    {
      lane: 'reconcile',
      subjectType: 'user',
      cause: {
        event: 'import.applied',
        importId,
        source: 'import',
        actor: options.actor,
        at: new Date().toISOString(),
        correlationId: changeId,
      },
    },
    sql`SELECT DISTINCT ${tenantId}::uuid, user_id FROM import_changed`,
  );
  return { queued, held };
}

/**
 * The error an edge answers with when a file was not applied: a file that cannot be read, or invalid
 * rows without `skipInvalid` (the report, every refused row with its line, goes along as details).
 * A dry run is a report, never an error.
 */
export function importRefusal(report: ImportReport): DomainError | undefined {
  if (report.fileError) {
    return new DomainError(
      'invalid',
      `line ${report.fileError.line}: ${report.fileError.reason}`,
      'invalidFile',
      {
        fileError: report.fileError,
      },
    );
  }
  if (report.dryRun || report.applied || report.errorCount === 0) return undefined;
  return new DomainError(
    'invalid',
    `${report.errorCount} of ${report.records} rows are invalid (first: line ${report.errors[0]!.line}: ${report.errors[0]!.reason}); nothing was applied — fix them, or skip them with skipInvalid`,
    'invalidRows',
    report,
  );
}
