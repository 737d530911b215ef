import { ScimError } from './errors.js';
import { elementMatches, parsePatchPath } from './patch.js';
import type { AttributeInfo } from './schemas.js';

/*
 * RFC 7644 §3.9 `attributes` and `excludedAttributes`, applied to a rendered resource. Names match
 * case-insensitively; `emails[type eq "work"]` (Microsoft's tests) keeps only matching values.
 */

export interface Projection {
  attributes: string[] | undefined;
  excludedAttributes: string[] | undefined;
}

type Document = Record<string, unknown>;

interface ProjectionSchemas {
  core: string;
  extensions: string[];
  catalogs: Map<string, Map<string, AttributeInfo>>;
}

const ALWAYS_RETURNED = new Set(['id', 'schemas']);

export function readProjection(query: Record<string, unknown>): Projection {
  const list = (name: string) => {
    const key = Object.keys(query).find((k) => k.toLowerCase() === name.toLowerCase());
    const raw = key === undefined ? undefined : query[key];
    if (raw === undefined) return undefined;
    const text = Array.isArray(raw) ? raw.join(',') : String(raw);
    const items = splitTopLevel(text);
    return items.length ? items : undefined;
  };
  return { attributes: list('attributes'), excludedAttributes: list('excludedAttributes') };
}

/** Splits on commas that are not inside `[...]`. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '[') depth += 1;
    if (ch === ']') depth -= 1;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter(Boolean);
}

export function isProjected(projection: Projection): boolean {
  return projection.attributes !== undefined || projection.excludedAttributes !== undefined;
}

/** Whether the projection leaves `attribute` in the output (used to skip loading group members). */
export function projectionKeeps(projection: Projection, attribute: string): boolean {
  const named = (list: string[] | undefined) =>
    list?.some((entry) => entry.toLowerCase().split(/[.[]/)[0] === attribute.toLowerCase()) ?? false;
  if (projection.attributes) return named(projection.attributes);
  return !named(projection.excludedAttributes);
}

export function project(resource: Document, projection: Projection, schemas: ProjectionSchemas): Document {
  if (!isProjected(projection)) return resource;
  const locate = (entry: string) => {
    const path = parsePatchPath(entry, schemas.core, schemas.extensions);
    const catalog = schemas.catalogs.get(path.schema)!;
    const info = path.attribute ? catalog.get(path.attribute.toLowerCase()) : undefined;
    if (path.attribute && !info) return undefined;
    const container =
      path.schema === schemas.core ? resource : (resource[path.schema] as Document | undefined);
    return { path, info, container };
  };

  if (projection.attributes) {
    const out: Document = {};
    for (const [key, value] of Object.entries(resource)) if (ALWAYS_RETURNED.has(key)) out[key] = value;
    for (const entry of projection.attributes) {
      const found = locate(entry);
      if (!found?.container) continue;
      const { path, info, container } = found;
      const target: Document = path.schema === schemas.core ? out : ((out[path.schema] as Document) ?? {});
      if (path.schema !== schemas.core) out[path.schema] = target;
      if (!info) {
        Object.assign(target, container);
        continue;
      }
      let value = container[info.name];
      if (value === undefined) continue;
      if (path.filter && Array.isArray(value)) {
        value = elementsOf(value).filter((element) => elementMatches(path.filter!, element, info));
      }
      if (path.sub) {
        const sub = info.subAttributes?.get(path.sub.toLowerCase());
        if (!sub) continue;
        const pick = (element: Document) =>
          element[sub.name] === undefined ? {} : { [sub.name]: element[sub.name] };
        const picked = Array.isArray(value) ? elementsOf(value).map(pick) : pick(value as Document);
        const existing = target[info.name];
        target[info.name] =
          existing && !Array.isArray(existing) && !Array.isArray(picked)
            ? { ...(existing as Document), ...picked }
            : picked;
      } else {
        target[info.name] = value;
      }
    }
    return out;
  }

  const out: Document = structuredClone(resource);
  for (const entry of projection.excludedAttributes ?? []) {
    let found: ReturnType<typeof locate>;
    try {
      found = locate(entry);
    } catch (error) {
      if (error instanceof ScimError) continue;
      throw error;
    }
    if (!found?.info) continue;
    const { path, info } = found;
    if (ALWAYS_RETURNED.has(info.name) && path.schema === schemas.core) continue;
    const container = path.schema === schemas.core ? out : (out[path.schema] as Document | undefined);
    if (!container) continue;
    if (path.sub) {
      const sub = info.subAttributes?.get(path.sub.toLowerCase());
      const value = container[info.name];
      if (!sub || value === undefined) continue;
      for (const element of Array.isArray(value) ? elementsOf(value) : [value as Document])
        delete element[sub.name];
    } else {
      delete container[info.name];
    }
  }
  return out;
}

/** A multi-valued attribute's elements, without a null one a user may have stored before PATCH refused it. */
function elementsOf(values: unknown[]): Document[] {
  return values.filter((element): element is Document => element !== null && typeof element === 'object');
}
