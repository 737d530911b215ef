import { sql } from 'drizzle-orm';
import selfsigned from 'selfsigned';
import type { Database } from '../db/client.js';
import type { SecretBox } from '../security/secret-box.js';

/*
 * The key a tenant's service provider signs its SAML logout messages with (SAML Profiles §4.4.3.1: a
 * LogoutRequest and LogoutResponse must be signed). Made on first use, one per tenant, so every API
 * process signs with the same key: the certificate is published in the SP metadata, the private key is
 * kept sealed with IDSYNC_SECRET_KEY (SecretBox) and never leaves the process that opens it.
 */

export interface SigningKey {
  certificate: string;
  privateKey: string;
}

export async function spSigningKey(db: Database, box: SecretBox, tenantId: string): Promise<SigningKey> {
  const existing = await readKey(db, box, tenantId);
  if (existing) return existing;
  const generated = await selfsigned.generate(
    [{ name: 'commonName', value: 'idsync SAML service provider' }],
    {
      keySize: 2048,
      algorithm: 'sha256',
      notAfterDate: new Date(Date.now() + 10 * 365 * 24 * 3600_000),
    },
  );
  // Two processes may race to make the key: the first insert wins and both use it.
  await db.execute(sql`
    INSERT INTO sso_signing_keys (tenant_id, certificate, private_key_sealed)
    VALUES (${tenantId}, ${generated.cert}, ${box.seal(generated.private)})
    ON CONFLICT (tenant_id) DO NOTHING`);
  return (await readKey(db, box, tenantId))!;
}

/** The published half only, for the SP metadata; undefined before the tenant's first logout message. */
export async function spCertificate(db: Database, tenantId: string): Promise<string | undefined> {
  const [row] = await db.execute<{ certificate: string }>(sql`
    SELECT certificate FROM sso_signing_keys WHERE tenant_id = ${tenantId}`);
  return row?.certificate;
}

async function readKey(db: Database, box: SecretBox, tenantId: string): Promise<SigningKey | undefined> {
  const [row] = await db.execute<{ certificate: string; private_key_sealed: string }>(sql`
    SELECT certificate, private_key_sealed FROM sso_signing_keys WHERE tenant_id = ${tenantId}`);
  return row ? { certificate: row.certificate, privateKey: box.open(row.private_key_sealed) } : undefined;
}
