import { DOMParser } from '@xmldom/xmldom';
import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import type { GroupClaimFormat } from '../db/schema.js';
import { preparedStatement } from '../db/statement.js';
import { invalid, notFound } from '../errors.js';
import type { Tenant } from '../tenants/tenants.js';

export interface ConnectionInput {
  idpEntityId: string;
  ssoUrl: string;
  certificates: string[];
  wantResponseSigned: boolean;
  groupClaimFormat: GroupClaimFormat;
  attributeMap: Record<string, string>;
  /** E-mail domains this IdP may sign in (lower case); empty: any user of the tenant. */
  allowedDomains: string[];
  /** The IdP's HTTP-Redirect SingleLogoutService, when it does Single Logout. */
  sloUrl?: string | undefined;
}

/** A tenant's SAML IdP as the ACS uses it. */
export type Connection = {
  id: string;
  idpEntityId: string;
  ssoUrl: string;
  certificates: string[];
  wantResponseSigned: boolean;
  attributeMap: Record<string, string>;
  groupClaimFormat: GroupClaimFormat;
  allowedDomains: string[];
  sloUrl: string | null;
};

const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/;

/** `--domains Example.com,example.org` → ['example.com', 'example.org'], each a DNS name. */
export function parseDomains(list: string): string[] {
  const domains = list
    .split(',')
    .map((d) => d.trim().toLowerCase())
    .filter(Boolean);
  for (const domain of domains) {
    if (!DOMAIN.test(domain)) throw invalid(`"${domain}" is not a domain name (e.g. example.com)`);
  }
  return [...new Set(domains)];
}

const MD = 'urn:oasis:names:tc:SAML:2.0:metadata';
const DSIG = 'http://www.w3.org/2000/09/xmldsig#';
const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';

/** Certificates as PEM, whether given as PEM or as the bare base64 that metadata carries. */
export function toPem(certificate: string): string {
  const body = certificate.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/=]{100,}$/.test(body))
    throw invalid('a certificate must be a PEM or base64 X.509 certificate');
  return `-----BEGIN CERTIFICATE-----\n${body.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/**
 * Reads an IdP's SAML metadata: entity id, HTTP-Redirect SSO URL, every signing certificate, and the
 * HTTP-Redirect SingleLogoutService when there is one.
 */
export function parseIdpMetadata(
  xml: string,
): Pick<ConnectionInput, 'idpEntityId' | 'ssoUrl' | 'certificates' | 'sloUrl'> {
  if (/<!DOCTYPE/i.test(xml)) throw invalid('metadata with a DOCTYPE is refused');
  const document = new DOMParser().parseFromString(xml, 'text/xml') as unknown as Document;
  const entity = document.getElementsByTagNameNS(MD, 'EntityDescriptor')[0] as Element | undefined;
  const idp = document.getElementsByTagNameNS(MD, 'IDPSSODescriptor')[0] as Element | undefined;
  if (!entity || !idp) throw invalid('not SAML IdP metadata: no EntityDescriptor with an IDPSSODescriptor');
  const services = Array.from(idp.getElementsByTagNameNS(MD, 'SingleSignOnService') as unknown as Element[]);
  const sso = services.find((s) => s.getAttribute('Binding') === REDIRECT);
  if (!sso) throw invalid('the IdP metadata offers no HTTP-Redirect SingleSignOnService');
  const keys = Array.from(idp.getElementsByTagNameNS(MD, 'KeyDescriptor') as unknown as Element[]).filter(
    (k) => (k.getAttribute('use') ?? 'signing') === 'signing',
  );
  const certificates = keys.flatMap((k) =>
    Array.from(k.getElementsByTagNameNS(DSIG, 'X509Certificate') as unknown as Element[]).map((c) =>
      toPem(c.textContent ?? ''),
    ),
  );
  if (certificates.length === 0) throw invalid('the IdP metadata has no signing certificate');
  const slo = Array.from(idp.getElementsByTagNameNS(MD, 'SingleLogoutService') as unknown as Element[]).find(
    (s) => s.getAttribute('Binding') === REDIRECT,
  );
  return {
    idpEntityId: entity.getAttribute('entityID') ?? '',
    ssoUrl: sso.getAttribute('Location') ?? '',
    certificates,
    sloUrl: slo?.getAttribute('Location') || undefined,
  };
}

/** Adds or replaces the tenant's connection to this IdP (by entity id): a metadata re-import rolls keys. */
export async function saveConnection(db: Database, tenantId: string, input: ConnectionInput): Promise<void> {
  if (!input.idpEntityId) throw invalid('the IdP entity id is required');
  try {
    new URL(input.ssoUrl);
  } catch {
    throw invalid(`"${input.ssoUrl}" is not a URL`);
  }
  if (input.certificates.length === 0) throw invalid('at least one IdP signing certificate is required');
  if (input.sloUrl !== undefined) {
    try {
      new URL(input.sloUrl);
    } catch {
      throw invalid(`"${input.sloUrl}" is not a URL`);
    }
  }
  await db.execute(sql`
    INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates, want_response_signed, group_claim_format, attribute_map, allowed_domains, slo_url)
    VALUES (${tenantId}, ${input.idpEntityId}, ${input.ssoUrl}, ${sql.param(input.certificates.map(toPem))}::text[],
      ${input.wantResponseSigned}, ${input.groupClaimFormat}::group_claim_format, ${JSON.stringify(input.attributeMap)}::jsonb,
      ${sql.param(input.allowedDomains)}::text[], ${input.sloUrl ?? null})
    ON CONFLICT (tenant_id, idp_entity_id) DO UPDATE SET sso_url = EXCLUDED.sso_url, certificates = EXCLUDED.certificates,
      want_response_signed = EXCLUDED.want_response_signed, group_claim_format = EXCLUDED.group_claim_format,
      attribute_map = EXCLUDED.attribute_map, allowed_domains = EXCLUDED.allowed_domains, slo_url = EXCLUDED.slo_url`);
}

// Qualified, so the ACS can read them beside the tenant's columns in one statement.
const connectionColumns = sql`sso_connections.id::text AS "id", sso_connections.idp_entity_id AS "idpEntityId",
  sso_connections.sso_url AS "ssoUrl", sso_connections.certificates AS "certificates",
  sso_connections.want_response_signed AS "wantResponseSigned", sso_connections.attribute_map AS "attributeMap",
  sso_connections.group_claim_format::text AS "groupClaimFormat",
  sso_connections.allowed_domains AS "allowedDomains", sso_connections.slo_url AS "sloUrl"`;

/**
 * The tenant's IdP named by entity id (an assertion's Issuer, or `?idp=` on /login), else its first one.
 * Choosing by the unverified Issuer is safe: that IdP's own certificates must then verify the assertion.
 */
export async function findConnection(
  db: Database,
  tenantId: string,
  idpEntityId?: string,
): Promise<Connection | undefined> {
  const [row] = await db.execute<Connection>(sql`
    SELECT ${connectionColumns} FROM sso_connections WHERE tenant_id = ${tenantId}
      ${idpEntityId === undefined ? sql`` : sql`AND idp_entity_id = ${idpEntityId}`}
    ORDER BY created_at LIMIT 1`);
  return row ? normaliseRow(row) : undefined;
}

/** What the ACS decides a login by, of the tenant named in its URL. */
export type AcsTenant = Pick<
  Tenant,
  'id' | 'name' | 'jitMode' | 'idpInitiatedSso' | 'maxAssertionAgeSeconds'
>;

type TenantAndConnectionRow = Omit<Connection, 'id'> & { id: string | null } & {
  tenantId: string;
  tenantName: string;
  jitMode: Tenant['jitMode'];
  idpInitiatedSso: boolean;
  maxAssertionAgeSeconds: number;
};

/*
 * Every login runs this; its SQL text is built once (a drizzle select of the whole tenant row with a
 * join cost ~0.3 ms of Node CPU per login to build and map, more than PostgreSQL took to answer it).
 * Only the query text is kept: the row is read on every login.
 */
const tenantAndConnectionStatement = preparedStatement<{ tenantName: string; idpEntityId: string }>(
  () => sql`
    SELECT tenants.id::text AS "tenantId", tenants.name AS "tenantName", tenants.jit_mode::text AS "jitMode",
      tenants.idp_initiated_sso AS "idpInitiatedSso", tenants.max_assertion_age_seconds AS "maxAssertionAgeSeconds",
      ${connectionColumns}
    FROM tenants LEFT JOIN sso_connections
      ON sso_connections.tenant_id = tenants.id AND sso_connections.idp_entity_id = ${sql.placeholder('idpEntityId')}
    WHERE tenants.name = ${sql.placeholder('tenantName')}`,
);

/**
 * The ACS's lookup in one statement: the tenant named in the URL (not_found when none, like
 * findTenantByName) and its IdP with this entity id, if any. Read fresh on every login, never cached: a
 * setting that tightens sign-in (IdP-initiated off, a certificate removed) applies to the next login.
 */
export async function findTenantAndConnection(
  db: Database,
  tenantName: string,
  idpEntityId: string,
): Promise<{ tenant: AcsTenant; connection: Connection | undefined }> {
  const [row] = await tenantAndConnectionStatement<TenantAndConnectionRow>(db, { tenantName, idpEntityId });
  if (!row) throw notFound(`no tenant named "${tenantName}"`);
  const { tenantId, tenantName: name, jitMode, idpInitiatedSso, maxAssertionAgeSeconds, id, ...rest } = row;
  return {
    tenant: { id: tenantId, name, jitMode, idpInitiatedSso, maxAssertionAgeSeconds },
    connection: id === null ? undefined : normaliseRow({ id, ...rest }),
  };
}

export async function listConnections(db: Database, tenantId: string): Promise<Connection[]> {
  const rows = await db.execute<Connection>(sql`
    SELECT ${connectionColumns} FROM sso_connections WHERE tenant_id = ${tenantId} ORDER BY created_at`);
  return rows.map(normaliseRow);
}

/** Removes the tenant's connection to this IdP; false when there was none. */
export async function removeConnection(
  db: Database,
  tenantId: string,
  idpEntityId: string,
): Promise<boolean> {
  const rows = await db.execute(sql`
    DELETE FROM sso_connections WHERE tenant_id = ${tenantId} AND idp_entity_id = ${idpEntityId} RETURNING 1`);
  return rows.length > 0;
}

// postgres.js returns text[] as arrays; a driver without array parsing would hand back `{a,b}`.
function normaliseRow(row: Connection): Connection {
  return {
    ...row,
    certificates: pgTextArray(row.certificates),
    allowedDomains: pgTextArray(row.allowedDomains),
  };
}

function pgTextArray(value: string[] | string): string[] {
  if (Array.isArray(value)) return value;
  return value
    .replace(/^\{|\}$/g, '')
    .split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)
    .map((v) => v.replace(/^"|"$/g, '').replace(/\\n/g, '\n'))
    .filter(Boolean);
}
