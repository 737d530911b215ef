/*
 * One normal form for account names (SCIM userName, SAML NameID, every CLI/API lookup), so no spelling
 * variant of a user — surrounding whitespace, a zero-width character, another Unicode composition or
 * case — can be a different person. Stored names are trimmed and NFC; comparison uses the database's
 * `account_key()` (NFC + full case folding, see drizzle/0011), through `users.user_name_key`.
 */

/** A trimmed, NFC account name with no control, format or inner whitespace characters. */
export type AccountName = string & { readonly __brand: 'AccountName' };

export class InvalidAccountName extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'InvalidAccountName';
  }
}

// Cc: control characters (NUL, newline, DEL…); Cf: invisible format characters (zero-width space and
// joiners, bidi overrides) that make two names look alike; Zl/Zp: line and paragraph separators.
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const WHITESPACE = /[\s\p{Zs}]/u;
export const ACCOUNT_NAME_MAX_LENGTH = 256;

export function parseAccountName(raw: string): AccountName {
  const name = raw.trim().normalize('NFC');
  if (name === '') throw new InvalidAccountName('the account name is empty');
  if (name.length > ACCOUNT_NAME_MAX_LENGTH)
    throw new InvalidAccountName(`the account name is longer than ${ACCOUNT_NAME_MAX_LENGTH} characters`);
  if (INVISIBLE.test(name))
    throw new InvalidAccountName('the account name contains a control or invisible character');
  if (WHITESPACE.test(name)) throw new InvalidAccountName('the account name contains whitespace');
  return name as AccountName;
}

/** The domain of an e-mail-shaped account name, lower case; undefined when it has no `@`. */
export function domainOf(name: AccountName): string | undefined {
  const at = name.lastIndexOf('@');
  return at > 0 && at < name.length - 1 ? name.slice(at + 1).toLowerCase() : undefined;
}
