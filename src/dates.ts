/**
 * An RFC 3339 / ISO 8601 date or date-time between years 1 and 9999, or undefined. `new Date()` alone
 * accepts `12345` (the year 12345) and other forms PostgreSQL's timestamptz refuses. A time without an
 * offset is UTC, as a date alone is: not the server's time zone, which would make an API answer differ
 * with the host it runs on.
 */
const ISO_DATE_TIME =
  /^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?([Zz]|[+-]\d{2}:?\d{2})?)?$/;

export function parseDateTime(value: string): Date | undefined {
  const parts = ISO_DATE_TIME.exec(value);
  if (!parts) return undefined;
  const [, day, hoursMinutes, seconds = '00', fraction = '', zone = 'Z'] = parts;
  // V8 takes any day up to 31 (2026-02-30 is 2 March); PostgreSQL refuses it, and so does this.
  const calendarDay = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(calendarDay.getTime()) || calendarDay.toISOString().slice(0, 10) !== day) return undefined;
  // Rewritten in the one form ECMAScript defines (YYYY-MM-DDTHH:mm:ss.sss±HH:mm): any other goes to V8's
  // legacy parser, which reads years 0001–0099 as 1901–1999 and 2000–2049.
  const offset = zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone.toUpperCase();
  const date = new Date(
    hoursMinutes === undefined
      ? day!
      : `${day}T${hoursMinutes}:${seconds}.${fraction.padEnd(3, '0').slice(0, 3)}${offset}`,
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
