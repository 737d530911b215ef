import SCIMMY from 'scimmy';
import { MAX_LENGTHS } from './limits.js';

/*
 * The SCIM schemas come from scimmy (RFC 7643 §4 definitions, with the enterprise extension). From them
 * we derive, once, a case-insensitive catalog of attribute characteristics (type, caseExact,
 * multiValued, sub-attributes) that filter translation and projection consult.
 */

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const ENTERPRISE_USER_SCHEMA = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const PATCH_OP_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const LIST_RESPONSE_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';

export type AttributeType = SCIMMY.Types.Attribute.ValidAttributeTypes;

/*
 * scimmy 1.3 declares `roles.type` and `x509Certificates.type` with an empty list of canonical values, so
 * it refuses every type — Entra's app-role assignment sends `"type": "WindowsAzureActiveDirectoryRole"`.
 * RFC 7643 §4.1.2 gives these attributes (and `entitlements`) no vocabulary: any string is a type, kept as
 * sent. Cleared once, here, before the definitions below are derived from the shared User schema.
 */
for (const path of ['roles.type', 'entitlements.type', 'x509Certificates.type']) {
  SCIMMY.Schemas.User.definition.attribute(path).config.canonicalValues = false;
}

export interface AttributeInfo {
  /** Canonical spelling, e.g. `familyName`. */
  name: string;
  type: AttributeType;
  multiValued: boolean;
  caseExact: boolean;
  /** Lower-cased sub-attribute name → info (complex attributes only). */
  subAttributes: Map<string, AttributeInfo> | undefined;
  /** The schema URN the attribute belongs to. */
  schema: string;
}

function catalogOf(definition: SCIMMY.Types.SchemaDefinition): Map<string, AttributeInfo> {
  const describe = (attribute: SCIMMY.Types.Attribute): AttributeInfo => ({
    name: attribute.name,
    type: attribute.type,
    multiValued: Boolean(attribute.config.multiValued),
    caseExact: Boolean(attribute.config.caseExact),
    subAttributes: attribute.subAttributes
      ? new Map(attribute.subAttributes.map((sub) => [sub.name.toLowerCase(), describe(sub)]))
      : undefined,
    schema: definition.id,
  });
  return new Map(
    definition.attributes
      .filter((a) => !(a instanceof SCIMMY.Types.SchemaDefinition))
      .map((a) => [a.name.toLowerCase(), describe(a as SCIMMY.Types.Attribute)]),
  );
}

export const userAttributes = catalogOf(SCIMMY.Schemas.User.definition);
export const enterpriseAttributes = catalogOf(SCIMMY.Schemas.EnterpriseUser.definition);
export const groupAttributes = catalogOf(SCIMMY.Schemas.Group.definition);

/** The User schema with the enterprise extension mixed in, for validating incoming users. */
export const userDefinition = SCIMMY.Schemas.User.definition.extend(
  SCIMMY.Schemas.EnterpriseUser.definition,
  false,
);

/**
 * Discovery documents (/Schemas, /ResourceTypes), described by scimmy, with `maxLength` on the indexed
 * attributes (not an RFC 7643 characteristic; clients that do not know it ignore it) and the uniqueness
 * idsync enforces on a group's displayName.
 */
export function schemaDocuments(baseUrl: string) {
  const location = `${baseUrl}/Schemas`;
  const amended = (
    document: ReturnType<typeof SCIMMY.Schemas.User.definition.describe>,
    name: keyof typeof MAX_LENGTHS,
    extra: Record<string, unknown> = {},
  ) => ({
    ...document,
    // An attribute describes itself (RFC 7643 §7) through its toJSON; spread as it is, it would show
    // scimmy's internal form instead.
    attributes: document.attributes.map((attribute) =>
      attribute.name === name
        ? { ...(JSON.parse(JSON.stringify(attribute)) as object), ...extra, maxLength: MAX_LENGTHS[name] }
        : attribute,
    ),
  });
  return [
    amended(SCIMMY.Schemas.User.definition.describe(location), 'userName'),
    SCIMMY.Schemas.EnterpriseUser.definition.describe(location),
    amended(SCIMMY.Schemas.Group.definition.describe(location), 'displayName', { uniqueness: 'server' }),
  ];
}

export function resourceTypeDocuments(baseUrl: string) {
  return [
    {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:ResourceType'],
      id: 'User',
      name: 'User',
      endpoint: '/Users',
      description: 'User Account',
      schema: USER_SCHEMA,
      schemaExtensions: [{ schema: ENTERPRISE_USER_SCHEMA, required: false }],
      meta: { resourceType: 'ResourceType', location: `${baseUrl}/ResourceTypes/User` },
    },
    {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:ResourceType'],
      id: 'Group',
      name: 'Group',
      endpoint: '/Groups',
      description: 'Group',
      schema: GROUP_SCHEMA,
      schemaExtensions: [],
      meta: { resourceType: 'ResourceType', location: `${baseUrl}/ResourceTypes/Group` },
    },
  ];
}
