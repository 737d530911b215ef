/**
 * An RFC 3339 / ISO 8601 date or date-time between years 1 and 9999, or undefined. `new Date()` alone
 * accepts `12345` (the year 12345) and other forms PostgreSQL's timestamptz refuses.
 */
const ISO_DATE_TIME =
  /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?$/;

export function parseDateTime(value: string): Date | undefined {
  if (!ISO_DATE_TIME.test(value)) return undefined;
  const date = new Date(value);
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
