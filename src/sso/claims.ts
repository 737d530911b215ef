import {
  type AccountName,
  domainOf,
  InvalidAccountName,
  parseAccountName,
} from '../accounts/account-name.js';
import type { GroupClaimFormat } from '../db/schema.js';
import { textProblem } from '../http/hostile-input.js';
import { MAX_LENGTHS } from '../scim/limits.js';
import { ENTRA_GROUPS_CLAIM, ENTRA_GROUPS_OVERAGE_CLAIM, type LoginClaims } from './jit.js';
import { SamlRefusal } from './refusal.js';
import { children, childText, SAML } from './response-document.js';

/*
 * The login claims of a verified assertion, read from its XML into a Map (never a plain object: an
 * attribute named `__proto__` or `constructor` is just a name), and the NameID in the one normal form of
 * account names, so a spelling variant of a deactivated or deleted user is that user.
 */

export interface ClaimSettings {
  attributeMap: Record<string, string>;
  groupClaimFormat: GroupClaimFormat;
  /** Lower-case e-mail domains this IdP may sign in; empty: any. */
  allowedDomains: string[];
}

const EMAIL_CLAIMS = ['email', 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress'];
const GIVEN_NAME_CLAIMS = [
  'firstName',
  'givenName',
  'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname',
];
const FAMILY_NAME_CLAIMS = [
  'lastName',
  'familyName',
  'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname',
];
const DISPLAY_NAME_CLAIMS = ['displayName', 'http://schemas.microsoft.com/identity/claims/displayname'];
// Entra group object ids are GUIDs, which Microsoft may render in either case.
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every Attribute of the assertion's AttributeStatements: name → its values. */
export function assertionAttributes(assertion: Element): Map<string, string[]> {
  const attributes = new Map<string, string[]>();
  for (const statement of children(assertion, SAML, 'AttributeStatement')) {
    for (const attribute of children(statement, SAML, 'Attribute')) {
      const name = attribute.getAttribute('Name');
      if (!name) continue;
      const values = children(attribute, SAML, 'AttributeValue').map((v) => v.textContent ?? '');
      attributes.set(name, [...(attributes.get(name) ?? []), ...values]);
    }
  }
  return attributes;
}

export function claimsOf(assertion: Element, settings: ClaimSettings): LoginClaims {
  const subject = children(assertion, SAML, 'Subject')[0];
  const rawNameId = subject ? childText(subject, SAML, 'NameID') : undefined;
  if (!rawNameId) throw new SamlRefusal('the assertion has no NameID');
  checkText(rawNameId, 'NameID', MAX_LENGTHS.userName);
  // U+FFFD is what the parser made of a lone surrogate's reference: two such NameIDs would be one user.
  if (rawNameId.includes('\uFFFD')) throw new SamlRefusal('the NameID contains an unreadable character');
  const nameId = accountNameOf(rawNameId, 'NameID');
  const attributes = assertionAttributes(assertion);
  const mapped = (name: keyof typeof settings.attributeMap) =>
    Object.hasOwn(settings.attributeMap, name) ? settings.attributeMap[name] : undefined;
  const first = (names: (string | undefined)[]) => {
    for (const name of names) {
      const value = name === undefined ? undefined : attributes.get(name)?.find((v) => v.trim() !== '');
      if (value !== undefined) return value.trim();
    }
    return undefined;
  };
  const email = first([mapped('email'), ...EMAIL_CLAIMS]);
  const givenName = first([mapped('givenName'), ...GIVEN_NAME_CLAIMS]);
  const familyName = first([mapped('familyName'), ...FAMILY_NAME_CLAIMS]);
  const displayName = first([mapped('displayName'), ...DISPLAY_NAME_CLAIMS]);
  for (const [what, value] of [
    ['e-mail attribute', email],
    ['given name attribute', givenName],
    ['family name attribute', familyName],
    ['display name attribute', displayName],
  ] as const)
    if (value !== undefined) checkText(value, what, MAX_PROFILE_CLAIM_LENGTH);
  checkDomain(nameId, settings.allowedDomains, 'NameID');
  if (email !== undefined)
    checkDomain(accountNameOf(email, 'e-mail attribute'), settings.allowedDomains, 'e-mail attribute');

  if (settings.groupClaimFormat === 'none') {
    return { nameId, email, givenName, familyName, displayName, groups: undefined, overage: false };
  }
  const groupsClaim =
    settings.groupClaimFormat === 'object-ids' ? ENTRA_GROUPS_CLAIM : (mapped('groups') ?? 'groups');
  const rawGroups = attributes.get(groupsClaim);
  // Missing (or Entra's overage link) means "unknown", not "none": the groups SCIM set are kept.
  const overage = attributes.has(ENTRA_GROUPS_OVERAGE_CLAIM);
  const values =
    settings.groupClaimFormat === 'object-ids'
      ? rawGroups?.map((v) => (GUID.test(v.trim()) ? v.trim().toLowerCase() : v.trim()))
      : rawGroups?.map((v) => v.trim());
  // More groups than a login writes: like Entra's overage, the groups SCIM set are kept, and the audit
  // row says why (a login is not refused for an IdP's wide group filter).
  const tooMany =
    values !== undefined &&
    new Set(values.filter((v) => v !== '').map((v) => v.toLowerCase())).size > MAX_GROUP_CLAIMS;
  if (values && !overage && !tooMany)
    for (const value of values) checkText(value, 'group claim', MAX_LENGTHS.displayName);
  return {
    nameId,
    email,
    givenName,
    familyName,
    displayName,
    groups:
      overage || tooMany || values === undefined
        ? undefined
        : { format: settings.groupClaimFormat, values: values.filter((v) => v !== '') },
    overage: overage || tooMany,
  };
}

/** Groups one login may claim: a login writes each of them in its transaction. */
export const MAX_GROUP_CLAIMS = 1_000;
const MAX_PROFILE_CLAIM_LENGTH = 1_024;
/** U+FFFE and U+FFFF are no characters. */
const NONCHARACTER = /[\uFFFE\uFFFF]/;

/** Claims are stored like SCIM input and must pass what SCIM refuses (control characters, lengths). */
function checkText(value: string, what: string, maxLength: number): void {
  const problem =
    textProblem(value) ?? (NONCHARACTER.test(value) ? 'contains an unreadable character' : undefined);
  if (problem) throw new SamlRefusal(`the ${what} ${problem}`);
  if (value.length > maxLength) throw new SamlRefusal(`the ${what} is longer than ${maxLength} characters`);
}

function accountNameOf(raw: string, what: string): AccountName {
  try {
    return parseAccountName(raw);
  } catch (error) {
    if (error instanceof InvalidAccountName) throw new SamlRefusal(`the ${what} is refused: ${error.reason}`);
    throw error;
  }
}

/** Who may assert whom: a connection limited to domains signs in no one outside them. */
function checkDomain(name: AccountName, allowedDomains: string[], what: string): void {
  if (allowedDomains.length === 0) return;
  const domain = domainOf(name);
  if (!domain || !allowedDomains.includes(domain))
    throw new SamlRefusal(
      `the ${what} is outside the domains this IdP may sign in (${allowedDomains.join(', ')})`,
    );
}
