import { ACCOUNT_NAME_MAX_LENGTH } from '../accounts/account-name.js';
import { invalid } from '../errors.js';

/*
 * Limits on what a SCIM body may carry beyond its schema. Columns behind a btree index cannot hold more
 * than about 2,700 bytes per row, so indexed attributes get a length limit (advertised in /Schemas as
 * `maxLength`); 512 characters of 4-byte UTF-8 stay under it.
 */

export const INDEXED_MAX_LENGTH = 512;

/**
 * Indexed attributes: User userName (the account-name normal form's limit, checked there) and
 * externalId, Group displayName and externalId.
 */
export const MAX_LENGTHS = {
  userName: ACCOUNT_NAME_MAX_LENGTH,
  externalId: INDEXED_MAX_LENGTH,
  displayName: INDEXED_MAX_LENGTH,
} as const;

export function checkLength(attribute: keyof typeof MAX_LENGTHS, value: string): void {
  if (value.length > MAX_LENGTHS[attribute]) {
    throw invalid(`${attribute} is longer than ${MAX_LENGTHS[attribute]} characters`, 'invalidValue');
  }
}

/**
 * RFC 7643 §2.4: a multi-valued attribute holds values; `null` is not one (an unassigned attribute is
 * omitted or an empty array). A stored `"emails":[null]` would break every later PATCH of the user.
 */
export function refuseNullElements(value: unknown, where = 'the body'): void {
  if (Array.isArray(value)) {
    value.forEach((element, index) => {
      if (element === null) throw invalid(`${where}[${index}] is null`, 'invalidValue');
      refuseNullElements(element, `${where}[${index}]`);
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [key, element] of Object.entries(value)) refuseNullElements(element, `${where}.${key}`);
  }
}
