import type { LoginClaims } from './jit.js';
import { SamlRefusal } from './refusal.js';
import { children, SAML } from './response-document.js';

/*
 * What particular IdPs put in a verified assertion, made into what the rest of the ACS expects. Each quirk
 * is a small pure function that returns its input unchanged when there is nothing to do.
 */

/**
 * OneLogin names every app's IdP `https://app.onelogin.com/saml/metadata/<app id>` (`app.<region>.…` in
 * its regional clouds), whatever the customer's subdomain; its SSO and SLO endpoints live on that
 * subdomain (`https://<sub>.onelogin.com/trust/saml2/http-redirect/…`).
 */
export function isOneLoginEntityId(entityId: string): boolean {
  return /^https:\/\/app(\.[a-z]{2})?\.onelogin\.com\/saml\/metadata\/[^/]+$/i.test(entityId);
}

/**
 * OneLogin sends groups as an app parameter the admin adds ("Include in SAML assertion", "Multi-value
 * parameter", value *User Roles* or *MemberOf*). With its "Semicolon Delimited Output" the roles arrive
 * joined in one AttributeValue (`Engineering;Ops`), as vendors' OneLogin guides (e.g. Snyk's custom
 * mapping) configure it. For a OneLogin connection each value is split at `;`; other IdPs are left as
 * they are, since a group name may contain a semicolon.
 */
export function splitOneLoginGroupValues(claims: LoginClaims, idpEntityId: string): LoginClaims {
  const groups = claims.groups;
  if (groups?.format !== 'names' || !isOneLoginEntityId(idpEntityId)) return claims;
  const values = groups.values.flatMap((value) =>
    value
      .split(';')
      .map((part) => part.trim())
      .filter(Boolean),
  );
  return { ...claims, groups: { ...groups, values: [...new Set(values)] } };
}

const TRANSIENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient';

/**
 * The NameID must name the user as SCIM's userName does. OneLogin lets the admin choose its format
 * (Email, Unspecified, Persistent or Transient; Okta and Entra likewise): any of them works when the value
 * is the user's e-mail, but a transient NameID is a fresh random id at every login, which can only create
 * a stranger. Refused, with the fix in the reason.
 */
export function refuseTransientNameId(assertion: Element): void {
  const subject = children(assertion, SAML, 'Subject')[0];
  const nameId = subject ? children(subject, SAML, 'NameID')[0] : undefined;
  if (nameId?.getAttribute('Format') === TRANSIENT) {
    throw new SamlRefusal(
      'the NameID is transient (a new random id at every login); configure the IdP to send the e-mail address ' +
        '(OneLogin: SSO tab → SAML nameID format "Email", parameter "NameID value" = Email)',
    );
  }
}
