import { and, eq, getTableColumns, isNull, sql } from 'drizzle-orm';
import { type AccountName, InvalidAccountName, parseAccountName } from '../accounts/account-name.js';
import { recordAudit } from '../audit/audit-log.js';
import { changeStamp } from '../db/change-stamp.js';
import type { Database } from '../db/client.js';
import { againAfterDeadlock } from '../db/deadlocks.js';
import { countMemberChanges } from '../db/group-versions.js';
import { groupMembers, USER_KEYS_FROM_COLUMNS, users } from '../db/schema.js';
import { isUuid } from '../db/uuid.js';
import { isUniqueViolation, violatedConstraint } from '../errors.js';
import { recordForReconcile } from '../jobs/outbox.js';
import type { PatchOperation } from './dialects.js';
import {
  dropEmptyTemplateValues,
  normaliseLegacyManager,
  normaliseLegacySchemaUrns,
  normaliseStringBooleans,
  unknownSchemaError,
  wrapSingleComplexValues,
} from './dialects.js';
import { ScimError } from './errors.js';
import { checkLength } from './limits.js';
import { applyUserPatch } from './patch.js';
import {
  ENTERPRISE_USER_SCHEMA,
  enterpriseAttributes,
  USER_SCHEMA,
  userAttributes,
  userDefinition,
} from './schemas.js';

/**
 * A user's columns, without the SCIM rendering PostgreSQL keeps beside them (users.scim_head and
 * scim_tail, which only reads splice): a write reading them back would move a second copy of the
 * user's attributes for nothing.
 */
const { scimHead: _scimHead, scimTail: _scimTail, ...userColumns } = getTableColumns(users);
export type UserRow = Omit<typeof users.$inferSelect, 'scimHead' | 'scimTail'>;
type Document = Record<string, unknown>;
type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

export interface UserInput {
  userName: string;
  externalId: string | null;
  /**
   * undefined when the document does not assert it: a create makes the user active, a PUT or PATCH keeps
   * the user as they were. In an offboarding product an attribute left out must never reactivate anyone.
   */
  active: boolean | undefined;
  /** Every other attribute, canonically named; the enterprise extension under its URN. */
  attributes: Document;
}

/** Who asked, for the audit trail. */
export interface RequestContext {
  actor: string;
  correlationId: string | undefined;
}

const BOOLEAN_ATTRIBUTES = new Set(['active', 'primary']);
const MULTI_VALUED_ATTRIBUTES = new Set(
  [...userAttributes.values()].filter((a) => a.multiValued).map((a) => a.name.toLowerCase()),
);
const NOT_STORED = [...USER_KEYS_FROM_COLUMNS, 'password'];

export { isUuid } from '../db/uuid.js';

/** Reads a User body (POST, PUT) into what is stored. */
export function readUserInput(body: unknown): UserInput {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new ScimError(400, 'invalidSyntax', 'request body must be a User object');
  }
  const input = validateUser(normaliseUserBody(body as Document));
  // In a POST or PUT body; a PATCH takes the primary from the others instead (patch.ts).
  refuseSecondPrimary(input.attributes);
  return input;
}

/** Every provider dialect a POST or PUT body may speak, made RFC 7643 before validation. */
function normaliseUserBody(body: Document): Document {
  const rfc = normaliseLegacySchemaUrns(body, USER_SCHEMA);
  const schemas = rfc.schemas;
  if (schemas !== undefined && (!Array.isArray(schemas) || !schemas.includes(USER_SCHEMA))) {
    throw unknownSchemaError(schemas, USER_SCHEMA, [ENTERPRISE_USER_SCHEMA]);
  }
  if (rfc[ENTERPRISE_USER_SCHEMA] !== undefined) {
    rfc[ENTERPRISE_USER_SCHEMA] = normaliseLegacyManager(rfc[ENTERPRISE_USER_SCHEMA]);
  }
  return wrapSingleComplexValues(dropEmptyTemplateValues(rfc), MULTI_VALUED_ATTRIBUTES);
}

/**
 * Validates a User document (a normalised body, or the result of a PATCH) against the schema with
 * scimmy: names canonicalised, types checked, unknown and read-only attributes dropped, passwords never kept.
 */
function validateUser(body: Document): UserInput {
  const normalised = withCanonicalTypes(normaliseStringBooleans(body, BOOLEAN_ATTRIBUTES) as Document);
  const withSchemas: Document = {
    ...normalised,
    // scimmy only reads the enterprise extension when its URN is declared in schemas.
    schemas: [USER_SCHEMA, ...(hasKey(normalised, ENTERPRISE_USER_SCHEMA) ? [ENTERPRISE_USER_SCHEMA] : [])],
  };
  for (const key of Object.keys(withSchemas)) {
    if (['id', 'meta', 'groups', 'password'].includes(key.toLowerCase())) delete withSchemas[key];
  }
  let coerced: Document;
  try {
    coerced = userDefinition.coerce(withSchemas, 'in') as Document;
  } catch (error) {
    throw new ScimError(400, 'invalidValue', (error as Error).message);
  }
  if (typeof coerced.userName !== 'string' || coerced.userName.trim() === '') {
    throw new ScimError(400, 'invalidValue', 'userName is required and must be a non-empty string');
  }
  let userName: AccountName;
  try {
    userName = parseAccountName(coerced.userName);
  } catch (error) {
    if (error instanceof InvalidAccountName)
      throw new ScimError(400, 'invalidValue', `userName: ${error.reason}`);
    throw error;
  }
  if (typeof coerced.externalId === 'string') checkLength('externalId', coerced.externalId);
  const attributes: Document = {};
  for (const [key, value] of Object.entries(coerced)) {
    if (!NOT_STORED.includes(key) && value !== undefined) attributes[key] = value;
  }
  const enterprise = attributes[ENTERPRISE_USER_SCHEMA] as Document | undefined;
  if (enterprise && Object.keys(enterprise).length === 0) delete attributes[ENTERPRISE_USER_SCHEMA];
  return {
    userName,
    externalId:
      typeof coerced.externalId === 'string' && coerced.externalId !== '' ? coerced.externalId : null,
    active: coerced.active === undefined || coerced.active === null ? undefined : Boolean(coerced.active),
    attributes,
  };
}

/**
 * Canonical `type` values (`work`, `home`, …) per multi-valued attribute, by lower case: `type` is not
 * caseExact (RFC 7643 §4.1.2), so `Work` is `work`, stored in its canonical spelling. scimmy compares them
 * exactly and would refuse the user.
 */
const CANONICAL_TYPES = new Map(
  [...userAttributes.values()]
    .filter((attribute) => attribute.multiValued && attribute.subAttributes?.has('type'))
    .flatMap((attribute) => {
      const values = userDefinition.attribute(`${attribute.name}.type`).config.canonicalValues;
      return Array.isArray(values)
        ? [
            [
              attribute.name.toLowerCase(),
              new Map(values.map((v) => [String(v).toLowerCase(), String(v)])),
            ] as const,
          ]
        : [];
    }),
);

function withCanonicalTypes(document: Document): Document {
  for (const [key, value] of Object.entries(document)) {
    const canonical = CANONICAL_TYPES.get(key.toLowerCase());
    if (!canonical || !Array.isArray(value)) continue;
    document[key] = value.map((element) => {
      if (!element || typeof element !== 'object') return element;
      const typeKey = Object.keys(element).find((k) => k.toLowerCase() === 'type');
      const type = typeKey && (element as Document)[typeKey];
      const spelled = typeof type === 'string' ? canonical.get(type.toLowerCase()) : undefined;
      return spelled ? { ...element, [typeKey!]: spelled } : element;
    });
  }
  return document;
}

/** RFC 7643 §2.4: `"primary": true` appears at most once in a multi-valued attribute. */
function refuseSecondPrimary(document: Document): void {
  for (const [key, value] of Object.entries(document)) {
    if (!Array.isArray(value)) continue;
    if (value.filter((element) => (element as Document | null)?.primary === true).length > 1)
      throw new ScimError(400, 'invalidValue', `at most one of ${key} may be primary (RFC 7643 §2.4)`);
  }
}

function hasKey(document: Document, key: string): boolean {
  return Object.keys(document).some((k) => k.toLowerCase() === key.toLowerCase());
}

/** The editable form of a stored user, which PATCH operates on. */
function documentOf(row: UserRow): Document {
  return {
    userName: row.userName,
    ...(row.externalId ? { externalId: row.externalId } : {}),
    active: row.active,
    ...(row.attributes as Document),
  };
}

function uniquenessError(error: unknown, input: UserInput): ScimError {
  const constraint = violatedConstraint(error);
  if (constraint === 'users_tenant_external_id_key') {
    return new ScimError(409, 'uniqueness', `a user with externalId "${input.externalId}" already exists`);
  }
  return new ScimError(409, 'uniqueness', `a user with userName "${input.userName}" already exists`);
}

/** The summary kept in the audit log: identifiers and state, not the whole profile. */
const auditView = (row: Pick<UserRow, 'userName' | 'externalId' | 'active'>) => ({
  userName: row.userName,
  externalId: row.externalId,
  active: row.active,
});

async function recordUserChange(
  tx: Transaction,
  tenantId: string,
  userId: string,
  event: 'user.created' | 'user.updated' | 'user.deactivated' | 'user.reactivated' | 'user.deleted',
  context: RequestContext,
  before: Document | null,
  after: Document | null,
): Promise<void> {
  // Deactivation and deletion are offboarding: they go to the lane that is never kept waiting.
  const lane = event === 'user.deactivated' || event === 'user.deleted' ? 'deprovision' : 'reconcile';
  const cause = { event, source: 'scim', at: new Date().toISOString(), correlationId: context.correlationId };
  await recordForReconcile(tx, [{ tenantId, lane, subjectType: 'user', subjectId: userId, cause }]);
  await recordAudit(tx, {
    tenantId,
    actor: context.actor,
    action: `scim.${event}`,
    subjectType: 'user',
    subjectId: userId,
    before,
    after,
    correlationId: context.correlationId,
  });
}

function changeEvent(before: boolean, after: boolean) {
  if (before && !after) return 'user.deactivated' as const;
  if (!before && after) return 'user.reactivated' as const;
  return 'user.updated' as const;
}

const live = (tenantId: string, id: string) =>
  and(eq(users.tenantId, tenantId), eq(users.id, id), isNull(users.deprovisionedAt));

async function lockUser(tx: Transaction, tenantId: string, id: string): Promise<UserRow> {
  if (!isUuid(id)) throw new ScimError(404, undefined, `User ${id} not found`);
  const [row] = await tx.select(userColumns).from(users).where(live(tenantId, id)).for('update');
  if (!row) throw new ScimError(404, undefined, `User ${id} not found`);
  return row;
}

/** RFC 7644 §3.14: a weak ETag from the row version; If-Match `*` matches any current version. */
export function etagOf(version: number): string {
  return `W/"${version}"`;
}

export function checkIfMatch(ifMatch: string | undefined, version: number): void {
  if (ifMatch === undefined) return;
  const accepted = ifMatch.split(',').map((tag) => tag.trim());
  if (accepted.includes('*') || accepted.includes(etagOf(version)) || accepted.includes(`"${version}"`))
    return;
  throw new ScimError(412, undefined, `resource has changed: its version is ${etagOf(version)}`);
}

async function saveUser(
  tx: Transaction,
  current: UserRow,
  next: UserInput,
  context: RequestContext,
): Promise<UserRow> {
  try {
    const [row] = await tx
      .update(users)
      .set({
        ...next,
        active: next.active ?? current.active,
        version: current.version + 1,
        updatedAt: changeStamp,
      })
      .where(eq(users.id, current.id))
      .returning(userColumns);
    await recordUserChange(
      tx,
      current.tenantId,
      current.id,
      changeEvent(current.active, row!.active),
      context,
      auditView(current),
      auditView(row!),
    );
    return row!;
  } catch (error) {
    if (isUniqueViolation(error)) throw uniquenessError(error, next);
    throw error;
  }
}

export async function replaceUser(
  db: Database,
  tenantId: string,
  id: string,
  input: UserInput,
  ifMatch: string | undefined,
  context: RequestContext,
): Promise<UserRow> {
  try {
    return await db.transaction(async (tx) => {
      const current = await lockUser(tx, tenantId, id);
      checkIfMatch(ifMatch, current.version);
      return saveUser(tx, current, input, context);
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw uniquenessError(error, input);
    throw error;
  }
}

export async function patchUser(
  db: Database,
  tenantId: string,
  id: string,
  operations: PatchOperation[],
  ifMatch: string | undefined,
  context: RequestContext,
): Promise<UserRow> {
  return db.transaction(async (tx) => {
    const current = await lockUser(tx, tenantId, id);
    checkIfMatch(ifMatch, current.version);
    const patched = applyUserPatch(documentOf(current), operations, {
      core: userAttributes,
      extensions: new Map([[ENTERPRISE_USER_SCHEMA, enterpriseAttributes]]),
    });
    const next = validateUser(patched);
    return saveUser(tx, current, next, context);
  });
}

/**
 * SCIM DELETE deprovisions: the user becomes a tombstone (404 from now on, userName free for reuse),
 * leaves every group (each group's version counts the change), and the deprovisioning cascade is queued
 * in the same transaction. It locks the user, then each group it is in, then the memberships; a PUT,
 * DELETE or If-Match write of one of those groups locks the group first and then may need this user's
 * row (to add them): if PostgreSQL aborts this to break that deadlock, it runs again.
 */
export async function deleteUser(...request: Parameters<typeof deprovisionUser>): Promise<void> {
  await againAfterDeadlock(() => deprovisionUser(...request));
}

async function deprovisionUser(
  db: Database,
  tenantId: string,
  id: string,
  ifMatch: string | undefined,
  context: RequestContext,
): Promise<void> {
  await db.transaction(async (tx) => {
    const current = await lockUser(tx, tenantId, id);
    checkIfMatch(ifMatch, current.version);
    // The groups before their memberships, as group writes lock them: a PUT or If-Match write that
    // holds one and removes this user goes first, instead of waiting on a membership this holds.
    await tx.execute(sql`
      SELECT g.id FROM groups g
      WHERE g.id IN (SELECT gm.group_id FROM ${groupMembers} gm WHERE gm.user_id = ${id})
      ORDER BY g.id FOR KEY SHARE`);
    const leftGroups = await tx
      .delete(groupMembers)
      .where(eq(groupMembers.userId, id))
      .returning({ groupId: groupMembers.groupId });
    await countMemberChanges(
      tx,
      leftGroups.map((g) => g.groupId),
    );
    await tx
      .update(users)
      .set({
        active: false,
        deprovisionedAt: new Date(),
        version: current.version + 1,
        updatedAt: changeStamp,
      })
      .where(eq(users.id, id));
    await recordUserChange(tx, tenantId, id, 'user.deleted', context, auditView(current), {
      ...auditView({ ...current, active: false }),
      leftGroups: leftGroups.map((g) => g.groupId),
    });
  });
}
