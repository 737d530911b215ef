import {
  expandPathlessOperation,
  isManagerPath,
  normaliseLegacyPath,
  normaliseManagerValue,
  normaliseOperationName,
  normaliseScalarBoolean,
  type PatchOperation,
} from './dialects.js';
import { ScimError } from './errors.js';
import { type FilterNode, parseFilter } from './filter.js';
import { type AttributeInfo, ENTERPRISE_USER_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA } from './schemas.js';

/*
 * RFC 7644 §3.5.2 PATCH for a single resource document (a user). The document is small, so operations
 * are applied in memory and the result is validated against the schema as a whole; groups, whose member
 * lists can be huge, apply member operations in SQL instead (see groups.ts).
 */

export const MAX_PATCH_OPERATIONS = 1000;

/** Reads a PatchOp body into normalised operations (provider dialects applied). */
export function readPatchRequest(body: unknown): PatchOperation[] {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new ScimError(400, 'invalidSyntax', 'PATCH body must be a PatchOp object');
  }
  const request = body as { schemas?: unknown; Operations?: unknown; operations?: unknown };
  if (Array.isArray(request.schemas) && !request.schemas.includes(PATCH_OP_SCHEMA)) {
    throw new ScimError(400, 'invalidSyntax', `PATCH body must declare the schema ${PATCH_OP_SCHEMA}`);
  }
  const operations = request.Operations ?? request.operations;
  if (!Array.isArray(operations) || operations.length === 0) {
    throw new ScimError(400, 'invalidSyntax', 'PATCH body needs a non-empty "Operations" array');
  }
  if (operations.length > MAX_PATCH_OPERATIONS) {
    throw new ScimError(413, undefined, `a PATCH may carry at most ${MAX_PATCH_OPERATIONS} operations`);
  }
  return operations.flatMap((raw: unknown) => {
    if (!raw || typeof raw !== 'object')
      throw new ScimError(400, 'invalidSyntax', 'each operation must be an object');
    const { op, path, value } = raw as { op?: unknown; path?: unknown; value?: unknown };
    if (path !== undefined && (typeof path !== 'string' || path.trim() === '')) {
      throw new ScimError(400, 'invalidPath', '"path" must be a non-empty string');
    }
    const operation: PatchOperation = { op: normaliseOperationName(op), path: path?.trim(), value };
    if (operation.op === 'remove' && operation.path === undefined) {
      throw new ScimError(400, 'noTarget', 'a remove operation needs a "path"');
    }
    return expandPathlessOperation(operation).map((expanded): PatchOperation => {
      if (expanded.path === undefined) return expanded;
      const path = normaliseLegacyPath(expanded.path);
      // A pathless add's key set to null unassigns that attribute (RFC 7643 §2.5), as a replace would:
      // `{"title": null, "active": false}` must not lose the deactivation to a refusal.
      if (operation.path === undefined && expanded.value === null)
        return { op: 'remove', path, value: undefined };
      return { ...expanded, path };
    });
  });
}

export interface PatchPath {
  /** The schema the attribute lives in. */
  schema: string;
  /** The attribute name as written, resolved against the schema's catalog later. */
  attribute: string | undefined;
  sub: string | undefined;
  filter: FilterNode | undefined;
}

/** Parses `name.givenName`, `emails[type eq "work"].value`, `urn:…:User:manager`, `members[value eq "x"]`. */
export function parsePatchPath(path: string, coreSchema: string, extensions: string[] = []): PatchPath {
  let schema = coreSchema;
  let rest = path;
  for (const urn of [coreSchema, ...extensions]) {
    if (path.toLowerCase().startsWith(urn.toLowerCase())) {
      schema = urn;
      rest = path.slice(urn.length);
      if (rest === '') return { schema, attribute: undefined, sub: undefined, filter: undefined };
      if (!rest.startsWith(':')) throw new ScimError(400, 'invalidPath', `"${path}" is not a valid path`);
      rest = rest.slice(1);
      break;
    }
  }
  const bracket = rest.indexOf('[');
  let filter: FilterNode | undefined;
  let head = rest;
  let tail = '';
  if (bracket >= 0) {
    const close = rest.lastIndexOf(']');
    if (close < bracket) throw new ScimError(400, 'invalidPath', `"${path}" has an unclosed "["`);
    head = rest.slice(0, bracket);
    try {
      filter = parseFilter(rest.slice(bracket + 1, close));
    } catch (error) {
      throw new ScimError(400, 'invalidPath', `"${path}": ${(error as Error).message}`);
    }
    tail = rest.slice(close + 1);
    if (tail !== '' && !tail.startsWith('.'))
      throw new ScimError(400, 'invalidPath', `"${path}" is not a valid path`);
    tail = tail.slice(1);
  }
  const names = head.split('.');
  if (tail) names.push(tail);
  if (names.length > 2 || names.some((n) => !/^[A-Za-z$][\w$-]*$/.test(n))) {
    throw new ScimError(400, 'invalidPath', `"${path}" is not a valid path`);
  }
  return { schema, attribute: names[0], sub: names[1], filter };
}

type Document = Record<string, unknown>;

interface Catalogs {
  core: Map<string, AttributeInfo>;
  extensions: Map<string, Map<string, AttributeInfo>>;
}

/** Applies operations to a user document (canonical attribute names), returning a new document. */
export function applyUserPatch(
  document: Document,
  operations: PatchOperation[],
  catalogs: Catalogs,
): Document {
  // A null element stored before null values were refused (RFC 7643 §2.5: null is no value) is dropped
  // here, so no user stays unpatchable.
  const result = withoutNullElements(structuredClone(document));
  // Two primaries stored before a PATCH took the primary from the others: the later one stays.
  for (const primaries of primaryElements(result).values())
    for (const element of primaries.slice(0, -1)) element.primary = false;
  for (const operation of operations) applyOne(result, operation, catalogs);
  return result;
}

/** The document with null elements removed from its multi-valued attributes (and its extensions'). */
function withoutNullElements(document: Document): Document {
  for (const [key, value] of Object.entries(document)) {
    if (Array.isArray(value)) document[key] = value.filter((element) => element !== null);
    else if (key.startsWith('urn:') && value && typeof value === 'object')
      withoutNullElements(value as Document);
  }
  return document;
}

function applyOne(document: Document, operation: PatchOperation, catalogs: Catalogs): void {
  const primariesBefore = primaryElements(document);
  applyOperation(document, operation, catalogs);
  // RFC 7644 §3.5.2: a value an operation makes primary takes it from the others.
  for (const [name, after] of primaryElements(document)) {
    const before = primariesBefore.get(name) ?? [];
    const made = after.filter((element) => !before.includes(element));
    if (made.length === 0) continue;
    // The last value this operation made primary keeps it.
    for (const element of after) if (element !== made.at(-1)) element.primary = false;
  }
}

/** Each multi-valued attribute's elements marked primary, the extension's under their URN-qualified name. */
function primaryElements(document: Document): Map<string, Document[]> {
  const found = new Map<string, Document[]>();
  const visit = (container: Document, prefix: string) => {
    for (const [key, value] of Object.entries(container)) {
      if (Array.isArray(value)) {
        const primaries = value.filter(
          (element): element is Document =>
            !!element &&
            typeof element === 'object' &&
            normaliseScalarBoolean((element as Document).primary) === true,
        );
        if (primaries.length > 0) found.set(prefix + key, primaries);
      } else if (key.startsWith('urn:') && value && typeof value === 'object')
        visit(value as Document, `${key}:`);
    }
  };
  visit(document, '');
  return found;
}

function applyOperation(document: Document, operation: PatchOperation, catalogs: Catalogs): void {
  const rawPath = operation.path!;
  // RFC 7643 §2.5: null is no value. Replacing with it unassigns; adding it is refused (a stored null
  // element would break every later PATCH of the attribute).
  if (operation.value === null && operation.op === 'add')
    throw new ScimError(400, 'invalidValue', `"add" of "${rawPath}" needs a value, not null`);
  const op = operation.value === null ? 'remove' : operation.op;
  const path = parsePatchPath(rawPath, USER_SCHEMA, [ENTERPRISE_USER_SCHEMA]);
  const container = containerFor(document, path.schema);

  if (path.attribute === undefined) {
    // The path names a whole extension: merge (add/replace) or drop (remove) it.
    if (op === 'remove') delete document[path.schema];
    else if (operation.value && typeof operation.value === 'object')
      Object.assign(container, operation.value);
    else throw new ScimError(400, 'invalidValue', `"${rawPath}" needs an object value`);
    return;
  }

  const catalog = path.schema === USER_SCHEMA ? catalogs.core : catalogs.extensions.get(path.schema)!;
  const info = catalog.get(path.attribute.toLowerCase());
  if (!info) {
    // RFC 7644 §3.5.2: an unknown attribute in a path is invalidPath; readOnly core attributes are ignored.
    throw new ScimError(400, 'invalidPath', `unknown attribute "${path.attribute}" in path "${rawPath}"`);
  }
  const name = info.name;
  if (name === 'id' || name === 'meta' || name === 'groups' || name === 'schemas' || name === 'password')
    return;

  let value = operation.value;
  if (info.type === 'boolean') value = normaliseScalarBoolean(value);
  if (
    path.schema === ENTERPRISE_USER_SCHEMA &&
    isManagerPath(`${ENTERPRISE_USER_SCHEMA}:${name}`) &&
    !path.sub
  ) {
    value = normaliseManagerValue(value);
    if (value === undefined) {
      delete container[name];
      return;
    }
  }

  const subInfo = path.sub ? info.subAttributes?.get(path.sub.toLowerCase()) : undefined;
  if (path.sub && !subInfo)
    throw new ScimError(400, 'invalidPath', `"${rawPath}": ${name} has no sub-attribute "${path.sub}"`);
  if (subInfo?.type === 'boolean') value = normaliseScalarBoolean(value);

  if (path.filter) {
    if (!info.multiValued)
      throw new ScimError(400, 'invalidPath', `"${rawPath}": ${name} is not multi-valued`);
    applyToMatchingElements(container, name, info, path.filter, subInfo, op, value, rawPath);
    return;
  }

  if (subInfo) {
    if (info.multiValued) {
      // `emails.value` without a filter addresses every element (RFC 7644 §3.5.2.3).
      const elements = Array.isArray(container[name]) ? (container[name] as Document[]) : [];
      for (const element of elements) setOrDelete(element, subInfo.name, op, value);
      return;
    }
    const parent = (
      container[name] && typeof container[name] === 'object' ? container[name] : {}
    ) as Document;
    setOrDelete(parent, subInfo.name, op, value);
    container[name] = parent;
    if (Object.keys(parent).length === 0) delete container[name];
    return;
  }

  if (op === 'remove') {
    delete container[name];
  } else if (info.multiValued && op === 'add') {
    const existing = Array.isArray(container[name]) ? (container[name] as unknown[]) : [];
    const added = Array.isArray(value) ? value : [value];
    // A value already there is not added again (RFC 7644 §3.5.2.1), whatever order its keys come in: an
    // IdP retrying an add sends `{value, type}` for the `{type, value}` stored.
    const sameness = (element: unknown) => canonicalJson(comparable(element, info));
    const seen = new Set(existing.map(sameness));
    const fresh = added.filter((item) => {
      const key = sameness(item);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    container[name] = [...existing, ...fresh];
  } else if (!info.multiValued && info.subAttributes && op === 'add' && value && typeof value === 'object') {
    container[name] = { ...((container[name] as Document | undefined) ?? {}), ...(value as Document) };
  } else {
    container[name] = value;
  }
  if (path.schema !== USER_SCHEMA && Object.keys(container).length === 0) delete document[path.schema];
}

/**
 * An element as it compares to others of its attribute: sub-attribute names canonical, booleans sent as
 * strings read, and strings of sub-attributes that are not caseExact (a `type`, an e-mail) lower-cased.
 */
function comparable(element: unknown, info: AttributeInfo): unknown {
  if (!element || typeof element !== 'object' || Array.isArray(element)) return element;
  return Object.fromEntries(
    Object.entries(element as Document).map(([key, value]) => {
      const sub = info.subAttributes?.get(key.toLowerCase());
      if (!sub) return [key, value];
      if (sub.type === 'boolean') return [sub.name, normaliseScalarBoolean(value)];
      return [sub.name, typeof value === 'string' && !sub.caseExact ? value.toLowerCase() : value];
    }),
  );
}

/** JSON with object keys in one order, so equal values compare equal. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

function containerFor(document: Document, schema: string): Document {
  if (schema === USER_SCHEMA) return document;
  const existing = document[schema];
  if (existing && typeof existing === 'object' && !Array.isArray(existing)) return existing as Document;
  const created: Document = {};
  document[schema] = created;
  return created;
}

function setOrDelete(target: Document, name: string, op: PatchOperation['op'], value: unknown): void {
  if (op === 'remove') delete target[name];
  else target[name] = value;
}

function applyToMatchingElements(
  container: Document,
  name: string,
  info: AttributeInfo,
  filter: FilterNode,
  subInfo: AttributeInfo | undefined,
  op: PatchOperation['op'],
  value: unknown,
  rawPath: string,
): void {
  const elements = Array.isArray(container[name]) ? (container[name] as Document[]) : [];
  const matches = elements.filter((element) => elementMatches(filter, element, info));
  if (op === 'remove') {
    if (subInfo) for (const element of matches) delete element[subInfo.name];
    else container[name] = elements.filter((element) => !matches.includes(element));
    return;
  }
  if (matches.length === 0) {
    // Entra adds `emails[type eq "work"].value` for a user who has no work e-mail yet: create the element
    // the filter describes, when the filter is a plain equality we can read it from.
    const seed = equalitySeed(filter, info);
    if (!seed) throw new ScimError(400, 'noTarget', `"${rawPath}" matches no value to ${op}`);
    const element: Document = subInfo
      ? { ...seed, [subInfo.name]: value }
      : { ...seed, ...(value as Document) };
    container[name] = [...elements, element];
    return;
  }
  for (const element of matches) {
    if (subInfo) element[subInfo.name] = value;
    else if (value && typeof value === 'object') Object.assign(element, value);
    else throw new ScimError(400, 'invalidValue', `"${rawPath}" needs an object value`);
  }
}

/** `type eq "work"` → `{type: "work"}`; anything more complex cannot seed a new element. */
function equalitySeed(filter: FilterNode, info: AttributeInfo): Document | undefined {
  if (filter.kind === 'compare' && filter.operator === 'eq') {
    const sub = info.subAttributes?.get(filter.path.names.at(-1)!.toLowerCase());
    return sub ? { [sub.name]: filter.value } : undefined;
  }
  if (filter.kind === 'and') {
    const left = equalitySeed(filter.left, info);
    const right = equalitySeed(filter.right, info);
    return left && right ? { ...left, ...right } : undefined;
  }
  return undefined;
}

/** Evaluates an element filter against one element of a multi-valued attribute (a handful of values). */
export function elementMatches(filter: FilterNode, element: Document, info: AttributeInfo): boolean {
  switch (filter.kind) {
    case 'and':
      return elementMatches(filter.left, element, info) && elementMatches(filter.right, element, info);
    case 'or':
      return elementMatches(filter.left, element, info) || elementMatches(filter.right, element, info);
    case 'not':
      return !elementMatches(filter.operand, element, info);
    case 'valuePath':
      throw new ScimError(400, 'invalidPath', 'value paths cannot be nested');
    case 'present': {
      const v = fieldOf(element, filter.path.names.at(-1)!);
      return v !== undefined && v !== null && v !== '';
    }
    case 'compare': {
      const sub = info.subAttributes?.get(filter.path.names.at(-1)!.toLowerCase());
      const actual = fieldOf(element, filter.path.names.at(-1)!);
      const caseExact = sub?.caseExact ?? false;
      const norm = (v: unknown) => (typeof v === 'string' && !caseExact ? v.toLowerCase() : v);
      const a = norm(typeof actual === 'boolean' || typeof actual === 'number' ? actual : (actual ?? null));
      const b = norm(filter.value);
      switch (filter.operator) {
        case 'eq':
          return String(a) === String(b);
        case 'ne':
          return String(a) !== String(b);
        case 'co':
          return typeof a === 'string' && a.includes(String(b));
        case 'sw':
          return typeof a === 'string' && a.startsWith(String(b));
        case 'ew':
          return typeof a === 'string' && a.endsWith(String(b));
        case 'gt':
          return a !== null && String(a) > String(b);
        case 'ge':
          return a !== null && String(a) >= String(b);
        case 'lt':
          return a !== null && String(a) < String(b);
        case 'le':
          return a !== null && String(a) <= String(b);
      }
    }
  }
}

function fieldOf(element: Document, name: string): unknown {
  const key = Object.keys(element).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : element[key];
}
