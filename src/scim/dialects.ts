import { ScimError } from './errors.js';
import { ENTERPRISE_USER_SCHEMA } from './schemas.js';

/*
 * What Okta and Microsoft Entra ID really send, made standard before anything else looks at it. Each
 * quirk is one small pure function that returns its input unchanged when there is nothing to do; the
 * tests named after each provider pin them.
 */

export type PatchOpName = 'add' | 'replace' | 'remove';

export interface PatchOperation {
  op: PatchOpName;
  path: string | undefined;
  value: unknown;
}

/**
 * Entra sends `Add`, `Replace`, `Remove` (capitalised); RFC 7644 §3.5.2 names them in lower case.
 * Anything else is not an operation.
 */
export function normaliseOperationName(op: unknown): PatchOpName {
  const name = typeof op === 'string' ? op.toLowerCase() : '';
  if (name === 'add' || name === 'replace' || name === 'remove') return name;
  throw new ScimError(
    400,
    'invalidSyntax',
    `"${String(op)}" is not a PATCH operation (add, replace or remove)`,
  );
}

/**
 * Entra sends booleans as strings: `"active": "False"`, `"primary": "True"`. Turns exactly the strings
 * "true"/"false" (any case) into booleans, for the names given; other values are left for validation
 * to reject.
 */
export function normaliseStringBooleans(value: unknown, booleanNames: ReadonlySet<string>): unknown {
  if (Array.isArray(value)) return value.map((item) => normaliseStringBooleans(item, booleanNames));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    if (booleanNames.has(key.toLowerCase()) && typeof inner === 'string' && /^(true|false)$/i.test(inner)) {
      out[key] = inner.toLowerCase() === 'true';
    } else {
      out[key] = normaliseStringBooleans(inner, booleanNames);
    }
  }
  return out;
}

/** A PATCH value that is itself a string boolean, e.g. Entra's `{"path":"active","value":"False"}`. */
export function normaliseScalarBoolean(value: unknown): unknown {
  return typeof value === 'string' && /^(true|false)$/i.test(value) ? value.toLowerCase() === 'true' : value;
}

/**
 * Entra's pathless `replace` (and `add`) carries dotted and URN-qualified keys in its value:
 * `{"name.givenName": "Ada", "urn:…:enterprise:2.0:User:employeeNumber": "7"}`. Okta's carries plain
 * keys, e.g. `{"active": false}` or, for a group rename, `{"id": "…", "displayName": "…"}`. Splits such
 * a value into one operation per key with an explicit path, which every later step understands.
 */
export function expandPathlessOperation(operation: PatchOperation): PatchOperation[] {
  if (operation.path !== undefined || operation.op === 'remove') return [operation];
  const value = operation.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ScimError(400, 'invalidValue', `a ${operation.op} without "path" needs an object as its value`);
  }
  return Object.entries(value as Record<string, unknown>)
    .filter(([key]) => key !== 'schemas')
    .map(([key, inner]) => ({ op: operation.op, path: key, value: inner }));
}

/**
 * Entra sets the enterprise manager with a bare id string (`"value": "26118915-…"`) and clears it with
 * an empty string; RFC 7643 §4.3 defines manager as a complex attribute with a `value`. Returns the
 * complex form, or undefined for "clear".
 */
export function normaliseManagerValue(value: unknown): unknown {
  if (typeof value === 'string') return value === '' ? undefined : { value };
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const manager = value as Record<string, unknown>;
    if (manager.value === '' || manager.value === null) return undefined;
  }
  return value;
}

/** True for a path that names the enterprise manager, in any of the spellings clients use. */
export function isManagerPath(path: string): boolean {
  const lower = path.toLowerCase();
  return lower === `${ENTERPRISE_USER_SCHEMA.toLowerCase()}:manager` || lower === 'manager';
}

/**
 * Member values arrive as `[{"value": id, "display": …}]` (RFC), with `displayName` instead of
 * `display` (Microsoft's tests), as a single object, or as a bare id string (Microsoft's garbage
 * tests). Returns the ids with the display text the client gave.
 */
export function normaliseMemberValues(value: unknown): { id: string; display: string | undefined }[] {
  if (value === undefined || value === null) return [];
  const items = Array.isArray(value) ? value : [value];
  return items.map((item) => {
    if (typeof item === 'string') return { id: item, display: undefined };
    if (item && typeof item === 'object' && typeof (item as { value?: unknown }).value === 'string') {
      const member = item as { value: string; display?: unknown; displayName?: unknown };
      const display = typeof member.display === 'string' ? member.display : member.displayName;
      return { id: member.value, display: typeof display === 'string' ? display : undefined };
    }
    throw new ScimError(400, 'invalidValue', 'each member must be an object with a string "value"');
  });
}
