/**
 * Why a login was refused, as a closed set: the metric's label and a dashboard's legend. The full
 * reason (with the values that made it fail) is logged for the operator; the browser sees a reference.
 */
export const REFUSAL_KINDS = [
  /** node-saml refused it: signature, audience, Conditions, certificate. */
  'signature-or-conditions',
  'weak-algorithm',
  'replay',
  'expired',
  'not-yet-valid',
  'wrong-issuer',
  'wrong-recipient',
  'idp-status',
  'unsolicited',
  'user-deactivated',
  'user-deprovisioned',
  'jit-off',
  /** Anything else wrong with the message: missing parts, malformed claims. */
  'malformed',
] as const;
export type RefusalKind = (typeof REFUSAL_KINDS)[number];

/** Why a sign-in was refused: logged for the operator; the browser sees only a reference. */
export class SamlRefusal extends Error {
  constructor(
    readonly reason: string,
    readonly kind: RefusalKind = 'malformed',
  ) {
    super(reason);
    this.name = 'SamlRefusal';
  }
}
