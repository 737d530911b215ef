import { afterEach, describe, expect, it } from 'vitest';
import { parseDateTime, parseMillisecond } from '../src/dates.js';

describe('parseDateTime', () => {
  const zone = process.env.TZ;
  afterEach(() => {
    if (zone === undefined) delete process.env.TZ;
    else process.env.TZ = zone;
  });
  const iso = (value: string) => parseDateTime(value)?.toISOString();

  it('reads every accepted form as the same instant, whatever the separator or offset spelling', () => {
    expect(iso('2026-03-04T05:06:07Z')).toBe('2026-03-04T05:06:07.000Z');
    expect(iso('2026-03-04t05:06:07z')).toBe('2026-03-04T05:06:07.000Z');
    expect(iso('2026-03-04 05:06:07.5+0200')).toBe('2026-03-04T03:06:07.500Z');
    expect(iso('2026-03-04T05:06:07.123456789-07:30')).toBe('2026-03-04T12:36:07.123Z');
    expect(iso('2026-03-04T05:06')).toBe('2026-03-04T05:06:00.000Z');
    expect(iso('2026-03-04')).toBe('2026-03-04T00:00:00.000Z');
    // V8's legacy parser (any form but ECMAScript's own) reads the year 50 as 1950.
    expect(iso('0050-01-01 00:00:00+01:00')).toBe('0049-12-31T23:00:00.000Z');
    expect(iso('0050-01-01T00:00:00+0100')).toBe('0049-12-31T23:00:00.000Z');
  });

  it('reads a time without an offset as UTC, not in the server time zone', () => {
    process.env.TZ = 'America/New_York';
    expect(iso('2026-03-04T05:06:07')).toBe('2026-03-04T05:06:07.000Z');
    expect(iso('2026-03-04 05:06')).toBe('2026-03-04T05:06:00.000Z');
  });

  it('refuses days the calendar lacks, years outside 1–9999 and other forms', () => {
    for (const value of [
      '2026-02-30T00:00:00Z',
      '2026-02-29',
      '2026-13-01',
      '0000-01-01T00:00:00Z',
      '12345',
      '2026-03-04T25:00:00Z',
      '2026-03-04T05:06:07.Z',
      'yesterday',
    ])
      expect(parseDateTime(value), value).toBeUndefined();
    expect(iso('2028-02-29')).toBe('2028-02-29T00:00:00.000Z');
    expect(iso('9999-12-31T23:59:59.999Z')).toBe('9999-12-31T23:59:59.999Z');
  });

  it('tells a value inside a millisecond from one that names it', () => {
    expect(parseMillisecond('2026-03-04T05:06:07.123000Z')).toEqual({
      start: new Date('2026-03-04T05:06:07.123Z'),
      exact: true,
    });
    expect(parseMillisecond('2026-03-04T05:06:07.1230001Z')).toEqual({
      start: new Date('2026-03-04T05:06:07.123Z'),
      exact: false,
    });
  });
});
