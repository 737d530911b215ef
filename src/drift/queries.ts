import { parseDateTime } from '../dates.js';
import type { Database } from '../db/client.js';
import { invalid } from '../errors.js';
import { recordForReconcile } from '../jobs/outbox.js';
import { FINDING_CLASSES, SEVERITIES } from './compare.js';
import type { FindingFilter } from './reports.js';

/** Queues a drift scan now, through the outbox (durable; one per tenant at a time). */
export async function requestScan(db: Database, tenantId: string, by: string): Promise<void> {
  await recordForReconcile(db, [
    { tenantId, lane: 'scan', subjectType: 'tenant', subjectId: tenantId, cause: { event: by } },
  ]);
}

/** Reads a findings filter from query parameters, refusing unknown classes and severities. */
export function readFindingFilter(query: Record<string, unknown>): FindingFilter {
  const text = (name: string) => {
    const value = query[name];
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  const filter: FindingFilter = {};
  const findingClass = text('class');
  if (findingClass) {
    if (!(FINDING_CLASSES as readonly string[]).includes(findingClass)) {
      throw invalid(`class must be one of ${FINDING_CLASSES.join(', ')}`);
    }
    filter.class = findingClass;
  }
  const severity = text('severity');
  if (severity) {
    if (!(SEVERITIES as readonly string[]).includes(severity))
      throw invalid(`severity must be one of ${SEVERITIES.join(', ')}`);
    filter.severity = severity;
  }
  for (const name of ['team', 'app', 'user'] as const) {
    const value = text(name);
    if (value) filter[name] = value;
  }
  return filter;
}

/** `from`/`to` as ISO dates or times; default: the last 30 days. */
export function readPeriod(query: Record<string, unknown>): { from: Date; to: Date } {
  const parse = (name: string, fallback: Date) => {
    const value = query[name];
    if (typeof value !== 'string' || value === '') return fallback;
    const date = parseDateTime(value);
    if (!date) throw invalid(`${name} must be a date such as 2026-11-01 or 2026-11-01T09:00:00Z`);
    return date;
  };
  const to = parse('to', new Date());
  const from = parse('from', new Date(to.getTime() - 30 * 86_400_000));
  if (from >= to) throw invalid('from must be before to');
  return { from, to };
}

/** A century: beyond it an interval means nothing (and PostgreSQL's would overflow). */
const MAX_DAYS = 36_500;

export function readDays(value: unknown): number | undefined {
  if (value === undefined || value === '') return undefined;
  const days = Number(value);
  if (!Number.isInteger(days) || days <= 0 || days > MAX_DAYS)
    throw invalid(`days must be a whole number from 1 to ${MAX_DAYS}`);
  return days;
}
