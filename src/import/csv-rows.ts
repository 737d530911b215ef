import { Readable } from 'node:stream';
import { parse } from 'csv-parse';
import { z } from 'zod';
import { DomainError } from '../errors.js';
import { textProblem } from '../http/hostile-input.js';
import {
  APP_PERMISSIONS,
  type AppPermission,
  canonical,
  TEAM_ROLES,
  type TeamRole,
} from '../reconcile/model.js';
import { appName, teamName } from '../reconcile/rules.js';

/*
 * Reading an import file: RFC 4180 CSV (csv-parse), UTF-8 with or without a byte-order mark, `,` or `;`
 * as the delimiter, decided from the header line (spreadsheets in locales with a decimal comma export
 * `;`). One record at a time, so the file is never held whole; every row is checked on its own here, and
 * what needs the database (accounts, known teams, duplicates) is checked by the importer in SQL.
 */

/** One valid row: an account's role in a team, or its permissions on an app. */
export type ImportRow =
  | { line: number; account: string; team: string; role: TeamRole; app?: undefined }
  | { line: number; account: string; app: string; permissions: AppPermission[]; team?: undefined };

export interface RowError {
  /** The file's line the record starts on (1 is the header). */
  line: number;
  reason: string;
}

/** What a refused row names, when its account could be read: `--replace` spares that access. */
export interface RefusedRow {
  line: number;
  account: string;
  team?: string;
  app?: string;
  refused: true;
}

/**
 * At most this many data rows in one file (about 12 MB of typical rows): every valid row is held until
 * the import's transaction, so the cap bounds the memory an upload can take. Larger loads are split.
 */
export const MAX_IMPORT_ROWS = 200_000;
/** Refused rows kept for the report (the first, by line); the rest are only counted. */
export const MAX_REPORTED_ERRORS = 1_000;

export interface ParsedFile {
  rows: ImportRow[];
  /** Rows refused on their own, by line: the first MAX_REPORTED_ERRORS. */
  errors: RowError[];
  /** How many rows were refused on their own, reported or not. */
  errorCount: number;
  refused: RefusedRow[];
  /** Set when the file as a whole cannot be read (header, syntax, encoding): nothing of it is used. */
  fileError?: RowError;
  /** Data records read (the header excluded). */
  records: number;
}

type Column = 'account' | 'team' | 'role' | 'app' | 'permissions';

/** Header names accepted for each column, compared without case, spaces, dashes or underscores. */
export const HEADER_ALIASES: Record<Column, readonly string[]> = {
  account: ['account', 'email', 'e-mail', 'mail', 'user', 'username', 'user_name', 'login'],
  team: ['team', 'team_name'],
  role: ['role', 'team_role'],
  app: ['app', 'app_name', 'application'],
  permissions: ['permissions', 'permission', 'app_permissions', 'perms'],
};

const headerKey = (name: string) => name.toLowerCase().replace(/[\s_-]+/g, '');
const COLUMN_OF_HEADER = new Map<string, Column>(
  (Object.entries(HEADER_ALIASES) as [Column, readonly string[]][]).flatMap(([column, names]) =>
    names.map((n) => [headerKey(n), column] as const),
  ),
);

const email = z.email();

/**
 * Reads an import file from a byte stream. Each record is checked as it arrives: the account must be
 * an e-mail address, and the row must name exactly one team (with a role) or one app (with
 * permissions). `onBytes` reports progress through the file.
 */
export async function readImportFile(
  input: AsyncIterable<Buffer | string>,
  onBytes?: (bytes: number) => void,
  maxRows = MAX_IMPORT_ROWS,
): Promise<ParsedFile> {
  const result: ParsedFile = { rows: [], errors: [], errorCount: 0, refused: [], records: 0 };
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let bytes = 0;
  let headerSeen = false;
  let delimiter = ',';
  const iterator = input[Symbol.asyncIterator]();
  let head = '';
  try {
    // The delimiter is decided from the header line, so read until its end before parsing anything.
    for (;;) {
      const next = await iterator.next();
      if (next.done) {
        head += decoder.decode();
        break;
      }
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      bytes += chunk.length;
      onBytes?.(chunk.length);
      head += decoder.decode(chunk, { stream: true });
      if (/[\r\n]/.test(head)) break;
    }
  } catch (error) {
    // TextDecoder's `fatal` refusal is a TypeError; anything else (a body too large) is the caller's.
    if (!(error instanceof TypeError)) throw error;
    return { ...result, fileError: { line: 1, reason: 'the file is not valid UTF-8' } };
  }
  delimiter = delimiterOf(head.replace(/^\uFEFF/, '').split(/\r?\n|\r/, 1)[0] ?? '');

  let decodingFailedAt: number | undefined;
  const text = Readable.from(
    (async function* () {
      yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) {
          yield decoder.decode();
          return;
        }
        const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
        try {
          const decoded = decoder.decode(chunk, { stream: true });
          bytes += chunk.length;
          onBytes?.(chunk.length);
          yield decoded;
        } catch (error) {
          decodingFailedAt = bytes;
          throw error;
        }
      }
    })(),
  );
  const parser = text.pipe(
    parse({
      delimiter,
      bom: true,
      info: true,
      relax_column_count: true,
      skip_empty_lines: true,
    }),
  );
  text.on('error', (error) => parser.destroy(error));

  let columns: (Column | undefined)[] = [];
  let lastLine = 0;
  let lastEmpty = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<{
      record: string[];
      info: { lines: number; empty_lines: number };
    }>) {
      // The line a record starts on: after the previous record and any empty lines between.
      const line = lastLine + 1 + (info.empty_lines - lastEmpty);
      lastLine = info.lines;
      lastEmpty = info.empty_lines;
      if (!headerSeen) {
        headerSeen = true;
        const header = readHeader(record);
        if ('reason' in header) return { ...result, fileError: { line, reason: header.reason } };
        columns = header.columns;
        continue;
      }
      result.records += 1;
      if (result.records > maxRows)
        throw new DomainError(
          'too_large',
          `an import file may have at most ${maxRows} data rows and line ${line} is past them; split the file into several`,
        );
      const checked = checkRecord(record, columns, line);
      if ('reason' in checked) {
        result.errorCount += 1;
        if (result.errors.length < MAX_REPORTED_ERRORS) result.errors.push(checked);
        const named = namedIn(record, columns, line);
        if (named) result.refused.push(named);
      } else result.rows.push(checked);
    }
  } catch (error) {
    if (error instanceof DomainError) throw error;
    if (decodingFailedAt !== undefined) {
      return {
        ...result,
        fileError: {
          line: lastLine + 1,
          reason: `the file is not valid UTF-8 (near byte ${decodingFailedAt})`,
        },
      };
    }
    const { message, lines } = error as { message?: string; lines?: number };
    return {
      ...result,
      fileError: { line: lines ?? lastLine + 1, reason: `not valid CSV: ${message ?? String(error)}` },
    };
  }
  if (!headerSeen) return { ...result, fileError: { line: 1, reason: 'the file is empty (no header line)' } };
  return result;
}

/** `;` when the header line has more unquoted semicolons than commas, else `,`. */
export function delimiterOf(headerLine: string): ',' | ';' {
  let commas = 0;
  let semicolons = 0;
  let quoted = false;
  for (const char of headerLine) {
    if (char === '"') quoted = !quoted;
    else if (!quoted && char === ',') commas += 1;
    else if (!quoted && char === ';') semicolons += 1;
  }
  return semicolons > commas ? ';' : ',';
}

function readHeader(record: string[]): { columns: (Column | undefined)[] } | { reason: string } {
  const columns: (Column | undefined)[] = [];
  const seen = new Set<Column>();
  for (const raw of record) {
    const name = raw.trim();
    // A trailing delimiter (common in spreadsheet exports) leaves an unnamed, ignored column.
    if (name === '') {
      columns.push(undefined);
      continue;
    }
    const column = COLUMN_OF_HEADER.get(headerKey(name));
    if (!column) {
      return {
        reason: `unknown column "${name.slice(0, 60)}"; columns are ${Object.entries(HEADER_ALIASES)
          .map(([c, names]) => `${c} (or ${names.filter((n) => n !== c).join(', ')})`)
          .join('; ')}`,
      };
    }
    if (seen.has(column)) return { reason: `the column ${column} appears twice in the header` };
    seen.add(column);
    columns.push(column);
  }
  if (!seen.has('account')) return { reason: 'the header has no account column (account or email)' };
  const teams = seen.has('team') && seen.has('role');
  const apps = seen.has('app') && seen.has('permissions');
  if (!teams && !apps)
    return { reason: 'the header needs team and role columns, or app and permissions columns, or all four' };
  return { columns };
}

function namedIn(
  record: readonly string[],
  columns: readonly (Column | undefined)[],
  line: number,
): RefusedRow | undefined {
  const field = (column: Column) => {
    const index = columns.indexOf(column);
    const value = index >= 0 ? record[index]?.trim().toLowerCase() : undefined;
    return value && !textProblem(value) ? value.slice(0, 200) : undefined;
  };
  const account = field('account');
  if (!account) return undefined;
  const team = field('team');
  const app = field('app');
  return { line, account, ...(team ? { team } : {}), ...(app ? { app } : {}), refused: true };
}

/** One record against the header: a valid row, or the reason it is refused. */
export function checkRecord(
  record: readonly string[],
  columns: readonly (Column | undefined)[],
  line: number,
): ImportRow | RowError {
  const refuse = (reason: string): RowError => ({ line, reason });
  if (record.length > columns.length)
    return refuse(`has ${record.length} fields, the header has ${columns.length}`);
  const value: Partial<Record<Column, string>> = {};
  for (let i = 0; i < record.length; i++) {
    const column = columns[i];
    const field = record[i]!.trim();
    if (!column) {
      if (field !== '') return refuse(`has a value in the unnamed column ${i + 1}`);
      continue;
    }
    const problem = textProblem(field);
    if (problem) return refuse(`${column} ${problem}`);
    if (field !== '') value[column] = field;
  }
  const account = value.account;
  if (!account) return refuse('account is empty');
  if (account.length > 254 || !email.safeParse(account).success)
    return refuse(`account "${account.slice(0, 80)}" is not an e-mail address`);
  if (value.team && value.app) return refuse('gives both a team and an app; a row grants one of them');
  if (value.team) {
    if (value.permissions) return refuse('permissions go with an app, not a team (a team takes a role)');
    const team = teamName.safeParse(value.team);
    if (!team.success) return refuse(`team "${value.team.slice(0, 80)}": ${team.error.issues[0]!.message}`);
    const role = value.role?.toLowerCase();
    if (!role) return refuse(`no role for team ${team.data}; roles are ${TEAM_ROLES.join(', ')}`);
    if (!(TEAM_ROLES as readonly string[]).includes(role))
      return refuse(`unknown role "${value.role!.slice(0, 40)}"; roles are ${TEAM_ROLES.join(', ')}`);
    return { line, account, team: team.data, role: role as TeamRole };
  }
  if (value.app) {
    if (value.role) return refuse('a role goes with a team, not an app (an app takes permissions)');
    const app = appName.safeParse(value.app);
    if (!app.success) return refuse(`app "${value.app.slice(0, 80)}": ${app.error.issues[0]!.message}`);
    // "view,deploy" or "view;deploy" (quoted), "view deploy", "view+deploy", "view|deploy": one field.
    const given = (value.permissions ?? '')
      .toLowerCase()
      .split(/[\s,;+|]+/)
      .filter(Boolean);
    if (given.length === 0)
      return refuse(`no permissions for app ${app.data}; permissions are ${APP_PERMISSIONS.join(', ')}`);
    const unknown = given.filter((p) => !(APP_PERMISSIONS as readonly string[]).includes(p));
    if (unknown.length > 0) {
      return refuse(
        `unknown permission "${unknown[0]!.slice(0, 40)}"; permissions are ${APP_PERMISSIONS.join(', ')}`,
      );
    }
    // `view` is part of every collaborator's permissions on the platform (see desiredAccess).
    const permissions = canonical(['view', ...(given as AppPermission[])], APP_PERMISSIONS);
    return { line, account, app: app.data, permissions };
  }
  return refuse('names neither a team nor an app');
}
