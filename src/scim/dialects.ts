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

/*
 * OneLogin. Its SCIM connectors send whatever the app's "SCIM JSON Template" renders: the template is
 * admin-editable text in which `{$user.…}`/`{$parameters.…}` are substituted as strings. Sources:
 * OneLogin's developer guide "Define Your SCIM User Schema" (developers.onelogin.com/scim/define-user-schema:
 * core template `urn:scim:schemas:core:1.0`, enterprise template with `urn:scim:schemas:extension:enterprise:1.0`,
 * a single `emails` object and `manager.managerId`) and a OneLogin "SCIM v2 Enterprise" connector seen in a
 * proxy log sending `urn:scim:schemas:core:2.0` with `urn:scim:schemas:extension:enterprise:2.0`.
 */

type Document = Record<string, unknown>;

/** Pre-RFC URNs (SCIM 1.1 drafts, and OneLogin's templates) → what each stands for in RFC 7643. */
const LEGACY_CORE_URNS = ['urn:scim:schemas:core:2.0', 'urn:scim:schemas:core:1.0'];
const LEGACY_ENTERPRISE_URNS = [
  'urn:scim:schemas:extension:enterprise:2.0',
  'urn:scim:schemas:extension:enterprise:1.0',
];

const isLegacyCore = (urn: string) => LEGACY_CORE_URNS.includes(urn.toLowerCase());
const isLegacyEnterprise = (urn: string) => LEGACY_ENTERPRISE_URNS.includes(urn.toLowerCase());

/**
 * OneLogin: `"schemas": ["urn:scim:schemas:core:2.0", "urn:scim:schemas:extension:enterprise:2.0"]` (or the
 * 1.0 spellings), with the enterprise attributes under the legacy extension URN as a key. Rewrites both the
 * `schemas` entries and the extension key to the RFC 7643 URNs of the resource (`coreSchema`: User or
 * Group), so responses carry only RFC URNs. Unknown URNs are left for validation to reject.
 */
export function normaliseLegacySchemaUrns(body: Document, coreSchema: string): Document {
  const out: Document = {};
  for (const [key, value] of Object.entries(body)) {
    if (key.toLowerCase() === 'schemas' && Array.isArray(value)) {
      const rewritten = value.map((urn) =>
        typeof urn !== 'string'
          ? urn
          : isLegacyCore(urn)
            ? coreSchema
            : isLegacyEnterprise(urn)
              ? ENTERPRISE_USER_SCHEMA
              : urn,
      );
      out[key] = [...new Set(rewritten)];
    } else if (isLegacyEnterprise(key)) {
      out[ENTERPRISE_USER_SCHEMA] = value;
    } else {
      out[key] = value;
    }
  }
  return out;
}

/**
 * OneLogin PATCH paths written against the legacy URNs: `urn:scim:schemas:extension:enterprise:2.0:department`
 * names the RFC enterprise attribute, `urn:scim:schemas:core:2.0:title` the core one.
 */
export function normaliseLegacyPath(path: string): string {
  const lower = path.toLowerCase();
  for (const urn of LEGACY_ENTERPRISE_URNS) {
    if (lower === urn || lower.startsWith(`${urn}:`)) return ENTERPRISE_USER_SCHEMA + path.slice(urn.length);
  }
  for (const urn of LEGACY_CORE_URNS) {
    if (lower.startsWith(`${urn}:`)) return path.slice(urn.length + 1);
  }
  return path;
}

/**
 * OneLogin renders a template parameter that has no value as `""`, and two empty parameters joined by a
 * space (its manager template: `"{$user.manager_firstname} {$user.manager_lastname}"`) as `" "`. Such a
 * string means "not set": it is dropped, and so is a complex value or an element of a multi-valued
 * attribute left with nothing but its `type`/`primary` labels (an `emails` entry without an address).
 */
export function dropEmptyTemplateValues(document: Document): Document {
  const out: Document = {};
  for (const [key, value] of Object.entries(document)) {
    const kept = keepMeaningful(value);
    if (kept !== undefined) out[key] = kept;
  }
  return out;
}

const LABELS_ONLY = new Set(['type', 'primary', 'display']);

function keepMeaningful(value: unknown): unknown {
  if (typeof value === 'string') return value.trim() === '' ? undefined : value;
  if (Array.isArray(value)) {
    const items = value.map(keepMeaningful).filter((item) => item !== undefined);
    // An array the template rendered empty stays an (empty) array only if it was sent empty.
    return items.length === 0 && value.length > 0 ? undefined : items;
  }
  if (value !== null && typeof value === 'object') {
    const inner = dropEmptyTemplateValues(value as Document);
    const keys = Object.keys(inner);
    return keys.length === 0 || keys.every((k) => LABELS_ONLY.has(k)) ? undefined : inner;
  }
  return value;
}

/**
 * OneLogin's enterprise template sends `"emails": {"value": …, "type": "work", "primary": true}`, one
 * object where RFC 7643 has a list. Wraps a single object in a list for the multi-valued attributes named.
 */
export function wrapSingleComplexValues(document: Document, multiValued: ReadonlySet<string>): Document {
  const out: Document = {};
  for (const [key, value] of Object.entries(document)) {
    const single = value !== null && typeof value === 'object' && !Array.isArray(value);
    out[key] = single && multiValued.has(key.toLowerCase()) ? [value] : value;
  }
  return out;
}

/**
 * OneLogin's enterprise template names the manager's id `managerId` (SCIM 1.1); RFC 7643 §4.3 calls it
 * `value`. A manager left with no id at all (OneLogin: the user has none) is dropped.
 */
export function normaliseLegacyManager(enterprise: unknown): unknown {
  if (enterprise === null || typeof enterprise !== 'object' || Array.isArray(enterprise)) return enterprise;
  const extension = enterprise as Document;
  const key = Object.keys(extension).find((k) => k.toLowerCase() === 'manager');
  const manager = key === undefined ? undefined : extension[key];
  if (!key || manager === null || typeof manager !== 'object' || !('managerId' in manager)) return enterprise;
  const { managerId, ...rest } = manager as Document;
  const complex = rest.value === undefined ? { ...rest, value: managerId } : rest;
  const { [key]: _dropped, ...others } = extension;
  return typeof complex.value !== 'string' || complex.value.trim() === ''
    ? others
    : { ...others, [key]: complex };
}

/**
 * The error for a body whose `schemas` names no URN idsync knows: which URN to use, and where to fix it,
 * since the body comes from an IdP template (OneLogin's "SCIM JSON Template", Okta's and Entra's mappings).
 */
export function unknownSchemaError(schemas: unknown, required: string, alsoAllowed: string[]): ScimError {
  const sent = Array.isArray(schemas)
    ? schemas.map((s) => JSON.stringify(s)).join(', ')
    : JSON.stringify(schemas);
  const wanted = [required, ...alsoAllowed].map((s) => `"${s}"`).join(', ');
  return new ScimError(
    400,
    'invalidSyntax',
    `"schemas" must include ${required}, but it was [${sent}]; fix the IdP's template (in OneLogin: the app's ` +
      `Configuration → SCIM JSON Template) to send "schemas": [${wanted}]`,
  );
}
