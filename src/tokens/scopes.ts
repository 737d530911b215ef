import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { invalid } from '../errors.js';
import { desiredAccess } from '../reconcile/desired.js';
import type { Access } from '../reconcile/model.js';
import { loadRuleBook, loadUser } from '../reconcile/state.js';

/*
 * What a personal API token may be used for. A token never carries more than its owner can do now:
 * the scopes a user may give a token are the tenant's allowed scopes intersected with what the user's
 * current access grants, and introspection re-applies that bound on every call, so losing a team or an
 * app narrows every token the user holds at once.
 */

export const TOKEN_SCOPES = [
  'apps:read',
  'apps:deploy',
  'apps:operate',
  'apps:manage',
  'teams:read',
  'teams:manage',
  'enterprise:read',
  'enterprise:create',
  'enterprise:manage',
  'enterprise:billing',
] as const;
export type TokenScope = (typeof TOKEN_SCOPES)[number];

export const isTokenScope = (value: string): value is TokenScope =>
  (TOKEN_SCOPES as readonly string[]).includes(value);

/** Scope names from a CLI or API, all known (else a 400 naming the unknown ones). */
export function readTokenScopes(values: readonly string[]): TokenScope[] {
  const unknown = values.filter((v) => v !== '' && !isTokenScope(v));
  if (unknown.length > 0)
    throw invalid(`unknown scope ${unknown.slice(0, 5).join(', ')}; scopes are ${TOKEN_SCOPES.join(', ')}`);
  return TOKEN_SCOPES.filter((s) => values.includes(s));
}

/** The scopes an access grants: app and Enterprise Account permissions by name, teams by role. */
export function scopesGrantedBy(access: Access): Set<TokenScope> {
  const granted = new Set<TokenScope>();
  for (const permissions of access.apps.values()) {
    for (const permission of permissions)
      granted.add(permission === 'view' ? 'apps:read' : `apps:${permission}`);
  }
  for (const role of access.teams.values()) {
    granted.add('teams:read');
    if (role === 'admin') granted.add('teams:manage');
  }
  for (const permission of access.enterprise ?? []) {
    granted.add(permission === 'view' ? 'enterprise:read' : `enterprise:${permission}`);
  }
  return granted;
}

/** The scopes this user may put on a token now, in canonical order. */
export async function grantableScopes(db: Database, tenantId: string, userId: string): Promise<TokenScope[]> {
  const [subject, rules, [tenant]] = await Promise.all([
    loadUser(db, tenantId, userId),
    loadRuleBook(db, tenantId),
    db.execute<{ token_scopes: string[] }>(
      sql`SELECT array_to_json(token_scopes) AS token_scopes FROM tenants WHERE id = ${tenantId}`,
    ),
  ]);
  if (!subject || !tenant) return [];
  const allowed = new Set(tenant.token_scopes);
  const granted = scopesGrantedBy(desiredAccess(subject.facts, rules));
  return TOKEN_SCOPES.filter((scope) => allowed.has(scope) && granted.has(scope));
}
