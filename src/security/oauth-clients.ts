import { and, eq } from 'drizzle-orm';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { oauthClients } from '../db/schema.js';
import { conflict, invalid, isUniqueViolation, notFound } from '../errors.js';
import { issueCredential, parseCredential, secretMatches } from './credentials.js';

/*
 * Introspection clients: the platform services of one tenant that may check (RFC 7662) or revoke
 * (RFC 7009) that tenant's personal tokens, and nothing else. The secret is the whole
 * `client_<client_id>_<secret>` credential, shown once; only a hash of its secret half is stored.
 */

export const CLIENT_SCOPES = ['introspect', 'revoke'] as const;
export type ClientScope = (typeof CLIENT_SCOPES)[number];

export interface OAuthClient {
  name: string;
  tenantId: string;
  clientId: string;
  scopes: ClientScope[];
  createdAt: string;
  rotatedAt: string;
}

export interface IssuedClient extends OAuthClient {
  /** Shown once; never stored or logged. */
  clientSecret: string;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export function readClientScopes(values: readonly string[] | undefined): ClientScope[] {
  if (values === undefined || values.length === 0) return ['introspect'];
  const unknown = values.filter((v) => !(CLIENT_SCOPES as readonly string[]).includes(v));
  if (unknown.length > 0)
    throw invalid(`unknown client scope ${unknown.join(', ')}; use ${CLIENT_SCOPES.join(', ')}`);
  return CLIENT_SCOPES.filter((s) => values.includes(s));
}

const view = (row: typeof oauthClients.$inferSelect): OAuthClient => ({
  name: row.name,
  tenantId: row.tenantId,
  clientId: row.clientId,
  scopes: row.scopes,
  createdAt: row.createdAt.toISOString(),
  rotatedAt: row.rotatedAt.toISOString(),
});

export async function createClient(
  db: Database,
  tenantId: string,
  name: string,
  scopes: ClientScope[],
  actor: string,
): Promise<IssuedClient> {
  if (!NAME.test(name)) throw invalid('a client name is 1–63 of a-z, 0-9, ".", "_" and "-"');
  const credential = issueCredential('client');
  try {
    return await db.transaction(async (tx) => {
      const [row] = await tx
        .insert(oauthClients)
        .values({ tenantId, name, clientId: credential.tokenId, secretHash: credential.secretHash, scopes })
        .returning();
      await audit(tx, tenantId, actor, 'oauth_client.created', { client: name, scopes });
      return { ...view(row!), clientSecret: credential.token };
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw conflict(`a client named ${name} already exists in this tenant`);
    throw error;
  }
}

/** A new secret for the client; the old one stops working at once. */
export async function rotateClient(
  db: Database,
  tenantId: string,
  name: string,
  actor: string,
): Promise<IssuedClient> {
  const credential = issueCredential('client');
  return db.transaction(async (tx) => {
    const [row] = await tx
      .update(oauthClients)
      .set({ clientId: credential.tokenId, secretHash: credential.secretHash, rotatedAt: new Date() })
      .where(and(eq(oauthClients.tenantId, tenantId), eq(oauthClients.name, name)))
      .returning();
    if (!row) throw notFound(`no client ${name}`);
    await audit(tx, tenantId, actor, 'oauth_client.rotated', { client: name });
    return { ...view(row), clientSecret: credential.token };
  });
}

export async function removeClient(
  db: Database,
  tenantId: string,
  name: string,
  actor: string,
): Promise<void> {
  await db.transaction(async (tx) => {
    const removed = await tx
      .delete(oauthClients)
      .where(and(eq(oauthClients.tenantId, tenantId), eq(oauthClients.name, name)))
      .returning({ id: oauthClients.id });
    if (removed.length === 0) throw notFound(`no client ${name}`);
    await audit(tx, tenantId, actor, 'oauth_client.removed', { client: name });
  });
}

export async function listClients(db: Database, tenantId: string): Promise<OAuthClient[]> {
  const rows = await db
    .select()
    .from(oauthClients)
    .where(eq(oauthClients.tenantId, tenantId))
    .orderBy(oauthClients.name);
  return rows.map(view);
}

/**
 * The client a client_id and secret name, or undefined. The secret must be this client's own
 * credential; the comparison of its secret half is constant-time.
 */
export async function authenticateClient(
  db: Database,
  clientId: string,
  clientSecret: string,
): Promise<OAuthClient | undefined> {
  const parsed = parseCredential(clientSecret);
  if (parsed?.kind !== 'client' || parsed.tokenId !== clientId) return undefined;
  const [row] = await db.select().from(oauthClients).where(eq(oauthClients.clientId, clientId));
  if (!row || !secretMatches(parsed.secret, row.secretHash)) return undefined;
  return view(row);
}

type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

async function audit(tx: Transaction, tenantId: string, actor: string, action: string, after: object) {
  await recordAudit(tx, {
    tenantId,
    actor,
    action,
    subjectType: 'tenant',
    subjectId: tenantId,
    after,
  });
}
