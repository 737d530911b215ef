import { type SQL, sql } from 'drizzle-orm';
import { parseMillisecond } from '../dates.js';
import { groupLastModified } from '../db/group-versions.js';
import { accountKeyOf, groupMembers, groups, users } from '../db/schema.js';
import { ScimError } from './errors.js';
import type { AttributePath, CompareOperator, FilterNode, FilterValue } from './filter.js';
import {
  type AttributeInfo,
  type AttributeType,
  ENTERPRISE_USER_SCHEMA,
  enterpriseAttributes,
  GROUP_SCHEMA,
  groupAttributes,
  USER_SCHEMA,
  userAttributes,
} from './schemas.js';

/*
 * Translates a parsed SCIM filter into a SQL condition, so PostgreSQL does the filtering (and uses its
 * indexes) instead of JavaScript walking a tenant's users. Every value is a bound parameter.
 */

const invalid = (message: string) => new ScimError(400, 'invalidFilter', message);

/** Where a scalar lives: a real column, or a path inside the resource's jsonb document. */
type Scalar = {
  type: AttributeType;
  caseExact: boolean;
  text: SQL;
  native?: SQL;
  /** eq/ne compare this key instead (userName: the account name's normal form, as uniqueness does). */
  equalityKey?: { column: SQL; of: (value: string) => SQL };
};

/** How a resource type maps its attributes to storage. */
interface ResourceMapping {
  coreSchema: string;
  catalogs: Map<string, Map<string, AttributeInfo>>;
  /** Attributes stored in columns (canonical dotted name → SQL), with their native typed column. */
  columns: Record<string, Pick<Scalar, 'text' | 'native' | 'equalityKey'>>;
  /** The jsonb document holding every other attribute, if the resource has one. */
  document: SQL | undefined;
  /** Multi-valued attributes kept in their own table (a user's groups, a group's members). */
  relation?: (attribute: string, inner: (element: ElementScope) => SQL) => SQL | undefined;
}

/** Inside `emails[...]` or `members[...]`: how to reach one element's sub-attributes. */
interface ElementScope {
  subAttributes: Map<string, AttributeInfo>;
  scalar(sub: AttributeInfo): Scalar;
}

const jsonText = (document: SQL, path: string[]) => sql`(${document} #>> ${sql.param(path)}::text[])`;

export const userMapping: ResourceMapping = {
  coreSchema: USER_SCHEMA,
  catalogs: new Map([
    [USER_SCHEMA.toLowerCase(), userAttributes],
    [ENTERPRISE_USER_SCHEMA.toLowerCase(), enterpriseAttributes],
  ]),
  columns: {
    id: { text: sql`${users.id}::text`, native: sql`${users.id}::text` },
    userName: {
      text: sql`${users.userName}`,
      native: sql`${users.userName}`,
      equalityKey: { column: sql`${users.userNameKey}`, of: (value) => accountKeyOf(value) },
    },
    externalId: { text: sql`${users.externalId}`, native: sql`${users.externalId}` },
    active: { text: sql`${users.active}::text`, native: sql`${users.active}` },
    'meta.created': { text: sql`${users.createdAt}::text`, native: sql`${users.createdAt}` },
    'meta.lastModified': { text: sql`${users.updatedAt}::text`, native: sql`${users.updatedAt}` },
    'meta.resourceType': { text: sql`'User'::text`, native: sql`'User'::text` },
  },
  document: sql`${users.attributes}`,
  relation: (attribute, inner) => {
    if (attribute !== 'groups') return undefined;
    const scope: ElementScope = {
      subAttributes: userAttributes.get('groups')!.subAttributes!,
      scalar: (sub) => {
        if (sub.name === 'value')
          return { type: 'string', caseExact: true, text: sql`${groupMembers.groupId}::text` };
        if (sub.name === 'display')
          return { type: 'string', caseExact: false, text: sql`${groups.displayName}` };
        throw invalid(`groups.${sub.name} cannot be filtered on`);
      },
    };
    return sql`EXISTS (SELECT 1 FROM ${groupMembers} JOIN ${groups} ON ${groups.id} = ${groupMembers.groupId}
      WHERE ${groupMembers.userId} = ${users.id} AND ${inner(scope)})`;
  },
};

export const groupMapping: ResourceMapping = {
  coreSchema: GROUP_SCHEMA,
  catalogs: new Map([[GROUP_SCHEMA.toLowerCase(), groupAttributes]]),
  columns: {
    id: { text: sql`${groups.id}::text`, native: sql`${groups.id}::text` },
    displayName: { text: sql`${groups.displayName}`, native: sql`${groups.displayName}` },
    externalId: { text: sql`${groups.externalId}`, native: sql`${groups.externalId}` },
    'meta.created': { text: sql`${groups.createdAt}::text`, native: sql`${groups.createdAt}` },
    // As the group shows it: member changes are counted in its version slots, not its row.
    'meta.lastModified': { text: sql`${groupLastModified}::text`, native: groupLastModified },
    'meta.resourceType': { text: sql`'Group'::text`, native: sql`'Group'::text` },
  },
  document: undefined,
  relation: (attribute, inner) => {
    if (attribute !== 'members') return undefined;
    const scope: ElementScope = {
      subAttributes: groupAttributes.get('members')!.subAttributes!,
      scalar: (sub) => {
        if (sub.name === 'value')
          return { type: 'string', caseExact: true, text: sql`${groupMembers.userId}::text` };
        if (sub.name === 'display')
          return { type: 'string', caseExact: false, text: sql`${groupMembers.display}` };
        if (sub.name === 'type') return { type: 'string', caseExact: false, text: sql`'User'` };
        throw invalid(`members.${sub.name} cannot be filtered on`);
      },
    };
    return sql`EXISTS (SELECT 1 FROM ${groupMembers} WHERE ${groupMembers.groupId} = ${groups.id} AND ${inner(scope)})`;
  },
};

/**
 * The name in `userName eq "…"` (the existence check Okta and Entra send before every create), so the
 * list can run as one prepared statement instead of a drizzle template built per request; undefined for
 * any other filter. The SQL is the same as filterToSql's for it: user_name_key = accountKeyOf(name).
 */
export function userNameEquality(node: FilterNode): string | undefined {
  if (node.kind !== 'compare' || node.operator !== 'eq' || typeof node.value !== 'string') return undefined;
  const { schema, names } = node.path;
  if (schema !== undefined && schema.toLowerCase() !== USER_SCHEMA.toLowerCase()) return undefined;
  return names.length === 1 && names[0]!.toLowerCase() === 'username' ? node.value : undefined;
}

export function filterToSql(node: FilterNode, mapping: ResourceMapping): SQL {
  switch (node.kind) {
    case 'and':
      return sql`(${filterToSql(node.left, mapping)} AND ${filterToSql(node.right, mapping)})`;
    case 'or':
      return sql`(${filterToSql(node.left, mapping)} OR ${filterToSql(node.right, mapping)})`;
    case 'not':
      // NOT of a condition that is NULL (attribute absent) must still match: coalesce to false first.
      return sql`(NOT COALESCE(${filterToSql(node.operand, mapping)}, false))`;
    case 'present':
    case 'compare':
    case 'valuePath':
      return attributeCondition(node, mapping);
  }
}

type Leaf = Extract<FilterNode, { kind: 'present' | 'compare' | 'valuePath' }>;

function attributeCondition(node: Leaf, mapping: ResourceMapping): SQL {
  const { attribute, catalogPath } = resolve(node.path, mapping);
  const [name, subName] = [attribute.name, node.path.names[1]];

  // A multi-valued complex attribute: some element must match.
  if (attribute.multiValued && attribute.subAttributes) {
    const elementCondition = (scope: ElementScope): SQL => {
      if (node.kind === 'valuePath') return elementFilter(node.filter, scope);
      const sub = scope.subAttributes.get((subName ?? 'value').toLowerCase());
      if (!sub) throw invalid(`${name} has no sub-attribute "${subName}"`);
      return leafCondition(node, scope.scalar(sub));
    };
    const related = mapping.relation?.(name, elementCondition);
    if (related) return related;
    if (!mapping.document) throw invalid(`${name} cannot be filtered on`);
    const array = sql`COALESCE(${mapping.document} #> ${sql.param(catalogPath)}::text[], '[]'::jsonb)`;
    if (node.kind === 'present' && !subName) {
      return sql`(jsonb_typeof(${array}) = 'array' AND jsonb_array_length(${array}) > 0)`;
    }
    const scope: ElementScope = {
      subAttributes: attribute.subAttributes,
      scalar: (sub) => ({ type: sub.type, caseExact: sub.caseExact, text: sql`(element ->> ${sub.name})` }),
    };
    return sql`EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(${array}) = 'array' THEN ${array} ELSE '[]'::jsonb END) AS element
      WHERE ${elementCondition(scope)})`;
  }
  if (node.kind === 'valuePath') throw invalid(`${name} is not multi-valued; "[...]" does not apply`);

  let target: AttributeInfo = attribute;
  const dotted = [name];
  if (attribute.subAttributes) {
    if (!subName)
      throw invalid(
        `${name} is complex: name one of its sub-attributes, e.g. ${name}.${[...attribute.subAttributes.values()][0]?.name}`,
      );
    const sub = attribute.subAttributes.get(subName.toLowerCase());
    if (!sub) throw invalid(`${name} has no sub-attribute "${subName}"`);
    target = sub;
    dotted.push(sub.name);
  } else if (subName) {
    throw invalid(`${name} has no sub-attributes`);
  }
  const column = attribute.schema === mapping.coreSchema ? mapping.columns[dotted.join('.')] : undefined;
  if (column) return leafCondition(node, { type: target.type, caseExact: target.caseExact, ...column });
  // meta is the server's, never stored in the document: a sub-attribute without a column (location,
  // version) would silently match nothing there.
  if (!mapping.document || name === 'meta') throw invalid(`${dotted.join('.')} cannot be filtered on`);
  const path = [...catalogPath.slice(0, -1), ...dotted];
  return leafCondition(node, {
    type: target.type,
    caseExact: target.caseExact,
    text: jsonText(mapping.document, path),
  });
}

/** A filter inside `[...]`: its attribute names are sub-attributes of the element. */
function elementFilter(node: FilterNode, scope: ElementScope): SQL {
  switch (node.kind) {
    case 'and':
      return sql`(${elementFilter(node.left, scope)} AND ${elementFilter(node.right, scope)})`;
    case 'or':
      return sql`(${elementFilter(node.left, scope)} OR ${elementFilter(node.right, scope)})`;
    case 'not':
      return sql`(NOT COALESCE(${elementFilter(node.operand, scope)}, false))`;
    case 'valuePath':
      throw invalid('value paths cannot be nested');
    default: {
      const subName = node.path.names.at(-1)!;
      const sub = scope.subAttributes.get(subName.toLowerCase());
      if (!sub) throw invalid(`unknown sub-attribute "${subName}"`);
      return leafCondition(node, scope.scalar(sub));
    }
  }
}

function resolve(
  path: AttributePath,
  mapping: ResourceMapping,
): { attribute: AttributeInfo; catalogPath: string[] } {
  const schema = (path.schema ?? mapping.coreSchema).toLowerCase();
  const catalog = mapping.catalogs.get(schema);
  if (!catalog) throw invalid(`unknown schema "${path.schema}"`);
  const attribute = catalog.get(path.names[0]!.toLowerCase());
  if (!attribute) throw invalid(`unknown attribute "${path.names.join('.')}"`);
  // Extension attributes sit under their schema URN inside the document.
  const catalogPath =
    attribute.schema === mapping.coreSchema ? [attribute.name] : [attribute.schema, attribute.name];
  return { attribute, catalogPath };
}

function leafCondition(node: Extract<FilterNode, { kind: 'present' | 'compare' }>, scalar: Scalar): SQL {
  if (node.kind === 'present') return sql`(${scalar.text} IS NOT NULL AND ${scalar.text} <> '')`;
  return compare(scalar, node.operator, node.value);
}

function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}

function compare(scalar: Scalar, operator: CompareOperator, value: FilterValue): SQL {
  if (value === null) {
    if (operator === 'eq') return sql`(${scalar.text} IS NULL)`;
    if (operator === 'ne') return sql`(${scalar.text} IS NOT NULL)`;
    throw invalid(`"${operator} null" is not a valid comparison`);
  }
  switch (scalar.type) {
    case 'boolean': {
      const flag = typeof value === 'boolean' ? value : String(value).toLowerCase();
      if (flag !== true && flag !== false && flag !== 'true' && flag !== 'false') {
        throw invalid(`expected true or false, found ${JSON.stringify(value)}`);
      }
      const text = String(flag);
      if (operator === 'eq') return sql`(${scalar.text} = ${text})`;
      if (operator === 'ne') return sql`(${scalar.text} IS DISTINCT FROM ${text})`;
      throw invalid(`"${operator}" does not apply to a boolean attribute`);
    }
    case 'dateTime': {
      // RFC 7644 §3.4.2.2: a dateTime is compared with a quoted xsd:dateTime, never a bare number.
      const at = typeof value === 'string' ? parseMillisecond(value) : undefined;
      if (!at)
        throw invalid(`${JSON.stringify(value)} is not a date and time such as "2026-01-01T00:00:00Z"`);
      if (operator === 'co' || operator === 'sw' || operator === 'ew') {
        throw invalid(`"${operator}" does not apply to a dateTime attribute`);
      }
      if (scalar.native) return shownMillisecond(scalar.native, operator, at);
      return ordered(
        sql`(${scalar.text})::timestamptz`,
        operator,
        sql`${at.start.toISOString()}::timestamptz`,
      );
    }
    case 'integer':
    case 'decimal': {
      const number = typeof value === 'number' ? value : Number.NaN;
      if (!Number.isFinite(number)) throw invalid(`${JSON.stringify(value)} is not a number`);
      if (operator === 'co' || operator === 'sw' || operator === 'ew') {
        throw invalid(`"${operator}" does not apply to a number`);
      }
      return ordered(sql`(${scalar.text})::numeric`, operator, sql`${String(number)}::numeric`);
    }
    default: {
      const text = String(value);
      if (scalar.equalityKey && (operator === 'eq' || operator === 'ne')) {
        const { column, of } = scalar.equalityKey;
        return ordered(column, operator, of(text));
      }
      const left = scalar.caseExact ? scalar.text : sql`lower(${scalar.text})`;
      const right = (param: string) => (scalar.caseExact ? sql`${param}` : sql`lower(${param})`);
      switch (operator) {
        case 'co':
          return sql`(${left} LIKE ${right(`%${escapeLike(text)}%`)})`;
        case 'sw':
          return sql`(${left} LIKE ${right(`${escapeLike(text)}%`)})`;
        case 'ew':
          return sql`(${left} LIKE ${right(`%${escapeLike(text)}`)})`;
        default:
          return ordered(left, operator, right(text));
      }
    }
  }
}

/**
 * Compares a timestamptz column as the resource shows it: to the millisecond (`meta.lastModified` is
 * rendered by toISOString or to_char's MS, both of which cut the microseconds off), so that a client
 * asking for `gt` the value it was shown does not get the same resource back, and `eq` that value finds
 * it. Each comparison is a range on the column itself, so an index on it still serves.
 */
function shownMillisecond(
  column: SQL,
  operator: CompareOperator,
  { start, exact }: { start: Date; exact: boolean },
): SQL {
  const millisecond = sql`${start.toISOString()}::timestamptz`;
  // In SQL: after 9999-12-31T23:59:59.999Z, toISOString writes "+010000-…", which PostgreSQL refuses.
  const next = sql`(${millisecond} + interval '1 millisecond')`;
  // The first millisecond shown at or after the value: the value's own, unless it lies inside it.
  const firstShownFrom = exact ? millisecond : next;
  switch (operator) {
    case 'eq':
      return exact ? sql`(${column} >= ${millisecond} AND ${column} < ${next})` : sql`FALSE`;
    case 'ne':
      return exact ? sql`(${column} < ${millisecond} OR ${column} >= ${next})` : sql`TRUE`;
    case 'gt':
      return sql`(${column} >= ${next})`;
    case 'ge':
      return sql`(${column} >= ${firstShownFrom})`;
    case 'lt':
      return sql`(${column} < ${firstShownFrom})`;
    case 'le':
      return sql`(${column} < ${next})`;
    default:
      throw invalid(`"${operator}" is not supported here`);
  }
}

function ordered(left: SQL, operator: CompareOperator, right: SQL): SQL {
  switch (operator) {
    case 'eq':
      return sql`(${left} = ${right})`;
    case 'ne':
      return sql`(${left} IS DISTINCT FROM ${right})`;
    case 'gt':
      return sql`(${left} > ${right})`;
    case 'ge':
      return sql`(${left} >= ${right})`;
    case 'lt':
      return sql`(${left} < ${right})`;
    case 'le':
      return sql`(${left} <= ${right})`;
    default:
      throw invalid(`"${operator}" is not supported here`);
  }
}
