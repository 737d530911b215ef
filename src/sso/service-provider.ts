import { SAML, ValidateInResponseTo } from '@node-saml/node-saml';
import type { Tenant } from '../tenants/tenants.js';
import type { Connection } from './connections.js';

/** Clock difference idsync tolerates between itself and an IdP, on every SAML time bound. */
export const CLOCK_SKEW_MS = 60_000;

export interface ServiceProviderUrls {
  entityId: string;
  acsUrl: string;
  metadataUrl: string;
}

export function serviceProviderUrls(publicUrl: string, tenant: Pick<Tenant, 'name'>): ServiceProviderUrls {
  const entityId = `${publicUrl}/sso/${tenant.name}`;
  return { entityId, acsUrl: `${entityId}/acs`, metadataUrl: `${entityId}/metadata` };
}

/**
 * node-saml for one tenant and IdP: it verifies signatures (the assertion's always; the Response's
 * when the connection requires it or the Response carries one — a present signature that does not
 * verify is a refusal), the audience and the Conditions time bounds. InResponseTo is idsync's own
 * business (saml-checks.ts, login-state.ts): node-saml reads it from the unsigned Response element.
 */
export function samlFor(
  urls: ServiceProviderUrls,
  connection: Connection,
  options: { responseSigned?: boolean; requestId?: string } = {},
): SAML {
  return new SAML({
    entryPoint: connection.ssoUrl,
    issuer: urls.entityId,
    audience: urls.entityId,
    callbackUrl: urls.acsUrl,
    idpCert: connection.certificates,
    wantAssertionsSigned: true,
    wantAuthnResponseSigned: connection.wantResponseSigned || options.responseSigned === true,
    signatureAlgorithm: 'sha256',
    acceptedClockSkewMs: CLOCK_SKEW_MS,
    validateInResponseTo: ValidateInResponseTo.never,
    ...(options.requestId ? { generateUniqueId: () => options.requestId! } : {}),
    identifierFormat: null,
    disableRequestedAuthnContext: true,
  });
}
