import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { invalid } from '../errors.js';
import type { SecretBox } from '../security/secret-box.js';
import { type HerokuSettings, herokuSettingsSchema } from './heroku/settings.js';

export type PlatformChoice =
  | { connector: 'builtin' }
  | {
      connector: 'heroku';
      enterpriseAccount: string;
      apiUrl?: string;
      /** Exactly one: the name of an environment variable, or the token itself (sealed before storing). */
      tokenEnv?: string;
      token?: string;
    };

/**
 * Points a tenant at its platform. A token given directly is sealed with the SecretBox before it
 * reaches the database; a fresh setting clears a stopped connection so work resumes.
 */
export async function setPlatform(db: Database, tenantId: string, choice: PlatformChoice, box?: SecretBox) {
  let settings: HerokuSettings | Record<string, never> = {};
  if (choice.connector === 'heroku') {
    if (Boolean(choice.tokenEnv) === Boolean(choice.token)) {
      throw invalid('give the Heroku API token either as an environment variable name or on stdin, not both');
    }
    if (choice.token && !box) throw invalid('a token to store needs the secret key (IDSYNC_SECRET_KEY)');
    const parsed = herokuSettingsSchema.safeParse({
      enterpriseAccount: choice.enterpriseAccount,
      apiUrl: choice.apiUrl,
      token: choice.tokenEnv ? { env: choice.tokenEnv } : { sealed: box!.seal(choice.token!) },
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw invalid(`Heroku setting ${issue.path.join('.') || 'value'}: ${issue.message}`);
    }
    settings = parsed.data;
  }
  await db.execute(sql`
    UPDATE tenants SET connector = ${choice.connector}, connector_settings = ${JSON.stringify(settings)}::jsonb,
      connector_status = 'ok', connector_status_reason = NULL, updated_at = now()
    WHERE id = ${tenantId}`);
  return settings;
}

/** A tenant's platform: which connector, its settings and whether it is stopped (undefined: no tenant). */
export async function loadPlatform(db: Database, tenantId: string) {
  const [row] = await db.execute<{
    connector: string;
    connector_settings: unknown;
    connector_status: 'ok' | 'stopped';
    connector_status_reason: string | null;
  }>(sql`
    SELECT connector, connector_settings, connector_status, connector_status_reason FROM tenants WHERE id = ${tenantId}`);
  return row;
}

/** Remembers which Heroku account the token belongs to (the key of the shared rate budget). */
export async function rememberBudgetKey(db: Database, tenantId: string, accountId: string) {
  await db.execute(sql`
    UPDATE tenants SET connector_settings = connector_settings || ${JSON.stringify({ budgetKey: accountId })}::jsonb,
      connector_status = 'ok', connector_status_reason = NULL
    WHERE id = ${tenantId}`);
}

/** Remembers the Heroku Enterprise Account's id: paths use it, as the account can be renamed. */
export async function rememberEnterpriseAccountId(db: Database, tenantId: string, id: string) {
  await db.execute(sql`
    UPDATE tenants SET connector_settings = connector_settings || ${JSON.stringify({ enterpriseAccountId: id })}::jsonb
    WHERE id = ${tenantId}`);
}
