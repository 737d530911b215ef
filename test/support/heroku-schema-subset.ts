import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/*
 * The part of the public Heroku Platform API schema that idsync's connector calls: the links below and
 * every definition their schemas and resources refer to, nothing else. It is checked in
 * (heroku-schema.subset.json) so the connector's schema checks run in any clone; CI also checks the
 * requests against the full public schema and that this file is exactly what the public schema gives
 * (test/heroku-schema-subset.test.ts).
 *
 * Regenerate after changing the list:
 *   IDSYNC_HEROKU_SCHEMA=../shared/reference/heroku-platform-api/schema.json npx tsx test/support/heroku-schema-subset.ts
 */

/** [definition, link title]: every Platform API call the connector, `platform check` and the simulator's free endpoint make. */
export const LINKS_IDSYNC_CALLS: readonly (readonly [string, string])[] = [
  ['account', 'Info'],
  ['rate-limit', 'Info'],
  ['enterprise-account', 'Info'],
  ['enterprise-account-member', 'List'],
  ['enterprise-account-member', 'Create'],
  ['enterprise-account-member', 'Update'],
  ['enterprise-account-member', 'Delete'],
  ['team', 'List by Enterprise Account'],
  ['team-member', 'Create or Update'],
  ['team-member', 'Delete'],
  ['team-member', 'List'],
  ['team-app', 'List By Team'],
  ['team-app-collaborator', 'List'],
  ['team-app-collaborator', 'Create'],
  ['team-app-collaborator', 'Update'],
  ['team-app-collaborator', 'Delete'],
  // Ids from scans, checks before trusting a 404, activity (audit trail, releases).
  ['team', 'Info'],
  ['app', 'Info'],
  // Only the Range check's own test (a declared ranges list on a plain list).
  ['app', 'List'],
  ['audit-trail-event', 'List'],
  ['release', 'List'],
];

export const SUBSET_PATH = fileURLToPath(new URL('./heroku-schema.subset.json', import.meta.url));

interface Schema {
  $schema?: string;
  definitions: Record<string, { links?: { title: string }[] } & Record<string, unknown>>;
  [key: string]: unknown;
}

/** The definitions a node refers to with `#/definitions/<name>/…`. */
function referencedDefinitions(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) {
    for (const item of node) referencedDefinitions(item, into);
  } else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') {
        const name = /^#\/definitions\/([^/]+)/.exec(value)?.[1];
        if (name) into.add(name);
      } else {
        referencedDefinitions(value, into);
      }
    }
  }
  // Links' hrefs refer to definitions too, percent-encoded: {(%23%2Fdefinitions%2Fteam%2F…)}.
  if (typeof node === 'string') {
    for (const match of node.matchAll(/%23%2Fdefinitions%2F([^%]+)%2F/g)) into.add(match[1]!);
  }
}

export function extractSubset(full: Schema): Schema {
  const wanted = new Map<string, Set<string>>();
  for (const [definition, title] of LINKS_IDSYNC_CALLS) {
    if (!full.definitions[definition]?.links?.some((l) => l.title === title)) {
      throw new Error(`the public schema has no link "${title}" in ${definition}`);
    }
    wanted.set(definition, (wanted.get(definition) ?? new Set()).add(title));
  }
  const included = new Set(wanted.keys());
  const pending = [...included];
  const definitions: Schema['definitions'] = {};
  while (pending.length > 0) {
    const name = pending.pop()!;
    const { links, ...rest } = full.definitions[name]!;
    const titles = wanted.get(name);
    const kept = titles ? (links ?? []).filter((l) => titles.has(l.title)) : undefined;
    definitions[name] = kept ? { ...rest, links: kept } : rest;
    const refs = new Set<string>();
    referencedDefinitions(definitions[name], refs);
    for (const ref of refs) {
      if (!included.has(ref) && full.definitions[ref]) {
        included.add(ref);
        pending.push(ref);
      }
    }
  }
  const sorted = Object.fromEntries(
    Object.keys(definitions)
      .sort()
      .map((n) => [n, definitions[n]!]),
  );
  return { $schema: full.$schema, definitions: sorted };
}

export function renderSubset(full: Schema): string {
  return `${JSON.stringify(extractSubset(full), null, 1)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const source = process.env.IDSYNC_HEROKU_SCHEMA;
  if (!source) throw new Error('set IDSYNC_HEROKU_SCHEMA to the public schema.json');
  writeFileSync(SUBSET_PATH, renderSubset(JSON.parse(readFileSync(source, 'utf8')) as Schema));
  process.stdout.write(`wrote ${SUBSET_PATH}\n`);
}
