import { describe, expect, it } from 'vitest';
import { DomainError } from '../src/errors.js';
import { authenticateScimToken, createTenant, listTenants, rotateScimToken } from '../src/tenants/tenants.js';
import { createTestDatabase } from './support/database.js';

describe('tenants and their SCIM tokens', () => {
  it('issues a token shown once and stores only its hash', async () => {
    const { db, sql } = await createTestDatabase();
    const { tenant, scimToken } = await createTenant(db, 'acme', 'test');
    expect(scimToken).toMatch(/^scim_[0-9a-f]{16}_[A-Za-z0-9-]{43}$/);
    const secret = scimToken.split('_')[2]!;
    const dump = JSON.stringify(await sql`SELECT * FROM tenants`);
    expect(dump).not.toContain(secret);
    expect(dump).not.toContain(scimToken);
    expect((await authenticateScimToken(db, scimToken))?.id).toBe(tenant.id);
    const [audit] = await sql`SELECT action, after FROM audit_log WHERE tenant_id = ${tenant.id}`;
    expect(audit).toMatchObject({ action: 'tenant.created', after: { name: 'acme' } });
    expect(JSON.stringify(await sql`SELECT * FROM audit_log`)).not.toContain(secret);
  });

  it('refuses a wrong secret, a malformed token and another tenant’s token id with a guessed secret', async () => {
    const { db } = await createTestDatabase();
    const { scimToken } = await createTenant(db, 'acme', 'test');
    const [kind, tokenId, secret] = scimToken.split('_');
    const flipped = `${secret!.slice(0, -1)}${secret!.endsWith('A') ? 'B' : 'A'}`;
    expect(await authenticateScimToken(db, `${kind}_${tokenId}_${flipped}`)).toBeUndefined();
    expect(await authenticateScimToken(db, 'Bearer nonsense')).toBeUndefined();
    expect(await authenticateScimToken(db, '')).toBeUndefined();
    expect(await authenticateScimToken(db, `api_${tokenId}_${secret}`)).toBeUndefined();
  });

  it('rotates: the new token works and the old one stops at once', async () => {
    const { db } = await createTestDatabase();
    const first = await createTenant(db, 'acme', 'test');
    const second = await rotateScimToken(db, 'acme', 'test');
    expect(second.scimToken).not.toBe(first.scimToken);
    expect(await authenticateScimToken(db, first.scimToken)).toBeUndefined();
    expect((await authenticateScimToken(db, second.scimToken))?.name).toBe('acme');
  });

  it('keeps tenants apart: each token finds only its own tenant', async () => {
    const { db } = await createTestDatabase();
    const a = await createTenant(db, 'a', 'test');
    const b = await createTenant(db, 'b', 'test');
    expect((await authenticateScimToken(db, a.scimToken))?.name).toBe('a');
    expect((await authenticateScimToken(db, b.scimToken))?.name).toBe('b');
    expect((await listTenants(db)).map((t) => t.name)).toEqual(['a', 'b']);
  });

  it('answers a duplicate or malformed name with a typed error', async () => {
    const { db } = await createTestDatabase();
    await createTenant(db, 'acme', 'test');
    await expect(createTenant(db, 'acme', 'test')).rejects.toMatchObject({ kind: 'conflict' });
    await expect(createTenant(db, 'Not Valid', 'test')).rejects.toBeInstanceOf(DomainError);
    await expect(rotateScimToken(db, 'missing', 'test')).rejects.toMatchObject({ kind: 'not_found' });
  });
});
