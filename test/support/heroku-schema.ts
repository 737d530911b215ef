import { readFileSync } from 'node:fs';
import path from 'node:path';
import AjvDraft04 from 'ajv-draft-04';

// ajv-draft-04 is CommonJS: under ESM its class is the default export's `default`.
const Ajv = AjvDraft04.default;

/*
 * The public Heroku Platform API schema (../shared/reference/heroku-platform-api/schema.json), used to
 * check that every request idsync sends matches a documented link (method and href pattern) and that
 * its body matches the link's schema; and to build response fixtures from the schema's own examples.
 */

const SCHEMA_PATH =
  process.env.IDSYNC_HEROKU_SCHEMA ??
  path.resolve(import.meta.dirname, '../../../shared/reference/heroku-platform-api/schema.json');

interface Link {
  method: string;
  href: string;
  title: string;
  schema?: unknown;
  /** Sort fields the list accepts in `Range`, when the link declares them. */
  ranges?: string[];
}
type Definition = {
  links?: Link[];
  properties?: Record<string, unknown>;
  definitions?: Record<string, unknown>;
};

const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as {
  definitions: Record<string, Definition>;
  $schema?: string;
};

const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
ajv.addFormat('email', /^[^\s@]+@[^\s@]+$/);
ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
ajv.addFormat('date-time', true);
ajv.addFormat('date', true);
ajv.addFormat('uri', true);
ajv.addFormat('ipv4', true);
ajv.addFormat('ipv6', true);
ajv.addFormat('regex', true);
ajv.addSchema({ ...(withoutExamples(schema) as object), $schema: undefined, id: 'heroku' }, 'heroku');

/** Examples are data, not schema; draft-04 would read an example's string `id` as a schema id. */
function withoutExamples(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutExamples);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => key !== 'example' && !(key === 'id' && typeof value === 'string'))
      .map(([key, value]) => [key, withoutExamples(value)]),
  );
}

interface CompiledLink {
  definition: string;
  index: number;
  method: string;
  title: string;
  pattern: RegExp;
  /** Fixed segments count: among several matching links, the most specific wins. */
  literalLength: number;
}

const links: CompiledLink[] = Object.entries(schema.definitions).flatMap(([definition, d]) =>
  (d.links ?? []).map((link, index) => {
    const parts = link.href.split(/\{\([^)]*\)\}/);
    return {
      definition,
      index,
      method: link.method.toUpperCase(),
      title: link.title,
      pattern: new RegExp(`^${parts.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^/]+')}$`),
      literalLength: parts.join('').length,
    };
  }),
);

export interface SchemaCheck {
  link: string | undefined;
  problems: string[];
  /** A link matched but the body is not valid under its schema (Heroku: 422 invalid_params). */
  bodyInvalid: boolean;
}

/**
 * Finds the schema link for a request and checks its body against the link's schema, and its `Range`
 * header against the grammar and, when the link declares `ranges`, against those sort fields.
 */
export function checkRequest(method: string, pathname: string, body: unknown, range?: string): SchemaCheck {
  const candidates = links
    .filter((l) => l.method === method.toUpperCase() && l.pattern.test(pathname))
    .sort((a, b) => b.literalLength - a.literalLength);
  if (candidates.length === 0)
    return { link: undefined, problems: [`no schema link for ${method} ${pathname}`], bodyInvalid: false };
  const problems: string[] = [];
  for (const candidate of candidates) {
    const link = schema.definitions[candidate.definition]!.links![candidate.index]!;
    const name = `${candidate.definition} ${candidate.title}`;
    const rangeProblems = range === undefined ? [] : checkRange(name, link.ranges, range);
    if (link.schema === undefined) return { link: name, problems: rangeProblems, bodyInvalid: false };
    const validate = ajv.compile({
      $ref: `heroku#/definitions/${candidate.definition}/links/${candidate.index}/schema`,
    });
    if (validate(body ?? {})) return { link: name, problems: rangeProblems, bodyInvalid: false };
    problems.push(`${name}: ${ajv.errorsText(validate.errors, { separator: '; ' })}`);
  }
  return { link: undefined, problems, bodyInvalid: true };
}

function checkRange(link: string, ranges: string[] | undefined, header: string): string[] {
  const parsed = parseRange(header);
  if (!parsed) return [`${link}: malformed Range ${JSON.stringify(header)}`];
  if (ranges && !ranges.includes(parsed.field))
    return [`${link}: Range sorts by ${parsed.field}, the link accepts ${ranges.join(', ')}`];
  return [];
}

export interface ParsedRange {
  field: string;
  /** Exclusive start (`]value..`). */
  after?: string;
  max?: number;
  order?: 'asc' | 'desc';
}

/**
 * `<field> [\]<start>]..[<end>][; max=N[, order=asc|desc]][;]`, the grammar of the reference's examples
 * (`id ..; max=10, order=desc`); undefined when malformed, e.g. `; order=desc` after a semicolon, which
 * Heroku refuses as `400 bad_request` (martyzz1/heroku3.py #12).
 */
export function parseRange(header: string): ParsedRange | undefined {
  const match = /^([a-z_]+) (\]?)(.*?)\.\.([^;]*)(?:;\s*(.*?))?;?\s*$/.exec(header.trim());
  if (!match) return undefined;
  const [, field, exclusive, start, , params] = match;
  const result: ParsedRange = { field: field! };
  if (start) {
    if (!exclusive) return undefined;
    result.after = start;
  }
  if (params) {
    for (const part of params.split(',')) {
      const [key, value] = part.trim().split('=');
      if (key === 'max' && /^\d+$/.test(value ?? '')) result.max = Number(value);
      else if (key === 'order' && (value === 'asc' || value === 'desc')) result.order = value;
      else return undefined;
    }
  }
  return result;
}

/** A resource object built from the examples in the schema's definition, with `overrides` on top. */
export function exampleOf<T extends Record<string, unknown>>(
  definition: string,
  overrides: Partial<T> = {},
): T {
  const d = schema.definitions[definition];
  if (!d?.properties) throw new Error(`no definition ${definition}`);
  return { ...(exampleValue({ properties: d.properties }, 0) as T), ...overrides };
}

function resolve(ref: string): unknown {
  return ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], schema);
}

function exampleValue(node: unknown, depth: number): unknown {
  if (depth > 6 || node === null || typeof node !== 'object') return null;
  const n = node as Record<string, unknown>;
  if (typeof n.$ref === 'string') return exampleValue(resolve(n.$ref), depth + 1);
  if ('example' in n) return n.example;
  if (Array.isArray(n.anyOf)) return exampleValue(n.anyOf[0], depth + 1);
  if (n.properties) {
    return Object.fromEntries(
      Object.entries(n.properties as Record<string, unknown>).map(([k, v]) => [
        k,
        exampleValue(v, depth + 1),
      ]),
    );
  }
  if (n.items) return [exampleValue(n.items, depth + 1)];
  return null;
}
