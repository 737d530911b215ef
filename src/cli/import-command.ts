import { type FileHandle, open } from 'node:fs/promises';
import type { Command } from 'commander';
import { DomainError, invalid } from '../errors.js';
import { readImportFile } from '../import/csv-rows.js';
import { type ImportReport, importAssignments, type PlannedRow } from '../import/importer.js';
import { findTenantByName } from '../tenants/tenants.js';
import { CliError, EXIT, withDatabase } from './context.js';
import { startProgress } from './progress.js';

interface ImportCommandOptions {
  tenant: string;
  dryRun?: boolean;
  skipInvalid?: boolean;
  replace?: boolean;
  show: string;
  json?: boolean;
}

/** `idsync import <file.csv>`: assignments from a CSV file (see the README for its columns). */
export function registerImportCommand(program: Command): void {
  program
    .command('import <file>')
    .description(
      'import access from a CSV file: account, and team + role or app + permissions per row (see the README)',
    )
    .requiredOption('--tenant <name>', 'tenant')
    .option('--dry-run', 'check the file and print the plan; change nothing')
    .option('--skip-invalid', 'apply the valid rows of a file that has invalid ones (default: apply nothing)')
    .option('--replace', 'also remove access granted by earlier imports that this file does not name')
    .option('--show <n>', 'rows of each operation to print', '10')
    .option('--json', 'print the report as JSON')
    .action((file: string, options: ImportCommandOptions) =>
      withDatabase(async ({ db }) => {
        const show = Number(options.show);
        if (!Number.isInteger(show) || show < 0) throw invalid('--show takes a whole number');
        const input = await openReadable(file);
        const tenant = await findTenantByName(db, options.tenant).catch(async (error) => {
          await input.handle.close();
          throw error;
        });
        const progress = startProgress({ label: 'import', total: input.size });
        const parsed = await readImportFile(input.handle.createReadStream(), (bytes) =>
          progress.advance(bytes),
        );
        const report = await importAssignments(db, tenant.id, parsed, {
          dryRun: options.dryRun ?? false,
          skipInvalid: options.skipInvalid ?? false,
          replace: options.replace ?? false,
          actor: 'cli',
          sampleSize: show,
          onStep: (step) => progress.advance(0, step),
        }).catch((error: unknown) => {
          // Another import of this tenant holds its lock: nothing changed, try again (75, EX_TEMPFAIL).
          if (error instanceof DomainError && error.reason === 'importInProgress')
            throw new CliError(error.message, EXIT.inUse);
          throw error;
        });
        progress.finish();
        process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : describeReport(report));
        // Scripts tell "applied" from "refused, nothing changed" by the exit code (65: the data).
        if (report.fileError || (!report.applied && report.errorCount > 0 && !options.skipInvalid))
          throw new CliError(
            report.fileError
              ? `line ${report.fileError.line}: ${report.fileError.reason}`
              : `${report.errorCount} invalid rows; nothing was applied${report.dryRun ? ' (dry run)' : ' (fix them, or pass --skip-invalid)'}`,
            EXIT.dataError,
          );
      }),
    );
}

export function describeReport(report: ImportReport): string {
  const lines: string[] = [];
  if (report.fileError) {
    lines.push(`line ${report.fileError.line}: ${report.fileError.reason}`);
    return `${lines.join('\n')}\n`;
  }
  const verdict = report.dryRun
    ? 'dry run: nothing was changed'
    : report.applied
      ? `applied: ${report.queuedUsers} users queued for reconcile${report.heldUsers > 0 ? `, ${report.heldUsers} users' removals held by the mass-change brake (idsync approve import:${report.importId})` : ''}`
      : 'nothing was applied';
  lines.push(
    `import ${report.importId}: ${report.records} rows, ${report.valid} valid, ${report.errorCount} invalid; ${verdict}`,
  );
  for (const error of report.errors) lines.push(`  line ${error.line}: ${error.reason}`);
  if (report.errorCount > report.errors.length)
    lines.push(
      `  … and ${report.errorCount - report.errors.length} more invalid rows (only the first ${report.errors.length} are listed)`,
    );
  lines.push('plan:');
  for (const { operation, count, sample } of report.plan) {
    if (count === 0) continue;
    lines.push(`  ${operation}: ${count}`);
    for (const row of sample) lines.push(`    ${describeRow(row)}`);
    if (count > sample.length && sample.length > 0) lines.push(`    … and ${count - sample.length} more`);
  }
  return `${lines.join('\n')}\n`;
}

function describeRow(row: PlannedRow): string {
  const where = row.team ? `team ${row.team}` : row.app ? `app ${row.app}` : '';
  const change = row.from && row.to ? `${row.from} → ${row.to}` : (row.to ?? row.from ?? '');
  return [row.line === null ? '(not in file)' : `line ${row.line}`, row.account, where, change]
    .filter(Boolean)
    .join('  ');
}

/** The file to import, opened: one that cannot be opened or is a directory exits 65, as documented. */
async function openReadable(file: string): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(file, 'r');
    const stats = await handle.stat();
    if (stats.isDirectory()) throw new Error('a directory');
    return { handle, size: stats.size };
  } catch {
    await handle?.close();
    throw new CliError(`cannot read ${file}`, EXIT.dataError);
  }
}
