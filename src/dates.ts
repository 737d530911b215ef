/**
 * An RFC 3339 / ISO 8601 date or date-time between years 1 and 9999, or undefined. `new Date()` alone
 * accepts `12345` (the year 12345) and other forms PostgreSQL's timestamptz refuses. A time without an
 * offset is UTC, as a date alone is: not the server's time zone, which would make an API answer differ
 * with the host it runs on.
 */
const ISO_DATE_TIME =
  /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?)?$/;

export function parseDateTime(value: string): Date | undefined {
  const parts = ISO_DATE_TIME.exec(value);
  if (!parts) return undefined;
  const hasTime = value.length > 10;
  const date = new Date(
    hasTime && parts[1] === undefined ? `${value.replace(/^(.{10})[Tt ]/, '$1T')}Z` : value,
  );
  const year = date.getUTCFullYear();
  return Number.isNaN(date.getTime()) || year < 1 || year > 9999 ? undefined : date;
}

/**
 * The millisecond a date-time falls in (`start`, as `toISOString` writes it) and whether it names that
 * millisecond exactly (no non-zero digit after the third of its fraction), for comparisons with values
 * shown to the millisecond. Undefined where parseDateTime is.
 */
export function parseMillisecond(value: string): { start: Date; exact: boolean } | undefined {
  const start = parseDateTime(value);
  if (!start) return undefined;
  const fraction = /[.](\d+)/.exec(value)?.[1] ?? '';
  return { start, exact: !/[1-9]/.test(fraction.slice(3)) };
}
