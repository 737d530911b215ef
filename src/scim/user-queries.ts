import { randomUUID } from 'node:crypto';
import { type SQL, sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { accountKeyOf } from '../db/schema.js';
import { preparedStatement, type RawRow, rawRows } from '../db/statement.js';
import { KeyedStatementBatchers, StatementBatcher } from '../db/statement-batcher.js';
import { isStatementRolledBack } from '../errors.js';

/*
 * The hot read and create paths for Users, one round trip each, with the SCIM JSON built by PostgreSQL.
 * Measured on the 2-core machine: every query is a socket write and a wake-up of the server, and those
 * dominated request cost, so a list page is one statement (count + page + each user's groups) and a
 * create is one statement (user + outbox row + audit row, atomic without BEGIN/COMMIT).
 */

/**
 * The SCIM User resource for the row `row` (a user's columns), as JSON text. `groups` (read-only, RFC 7643 §4.1.2):
 * the user's groups as JSON text (see `pageGroups`), NULL for a user in no group (who gets
 * `"groups": null`, as clients have always received); false leaves the member out.
 *
 * PostgreSQL keeps what the row alone decides rendered beside it (users.scim_head and scim_tail,
 * src/db/schema.ts), so a read only splices in what depends on the request or other rows: the location
 * (the base URL is the request's; its escaped prefix is built once per statement, and an id needs no
 * escaping), the version and the groups. The one backslash, in the version's quotes, is in E'' literals:
 * in a plain literal it means something else where standard_conforming_strings is off.
 */
export function userResourceJson(row: 'page' | 'created', baseUrl: SQL, groups: SQL | false): SQL {
  const u = sql.raw(row);
  const groupsMember = groups
    ? sql`
    || ',"groups":' || COALESCE(${groups}, 'null')`
    : sql``;
  return sql`(
    ${u}.scim_head || ',"location":' || (SELECT left(to_json(${baseUrl} || '/Users/')::text, -1)) || ${u}.id::text
    || E'","version":"W/\\\\"' || ${u}.version::text || E'\\\\""}'${groupsMember}
    || ${u}.scim_tail
  )`;
}

/** A group as a User's `groups` lists it, for the row aliased `g`. */
function groupReferenceJson(baseUrl: SQL): SQL {
  return sql`'{"value":"' || g.id || '","$ref":' || to_json(${baseUrl} || '/Groups/' || g.id)
    || ',"display":' || COALESCE(to_json(g.display_name)::text, 'null') || ',"type":"direct"}'`;
}

/** Skips the membership lookup for a tenant with no group at all: one probe per statement (an InitPlan). */
const tenantHasGroups = (tenantId: SQL) =>
  sql`(SELECT EXISTS (SELECT 1 FROM groups WHERE groups.tenant_id = ${tenantId}))`;

/**
 * How the groups of the users in CTE `page` are gathered for `userResourceJson`.
 * - Many users (a page): CTEs giving `user_groups(user_id, json)`, rendering each group of the page once
 *   and joining each user's list from those. A correlated subquery per user, rendering every membership
 *   anew, cost a page of 100 users each in one group 2.0–2.2 ms against 1.5–1.6 ms this way (round trip,
 *   medians of 6 interleaved rounds, one connection, 10,000 users); pages of users in no group came out
 *   even.
 * - One user (by id, `userName eq`): that correlated subquery, which is cheaper there (a lookup by
 *   `userName eq` took 0.21 ms with it and 0.30 ms with the CTEs, measured the same way).
 */
function pageGroups(baseUrl: SQL, tenantId: SQL, single: boolean): { ctes: SQL; join: SQL; json: SQL } {
  if (single) {
    return {
      ctes: sql``,
      join: sql``,
      json: sql`CASE WHEN ${tenantHasGroups(tenantId)} THEN (SELECT '[' || string_agg(${groupReferenceJson(baseUrl)}, ',' ORDER BY g.display_name) || ']'
        FROM group_members gm JOIN groups g ON g.id = gm.group_id
        WHERE gm.user_id = page.id AND gm.tenant_id = ${tenantId} AND g.tenant_id = ${tenantId}) END`,
    };
  }
  return {
    ctes: sql`, page_memberships AS MATERIALIZED (
      SELECT gm.user_id, gm.group_id FROM group_members gm
      WHERE gm.user_id = ANY (ARRAY(SELECT id FROM page)) AND gm.tenant_id = ${tenantId} AND ${tenantHasGroups(tenantId)}
    ), page_groups AS MATERIALIZED (
      SELECT g.id, g.display_name, ${groupReferenceJson(baseUrl)} AS json
      FROM groups g WHERE g.id = ANY (ARRAY(SELECT DISTINCT group_id FROM page_memberships)) AND g.tenant_id = ${tenantId}
    ), user_groups AS (
      SELECT m.user_id, '[' || string_agg(pg.json, ',' ORDER BY pg.display_name) || ']' AS json
      FROM page_memberships m JOIN page_groups pg ON pg.id = m.group_id GROUP BY m.user_id
    )`,
    join: sql` LEFT JOIN user_groups ON user_groups.user_id = page.id`,
    json: sql`user_groups.json`,
  };
}

/**
 * The users of CTE `page` (the users' rows), each rendered with `userResourceJson` (groups too when
 * asked), as `resource` beside the user's columns: the one way a stored user is read as SCIM JSON.
 * `single`: the page holds at most one user.
 */
function renderedPageUsers(
  baseUrl: SQL,
  groups: { tenantId: SQL } | false,
  single: boolean,
): { ctes: SQL; select: SQL } {
  const gathered = groups ? pageGroups(baseUrl, groups.tenantId, single) : undefined;
  return {
    ctes: gathered?.ctes ?? sql``,
    select: sql`SELECT ${userResourceJson('page', baseUrl, gathered?.json ?? false)} AS resource,
        page.created_at, page.id, page.version
      FROM page${gathered?.join ?? sql``}`,
  };
}

export interface UserPageJson {
  total: number;
  /** The page's itemsPerPage: counted by PostgreSQL, as the resources come joined. */
  returned: number;
  /**
   * The page's resources as UTF-8 JSON joined by commas, as PostgreSQL sent them: the inside of the
   * ListResponse's `Resources` array, ready to splice in. Empty for an empty page.
   */
  resources: Buffer;
}

type PageValues = { tenantId: string; baseUrl: string; count: number; offset: number };

/**
 * A page of users, with the total the condition matches. A page by offset pages its users' ids first and
 * reads only those users; a seek reads them along the order index.
 * `unique`: the condition is a live user's unique key, so the page holds at most one user and needs no
 * order — and must not ask for one: right after an initial push (statistics still saying the tenant is
 * empty) PostgreSQL then walks the tenant in creation order, filtering all its users, instead of
 * looking the key up (measured: 10,000 rows read per `userName eq`, 5 ms instead of 0.1). Its row is
 * found once and both counted and paged from there: counting and paging it apart read it three times,
 * and cost 14 µs more of PostgreSQL CPU per lookup (BENCHMARKS.md, "Users kept rendered").
 */
export function userPageSql(
  where: SQL | undefined,
  values: PageValues | 'placeholders',
  withGroups: boolean,
  shape: {
    unique?: boolean;
    /** Keyset: the page starts after this (created_at, id) instead of at the offset. */
    after?: SQL;
    /**
     * Unfiltered only: the page starts after `after` (and `skip` more users, if given) if the tenant's
     * live users are still those of `changes` (the sum of user_counts.changes when a page ended there),
     * else at the offset.
     */
    afterIfUnchanged?: { after: SQL; skip?: SQL; changes: SQL };
    /** With placeholders: the page size written into the statement (see `LITERAL_PAGE_SIZES`). */
    literalCount?: number;
  } = {},
): SQL {
  const { unique = false, after, afterIfUnchanged, literalCount } = shape;
  const v = (name: keyof PageValues) =>
    values === 'placeholders' ? sql.placeholder(name) : sql`${values[name]}`;
  const limit = literalCount === undefined ? v('count') : sql.raw(String(pageSizeLiteral(literalCount)));
  const condition = sql`users.tenant_id = ${v('tenantId')} AND users.deprovisioned_at IS NULL${where ? sql` AND ${where}` : sql``}`;
  // Unfiltered: the trigger-maintained count (summing 16 rows) instead of counting every live user, and
  // beside it the count of changes to the tenant's live users (see afterIfUnchanged).
  // A unique key's one row (or none) is found once, and counted and paged from there.
  const found = unique ? sql`found AS MATERIALIZED (SELECT users.* FROM users WHERE ${condition}),` : sql``;
  const total = unique
    ? sql`SELECT count(*)::int AS total, NULL::text AS changes FROM found`
    : where
      ? sql`SELECT count(*)::int AS total, NULL::text AS changes FROM users WHERE ${condition}`
      : sql`SELECT COALESCE(sum(live), 0)::int AS total, COALESCE(sum(changes), 0)::text AS changes FROM user_counts WHERE tenant_id = ${v('tenantId')}`;
  // A unique key's page is `found` itself: only the other pages are ordered.
  const order = sql`ORDER BY users.created_at, users.id`;
  // Both arms gated on the tenant's count of changes alone, which PostgreSQL evaluates once (a one-time
  // filter): only one arm reads the index.
  const changesNow = sql`(SELECT changes FROM total)`;
  // Pages by offset (and seeks that skip from an earlier end) read their ids first and then only those
  // users: PostgreSQL evaluates a select list for rows skipped by OFFSET too. They are looked up as an
  // array by primary key: when the gated seek read its users that way too, joining them to the ids
  // instead made its generic plan (two arms of 100 estimated) hash all the tenant's users (28 ms at
  // 10,000) rather than probe the index 100 times.
  const byIds = (ids: SQL) => sql`SELECT users.* FROM users WHERE users.id = ANY (ARRAY(${ids}))`;
  const byOffset = (gate: SQL) =>
    sql`SELECT users.id FROM users WHERE ${condition}${gate} ${order} LIMIT ${limit} OFFSET ${v('offset')}`;
  // After a remembered (created_at, id): `users.*` when it skips nothing, as it then reads its users' rows
  // straight along the order index and spares those probes (0.14–0.15 ms less execution for a page of
  // 100: EXPLAIN ANALYZE, medians of 400 interleaved, 10,000 users, on 0.78–0.91 ms); ids when it skips.
  const seek = (columns: 'users.*' | 'users.id', from: SQL, gate: SQL, skip?: SQL) =>
    sql`SELECT ${sql.raw(columns)} FROM users WHERE ${condition} AND (users.created_at, users.id) > ${from}${gate}
          ${order} LIMIT ${limit}${skip ? sql` OFFSET ${skip}` : sql``}`;
  let pageRows: SQL;
  if (unique) {
    pageRows = sql`SELECT * FROM found LIMIT ${limit} OFFSET ${v('offset')}`;
  } else if (afterIfUnchanged) {
    const { after: from, skip } = afterIfUnchanged;
    const unchanged = sql` AND ${changesNow} = ${afterIfUnchanged.changes}`;
    const changed = byOffset(sql` AND ${changesNow} IS DISTINCT FROM ${afterIfUnchanged.changes}`);
    pageRows = skip
      ? byIds(sql`(${seek('users.id', from, unchanged, skip)}) UNION ALL (${changed})`)
      : sql`(${seek('users.*', from, unchanged)}) UNION ALL (${byIds(changed)})`;
  } else {
    pageRows = after ? seek('users.*', after, sql``) : byIds(byOffset(sql``));
  }
  const rendered = renderedPageUsers(
    sql`${v('baseUrl')}::text`,
    withGroups && { tenantId: sql`${v('tenantId')}::uuid` },
    unique,
  );
  // One row, the page's resources joined into one value: a row per user cost Node a DataRow to parse,
  // a slice and a copy per user (BENCHMARKS.md, "A page of users as one value"). A value holds at most
  // 1 GB, and a projected page is decoded as one string (at most about 512 MiB in Node): a page of 1,000
  // users (the largest count) each near the 1 MB request limit may not fit, and the page then fails with a
  // 500, where a user as the IdPs send one is under 1 KB. The count is of rows: a
  // second aggregate over `p.resource` rendered every user twice (PostgreSQL pulls the subquery up into
  // both aggregates' arguments): 0.3 ms more of PostgreSQL CPU per page. No rendered user is NULL (its
  // parts are NOT NULL columns, and the nullable ones are wrapped).
  return sql`
    WITH ${found}
      total AS MATERIALIZED (${total}),
      page AS MATERIALIZED (${pageRows})${rendered.ctes}
    SELECT t.total, t.changes, r.resources, r.returned, l.created_at::text AS last_created_at, l.id::text AS last_id
    FROM total t
      LEFT JOIN (SELECT string_agg(p.resource, ',' ORDER BY p.created_at, p.id) AS resources, count(*)::int AS returned
        FROM (${rendered.select}) p) r ON true
      LEFT JOIN (SELECT page.created_at, page.id FROM page ORDER BY page.created_at DESC, page.id DESC LIMIT 1) l ON true`;
}

/**
 * Page sizes an unfiltered page's statement carries as a literal `LIMIT`. PostgreSQL estimates `LIMIT $n`
 * at a tenth of the tenant, so the generic plan of a page (then rendering a tenth of the tenant, or for a
 * page by offset, still scanning that many ids) looked dearer than a
 * custom one and pages were planned anew at bind: 0.8–0.95 ms of PostgreSQL per page of 100, on 2.4 ms of
 * execution (measured in the log of a page walk). With the size written in, the generic plan is chosen
 * after five calls. A fixed list bounds the statements each connection prepares whatever
 * counts clients send; any other size keeps the placeholder and its planning.
 */
export const LITERAL_PAGE_SIZES: ReadonlySet<number> = new Set([1, 10, 20, 25, 50, 100, 200, 250, 500, 1000]);

function pageSizeLiteral(count: number): number {
  if (!LITERAL_PAGE_SIZES.has(count)) throw new Error(`page size ${count} is not one of LITERAL_PAGE_SIZES`);
  return count;
}

/** One prepared statement per literal page size, and one with the size as a placeholder for the rest. */
function statementsBySize<Values extends PageValues>(build: (literalCount: number | undefined) => SQL) {
  const bySize = new Map<number | 'placeholder', ReturnType<typeof preparedStatement<Values>>>();
  return (count: number) => {
    const size = LITERAL_PAGE_SIZES.has(count) ? count : 'placeholder';
    let statement = bySize.get(size);
    if (!statement) {
      statement = preparedStatement<Values>(() => build(size === 'placeholder' ? undefined : size));
      bySize.set(size, statement);
    }
    return statement;
  };
}

const unfilteredPage = {
  withGroups: statementsBySize<PageValues>((size) =>
    userPageSql(undefined, 'placeholders', true, { literalCount: size }),
  ),
  withoutGroups: statementsBySize<PageValues>((size) =>
    userPageSql(undefined, 'placeholders', false, { literalCount: size }),
  ),
};

type AfterValues = PageValues & { afterCreatedAt: string; afterId: string };
const afterPlaceholders = sql`(${sql.placeholder('afterCreatedAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`;
const unfilteredPageAfter = {
  withGroups: statementsBySize<AfterValues>((size) =>
    userPageSql(undefined, 'placeholders', true, { after: afterPlaceholders, literalCount: size }),
  ),
  withoutGroups: statementsBySize<AfterValues>((size) =>
    userPageSql(undefined, 'placeholders', false, { after: afterPlaceholders, literalCount: size }),
  ),
};

type AfterIfUnchangedValues = AfterValues & { changes: string };
const afterIfUnchanged = { after: afterPlaceholders, changes: sql`${sql.placeholder('changes')}::text` };
const unfilteredPageAfterIfUnchanged = {
  withGroups: statementsBySize<AfterIfUnchangedValues>((size) =>
    userPageSql(undefined, 'placeholders', true, { afterIfUnchanged, literalCount: size }),
  ),
  withoutGroups: statementsBySize<AfterIfUnchangedValues>((size) =>
    userPageSql(undefined, 'placeholders', false, { afterIfUnchanged, literalCount: size }),
  ),
};

/**
 * The same, `skip` users past an earlier page end: only on the page-scan pool, whose sessions keep the
 * generic plan (PostgreSQL prices an `OFFSET $n` it cannot see at a tenth of the tenant, so it would
 * otherwise plan each call anew against the custom plan of the values at hand).
 */
type SkipIfUnchangedValues = AfterIfUnchangedValues & { skip: number };
const skipIfUnchanged = { ...afterIfUnchanged, skip: sql`${sql.placeholder('skip')}::int` };
const unfilteredPageSkipIfUnchanged = {
  withGroups: statementsBySize<SkipIfUnchangedValues>((size) =>
    userPageSql(undefined, 'placeholders', true, { afterIfUnchanged: skipIfUnchanged, literalCount: size }),
  ),
  withoutGroups: statementsBySize<SkipIfUnchangedValues>((size) =>
    userPageSql(undefined, 'placeholders', false, { afterIfUnchanged: skipIfUnchanged, literalCount: size }),
  ),
};

/**
 * Where unfiltered pages ended, so the next page starts after the remembered (created_at, id) by the order
 * index instead of counting its way past every earlier user — an OFFSET reads each skipped entry, and
 * right after an initial push (visibility map not yet set) each one from the table too: 21 ms at offset
 * 9,900 against 1 ms for the first page. Two kinds, both expiring after a minute:
 * - A connection's own walk, by tenant, connection and end offset: a client walking the users page by
 *   page asks next, on the same connection, for exactly that offset. If users before the cursor were
 *   removed meanwhile, the walker's next page continues where it stopped (an offset would skip as many
 *   users as were removed).
 * - Any client's page, by tenant and end offset, with the tenant's count of changes to its live users
 *   then (user_counts.changes): a page at that offset from any connection starts after it only if that
 *   count is unchanged, in the same statement (afterIfUnchanged), so it is exactly the current Nth user
 *   on (RFC 7644 §3.4.2.4) — clients fetching pages by index in parallel seek instead of scanning.
 */
interface PageEnd {
  createdAt: string;
  id: string;
  /** The tenant's user_counts.changes when the page was read: its live users then. */
  changes: string;
  /**
   * The page ended at its offset's user: it was read by offset or by a gated seek, or it continues a
   * walk that has been exact so far and saw no change since its previous page. A walk that went on past
   * a removal is not, and stays not: only exact ends are shared with other clients.
   */
  exact: boolean;
  until: number;
}
const PAGE_END_TTL_MS = 60_000;

/** A connection's walk, by `${tenant}:${connection}:${end offset}`. */
const walkEnds = new Map<string, PageEnd>();
const WALK_ENDS_KEPT = 10_000;

/** Any client's page ends, by tenant (the most recently paged last), then end offset. */
const tenantPageEnds = new Map<string, Map<number, PageEnd>>();
const TENANT_PAGE_ENDS_KEPT = 1_000;
const TENANTS_PAGED_KEPT = 1_000;

function rememberWalkEnd(key: string, end: PageEnd) {
  walkEnds.delete(key);
  walkEnds.set(key, end);
  if (walkEnds.size > WALK_ENDS_KEPT) walkEnds.delete(walkEnds.keys().next().value!);
}

function walkEndAt(key: string): PageEnd | undefined {
  const end = walkEnds.get(key);
  if (end && end.until < Date.now()) walkEnds.delete(key);
  return end && end.until >= Date.now() ? end : undefined;
}

function rememberTenantPageEnd(tenantId: string, endOffset: number, end: PageEnd) {
  const ends = tenantPageEnds.get(tenantId) ?? new Map<number, PageEnd>();
  // Moved to the back: the tenants paged longest ago (their ends expired or soon) are dropped first.
  tenantPageEnds.delete(tenantId);
  tenantPageEnds.set(tenantId, ends);
  if (tenantPageEnds.size > TENANTS_PAGED_KEPT) tenantPageEnds.delete(tenantPageEnds.keys().next().value!);
  ends.delete(endOffset);
  ends.set(endOffset, end);
  if (ends.size > TENANT_PAGE_ENDS_KEPT) ends.delete(ends.keys().next().value!);
}

/**
 * The tenant's live page end at `offset`; with `orBefore`, when none is there, the nearest before it:
 * clients fetching pages by index in parallel ask for a page before the one just before it has ended,
 * so an end at the offset itself is rare for them, but seeking to one a few pages back and skipping from
 * there reads a fraction of the users an OFFSET does.
 */
function tenantPageEnd(
  tenantId: string,
  offset: number,
  orBefore: boolean,
): { endOffset: number; end: PageEnd } | undefined {
  const ends = tenantPageEnds.get(tenantId);
  if (!ends) return undefined;
  const now = Date.now();
  const at = ends.get(offset);
  if (at && at.until >= now) return { endOffset: offset, end: at };
  if (!orBefore) return undefined;
  let nearest: { endOffset: number; end: PageEnd } | undefined;
  for (const [endOffset, end] of ends) {
    if (end.until < now) ends.delete(endOffset);
    else if (endOffset < offset && (!nearest || endOffset > nearest.endOffset)) nearest = { endOffset, end };
  }
  if (ends.size === 0) tenantPageEnds.delete(tenantId);
  return nearest;
}

/**
 * `userName eq "…"`: the condition filterToSql builds for it, with the name as a placeholder. The key is
 * `accountKeyOf`'s sub-select, evaluated once per query: in a generic plan chosen while the table's
 * statistics are stale (right after an IdP's initial push) a bare `account_key($1)` in a scan filter was
 * evaluated for every row, ICU lower-casing and all (measured: 70 filters/s instead of 700+).
 */
const byUserName = sql`users.user_name_key = ${accountKeyOf(sql.placeholder('userName'))}`;
const userNamePage = {
  withGroups: preparedStatement<PageValues & { userName: string }>(() =>
    userPageSql(byUserName, 'placeholders', true, { unique: true }),
  ),
  withoutGroups: preparedStatement<PageValues & { userName: string }>(() =>
    userPageSql(byUserName, 'placeholders', false, { unique: true }),
  ),
};

/**
 * Unfiltered pages by offset that end past this many users go to the page-scan pool (filters other than
 * `userName eq` to the main pool): an OFFSET deep into a large tenant reads every user before it (at
 * 300,000 users a page at startIndex 299,000 held the lookups queued behind it for 250–600 ms, and a
 * statement timeout does not count a query's time in the queue). A page that continues a walk reads only
 * its own users, wherever it starts, and stays on the pipelined pool: its two connections keep their
 * plans warm, where the main pool's 18 each planned the walk's first pages anew (PostgreSQL keeps a
 * generic plan per connection only after five custom ones).
 */
export const PIPELINED_PAGE_END = 1000;

export async function listUsersJson(
  pools: {
    main: Database;
    /** The pool for statements that read few rows, where postgres.js pipelines them. */
    pipelined: Database;
    /** The pool for unfiltered pages by offset past PIPELINED_PAGE_END. */
    pageScans: Database;
  },
  tenantId: string,
  /** A filter as SQL, or the name of a `userName eq` filter (one prepared statement). */
  where: SQL | { userName: string } | undefined,
  page: { startIndex: number; count: number },
  baseUrl: string,
  withGroups: boolean,
  /** The connection asking (a walker's pages continue where its last ended); none: plain offsets. */
  connection?: string,
): Promise<UserPageJson> {
  const values: PageValues = { tenantId, baseUrl, count: page.count, offset: page.startIndex - 1 };
  const variant = withGroups ? 'withGroups' : 'withoutGroups';
  if (where === undefined) {
    const walk = connection === undefined ? undefined : `${tenantId}:${connection}`;
    const walked = walk && values.offset > 0 ? walkEndAt(`${walk}:${values.offset}`) : undefined;
    // A seek that finds the tenant changed reads by offset after all: past the first users, a scan. Only
    // there may it skip from an earlier end (see unfilteredPageSkipIfUnchanged).
    const deep = values.offset + values.count > PIPELINED_PAGE_END;
    const pool = deep ? pools.pageScans : pools.pipelined;
    const seen = !walked && values.offset > 0 ? tenantPageEnd(tenantId, values.offset, deep) : undefined;
    const seekFrom = (end: PageEnd) => ({
      ...values,
      afterCreatedAt: end.createdAt,
      afterId: end.id,
      changes: end.changes,
    });
    const rows = walked
      ? await unfilteredPageAfter[variant](values.count).raw(pools.pipelined, {
          ...values,
          afterCreatedAt: walked.createdAt,
          afterId: walked.id,
        })
      : !seen
        ? await unfilteredPage[variant](values.count).raw(pool, values)
        : seen.endOffset === values.offset
          ? await unfilteredPageAfterIfUnchanged[variant](values.count).raw(pool, seekFrom(seen.end))
          : await unfilteredPageSkipIfUnchanged[variant](values.count).raw(pool, {
              ...seekFrom(seen.end),
              skip: values.offset - seen.endOffset,
            });
    const [row] = rows;
    const json = pageJson(rows);
    const changes = row?.[PAGE_COLUMN.changes]?.toString();
    const lastCreatedAt = row?.[PAGE_COLUMN.lastCreatedAt]?.toString();
    const lastId = row?.[PAGE_COLUMN.lastId]?.toString();
    if (lastCreatedAt && lastId && changes !== undefined && json.returned === values.count) {
      const endOffset = values.offset + values.count;
      const exact = !walked || (walked.exact && walked.changes === changes);
      const end = {
        createdAt: lastCreatedAt,
        id: lastId,
        changes,
        exact,
        until: Date.now() + PAGE_END_TTL_MS,
      };
      if (walk) rememberWalkEnd(`${walk}:${endOffset}`, end);
      if (exact) rememberTenantPageEnd(tenantId, endOffset, end);
    }
    return json;
  }
  const rows =
    'userName' in where
      ? await userNamePage[variant].raw(pools.pipelined, { ...values, userName: where.userName })
      : await rawRows(pools.main, userPageSql(where, values, withGroups));
  return pageJson(rows);
}

/** The columns of userPageSql's one row, by position (pages are read raw). */
const PAGE_COLUMN = { total: 0, changes: 1, resources: 2, returned: 3, lastCreatedAt: 4, lastId: 5 } as const;

const NO_RESOURCES = Buffer.alloc(0);

function pageJson(rows: RawRow[]): UserPageJson {
  const [row] = rows;
  const count = (column: number) => Number(row?.[column]?.toString('latin1') ?? 0);
  return {
    total: count(PAGE_COLUMN.total),
    returned: count(PAGE_COLUMN.returned),
    resources: row?.[PAGE_COLUMN.resources] ?? NO_RESOURCES,
  };
}

const findUserStatement = preparedStatement<{ tenantId: string; id: string; baseUrl: string }>(() => {
  const rendered = renderedPageUsers(
    sql`${sql.placeholder('baseUrl')}::text`,
    { tenantId: sql`${sql.placeholder('tenantId')}::uuid` },
    true,
  );
  return sql`
    WITH page AS MATERIALIZED (
      SELECT users.* FROM users
      WHERE users.tenant_id = ${sql.placeholder('tenantId')} AND users.id = ${sql.placeholder('id')} AND users.deprovisioned_at IS NULL
    )${rendered.ctes}
    SELECT p.resource, p.version FROM (${rendered.select}) p`;
});

/** One live user as JSON text, or undefined. */
export async function findUserJson(
  db: Database,
  tenantId: string,
  id: string,
  baseUrl: string,
): Promise<{ resource: string; version: number } | undefined> {
  const [row] = await findUserStatement<{ resource: string; version: number }>(db, { tenantId, id, baseUrl });
  return row;
}

/** No tenant has this id (tenants get random ones), so a warm-up statement reads nothing. */
const NO_TENANT = '00000000-0000-0000-0000-000000000000';

/*
 * Readying a pool's connection for listUsersJson before the first client asks: a page statement's first
 * calls on a new connection cost PostgreSQL the connection, the statement's parse and plan, and the
 * catalog lookups behind them (measured, 100 pages of 100 at 16 clients right after start: 3.0 ms of
 * PostgreSQL CPU per page, against 1.2–1.4 ms warm). The values are those of a read of `count` users
 * of no tenant, of the same JavaScript types as a real read's, so postgres.js keys the statement alike
 * and the real read reuses it.
 */

function warmUpValues(count: number, baseUrl: string) {
  const values: PageValues = { tenantId: NO_TENANT, baseUrl, count, offset: 0 };
  const seek = { ...values, afterCreatedAt: '1970-01-01T00:00:00Z', afterId: NO_TENANT, changes: '0' };
  return { values, seek };
}

/**
 * For the pipelined pool, which lets PostgreSQL choose between custom and generic plans from the costs
 * of a statement's first five calls: its statements are prepared, not run. Run against no tenant, the
 * warm-up's cheap call swayed that choice (the page by offset was then planned anew at 42 of 45 calls).
 */
export async function prepareUserReads(db: Database, count: number, baseUrl: string): Promise<void> {
  const { values, seek } = warmUpValues(count, baseUrl);
  await userNamePage.withGroups.prepare(db, { ...values, userName: 'warm-up' });
  await findUserStatement.prepare(db, { tenantId: NO_TENANT, id: NO_TENANT, baseUrl });
  await unfilteredPage.withGroups(count).prepare(db, values);
  await unfilteredPageAfter.withGroups(count).prepare(db, seek);
  await unfilteredPageAfterIfUnchanged.withGroups(count).prepare(db, seek);
}

/**
 * For the page-scan pool, whose sessions run generic plans only: each statement runs once, which builds
 * the plan every later call uses.
 */
export async function planUserPageScans(db: Database, count: number, baseUrl: string): Promise<void> {
  const { seek } = warmUpValues(count, baseUrl);
  const deep = { ...seek, offset: PIPELINED_PAGE_END };
  await unfilteredPage.withGroups(count).raw(db, deep);
  await unfilteredPageAfterIfUnchanged.withGroups(count).raw(db, deep);
  await unfilteredPageSkipIfUnchanged.withGroups(count).raw(db, { ...deep, skip: count });
}

export interface NewUser {
  userName: string;
  externalId: string | null;
  active: boolean;
  attributes: Record<string, unknown>;
}

/** One create as the batch statement takes it: its columns of the arrays below. */
interface UserRow {
  id: string;
  userName: string;
  externalId: string | null;
  active: boolean;
  attributes: string;
  cause: string;
  actor: string;
  correlationId: string | null;
}

/**
 * Creates users of one tenant, each with its outbox row and audit row, in one statement (atomic without
 * BEGIN/COMMIT), from arrays with one element per user. Ids come from the caller, so each caller finds its own row. A
 * userName a live user of the tenant holds (or an earlier row of the same statement) is skipped, not an
 * error: the other rows are written, and the caller of the skipped one answers 409. Rows go in by
 * name key: a row whose name another open statement has just written waits for it, and two
 * statements (two processes) taking the same names in opposite orders deadlocked (test/scim-create-
 * batching); in one order the second waits for the first and skips. Among equal keys the first to come wins.
 */
const insertUsersStatement = preparedStatement<{
  tenantId: string;
  ids: string[];
  userNames: string[];
  externalIds: (string | null)[];
  /**
   * 'true' / 'false', sent as text[]: postgres.js declares a parameter holding an array of booleans as
   * one boolean, and serializes anything but `true` in a boolean[] as false.
   */
  actives: string[];
  attributes: string[];
  causes: string[];
  actors: string[];
  correlationIds: (string | null)[];
  baseUrl: string;
}>(() => {
  const p = sql.placeholder;
  return sql`
    WITH wanted AS (
      SELECT * FROM unnest(${p('ids')}::uuid[], ${p('userNames')}::text[],
        ${p('externalIds')}::text[], ${p('actives')}::text[], ${p('attributes')}::text[], ${p('causes')}::text[],
        ${p('actors')}::text[], ${p('correlationIds')}::text[])
        WITH ORDINALITY AS w(id, user_name, external_id, active, attributes, cause, actor, correlation_id, n)
    ), created AS (
      INSERT INTO users (id, tenant_id, user_name, external_id, active, attributes, origin)
      SELECT id, ${p('tenantId')}::uuid, user_name, external_id, active::boolean, attributes::jsonb, 'scim'
      FROM wanted ORDER BY account_key(user_name), n
      ON CONFLICT (tenant_id, user_name_key) WHERE deprovisioned_at IS NULL DO NOTHING
      RETURNING *
    ), queued AS (
      INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
      SELECT created.tenant_id, 'reconcile', 'user', created.id::text, wanted.cause::jsonb
      FROM created JOIN wanted ON wanted.id = created.id ORDER BY wanted.n
    ), audited AS (
      INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, after, correlation_id)
      SELECT created.tenant_id, wanted.actor, 'scim.user.created', 'user', created.id::text,
        jsonb_build_object('userName', created.user_name, 'externalId', created.external_id, 'active', created.active),
        wanted.correlation_id
      FROM created JOIN wanted ON wanted.id = created.id ORDER BY wanted.n
    )
    SELECT ${userResourceJson('created', sql`${p('baseUrl')}::text`, false)} AS resource, created.version,
      created.id::text AS id FROM created`;
});

export type UserCreation =
  | { outcome: 'created'; resource: string; version: number; id: string }
  /** A live user of the tenant (or a create that went first) holds the userName. */
  | { outcome: 'userNameTaken' };

/**
 * Per tenant and process: at most this many create statements at once, and users per statement. One at
 * a time makes the largest statements: the peers' 10,000-user load on `idsync start` (2 processes)
 * created 1,210 users/s with one, 1,042 with two and 968 with four.
 */
const CREATE_FLIGHTS = 1;
const USERS_PER_CREATE_STATEMENT = 64;
/**
 * Characters of users' JSON per statement (a user of that size or more goes alone): each statement has
 * the API's statement timeout, and a statement of 64 users of ~1 MB (each accepted alone) outran it.
 */
const CREATE_STATEMENT_CHARS = 256 * 1024;
/** A create statement running this long waits on a lock: the next users go in a statement of their own. */
const SLOW_CREATE_STATEMENT_MS = 250;

/**
 * Creates users through a StatementBatcher per tenant: an IdP's concurrent creates (an initial push)
 * share statements, and one tenant's statement (a slow one, a refused one) holds up or fails no other
 * tenant's creates. The one writer of outbox and audit rows that does not go through recordForReconcile
 * and recordAudit: the transaction those helpers need is four more round trips per user.
 */
export function userCreator(db: Database, baseUrl: string) {
  const write = async (tenantId: string, rows: UserRow[]): Promise<UserCreation[]> => {
    const created = await insertUsersStatement<{ resource: string; version: number; id: string }>(db, {
      tenantId,
      ids: rows.map((r) => r.id),
      userNames: rows.map((r) => r.userName),
      externalIds: rows.map((r) => r.externalId),
      actives: rows.map((r) => String(r.active)),
      attributes: rows.map((r) => r.attributes),
      causes: rows.map((r) => r.cause),
      actors: rows.map((r) => r.actor),
      correlationIds: rows.map((r) => r.correlationId),
      baseUrl,
    });
    const byId = new Map(created.map((row) => [row.id, row]));
    return rows.map((r): UserCreation => {
      const row = byId.get(r.id);
      return row ? { outcome: 'created', ...row } : { outcome: 'userNameTaken' };
    });
  };
  const batchers = new KeyedStatementBatchers<UserRow, UserCreation>(
    (tenantId, onIdle) =>
      new StatementBatcher<UserRow, UserCreation>((rows) => write(tenantId, rows), {
        flights: CREATE_FLIGHTS,
        maxBatch: USERS_PER_CREATE_STATEMENT,
        maxWeight: CREATE_STATEMENT_CHARS,
        weigh: (row) => row.attributes.length + row.userName.length + (row.externalId?.length ?? 0),
        slowAfterMs: SLOW_CREATE_STATEMENT_MS,
        isRolledBack: isStatementRolledBack,
        onIdle,
      }),
  );
  return (
    tenantId: string,
    user: NewUser,
    audit: { actor: string; correlationId: string | undefined },
  ): Promise<UserCreation> =>
    batchers.submit(tenantId, {
      id: randomUUID(),
      userName: user.userName,
      externalId: user.externalId,
      active: user.active,
      attributes: JSON.stringify(user.attributes),
      cause: JSON.stringify({
        event: 'user.created',
        source: 'scim',
        at: new Date().toISOString(),
        correlationId: audit.correlationId,
      }),
      actor: audit.actor,
      correlationId: audit.correlationId ?? null,
    });
}
