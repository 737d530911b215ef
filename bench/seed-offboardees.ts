import type { DatabaseHandle } from '../src/db/client.js';

export interface OffboardeeProfile {
  /** Users are named `${prefix}N@example.com`, N from 1. */
  prefix: string;
  count: number;
  /** Teams `team-1…` and apps `app-1…` of the tenant (created when missing); every user is in all. */
  teams: number;
  apps: number;
  /** Live API tokens per user. */
  tokens: number;
}

/**
 * Users who are about to be offboarded, written in SQL before idsync starts so a run measures only the
 * changes the IdP then sends: each in the built-in platform's Enterprise Account, every team and every
 * app, with live tokens. Shared by the cascade benchmark and the fault suite.
 */
export async function seedOffboardees(
  sql: DatabaseHandle['sql'],
  tenantId: string,
  profile: OffboardeeProfile,
): Promise<{ id: string; account: string }[]> {
  await sql`INSERT INTO teams (tenant_id, name) SELECT ${tenantId}, 'team-' || n FROM generate_series(1, ${profile.teams}) n ON CONFLICT DO NOTHING`;
  await sql`INSERT INTO apps (tenant_id, name) SELECT ${tenantId}, 'app-' || n FROM generate_series(1, ${profile.apps}) n ON CONFLICT DO NOTHING`;
  const users = await sql<{ id: string; account: string }[]>`
    INSERT INTO users (tenant_id, user_name, origin)
    SELECT ${tenantId}, ${profile.prefix} || n || '@example.com', 'scim' FROM generate_series(1, ${profile.count}) n
    RETURNING id::text, lower(user_name) AS account`;
  const accounts = users.map((u) => u.account);
  await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
    SELECT ${tenantId}, a, '{view}' FROM unnest(${accounts}::text[]) a`;
  await sql`INSERT INTO platform_team_members (tenant_id, team_id, account, role)
    SELECT ${tenantId}, t.id, a, 'member' FROM unnest(${accounts}::text[]) a CROSS JOIN teams t WHERE t.tenant_id = ${tenantId}`;
  await sql`INSERT INTO platform_app_collaborators (tenant_id, app_id, account, permissions)
    SELECT ${tenantId}, p.id, a, '{deploy}' FROM unnest(${accounts}::text[]) a CROSS JOIN apps p WHERE p.tenant_id = ${tenantId}`;
  // The hash is never checked: these tokens only need to exist and be live, to be revoked.
  await sql`INSERT INTO tokens (tenant_id, user_id, kind, token_id, secret_hash)
    SELECT ${tenantId}, u::uuid, 'api', md5(random()::text || u || n), 'not-a-real-hash'
    FROM unnest(${users.map((u) => u.id)}::text[]) u CROSS JOIN generate_series(1, ${profile.tokens}) n`;
  return users;
}
