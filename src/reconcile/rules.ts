import { type SQL, sql } from 'drizzle-orm';
import { z } from 'zod';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import { isUuid } from '../db/uuid.js';
import { notFound } from '../errors.js';
import { parsedOrInvalid } from '../http/validation.js';
import { type Executor, recordForReconcileEach } from '../jobs/outbox.js';
import { brakeChange } from './brake.js';
import { lockRuleMatchingForChange } from './matching-lock.js';
import {
  APP_PERMISSIONS,
  type AssignmentRule,
  canonical,
  ENTERPRISE_PERMISSIONS,
  type RuleSource,
  type RuleTarget,
  TEAM_ROLES,
} from './model.js';
import { loadRules } from './state.js';

/** What a rule matches, as an admin writes it: exactly one of an IdP group or an app role. */
export const ruleSourceSchema = z
  .object({
    idpGroup: z.string().trim().min(1, 'idpGroup must not be empty').optional(),
    idpAppRole: z.string().trim().min(1, 'idpAppRole must not be empty').optional(),
  })
  .refine((source) => (source.idpGroup === undefined) !== (source.idpAppRole === undefined), {
    message: 'give exactly one of idpGroup (an IdP group) or idpAppRole (the value of an app role)',
  });

// Names as Heroku gives them, so a rule (or an imported row) can never name a team or app the platform
// cannot have.
export const teamName = z
  .string()
  .trim()
  .min(1, 'team must not be empty')
  .regex(
    /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/,
    'team must be lowercase letters, digits and dashes (as Heroku names teams), e.g. core or platform-eng',
  );
export const appName = z
  .string()
  .trim()
  .min(1, 'app must not be empty')
  .regex(
    /^[a-z][a-z0-9-]{1,28}[a-z0-9]$/,
    "app must be 3 to 30 lowercase letters, digits and dashes starting with a letter (Heroku's app names)",
  );

/** What a rule grants (API body, CLI flags): exactly one target shape is accepted. */
export const ruleTargetSchema = z.discriminatedUnion('target', [
  z.object({
    target: z.literal('team'),
    team: teamName,
    role: z.enum(TEAM_ROLES, { error: `role must be one of ${TEAM_ROLES.join(', ')}` }),
  }),
  z.object({
    target: z.literal('all-teams'),
    role: z.enum(TEAM_ROLES, { error: `role must be one of ${TEAM_ROLES.join(', ')}` }),
  }),
  z.object({
    target: z.literal('enterprise'),
    permissions: z
      .array(
        z.enum(ENTERPRISE_PERMISSIONS, {
          error: `permissions must be among ${ENTERPRISE_PERMISSIONS.join(', ')}`,
        }),
      )
      .min(1, 'at least one permission'),
  }),
  z.object({
    target: z.literal('app'),
    app: appName,
    permissions: z
      .array(z.enum(APP_PERMISSIONS, { error: `permissions must be among ${APP_PERMISSIONS.join(', ')}` }))
      .min(1, 'at least one permission'),
  }),
]);

export type RuleInput = RuleSource & RuleTarget;

export function readRuleInput(body: unknown): RuleInput {
  const { idpGroup, idpAppRole } = parsedOrInvalid(ruleSourceSchema, body);
  const source: RuleSource = idpGroup !== undefined ? { idpGroup } : { idpAppRole: idpAppRole! };
  const target = parsedOrInvalid(ruleTargetSchema, body);
  // One spelling for a set of permissions, so listings and comparisons are stable.
  if (target.target === 'enterprise')
    return { ...source, ...target, permissions: canonical(target.permissions, ENTERPRISE_PERMISSIONS) };
  if (target.target === 'app')
    return { ...source, ...target, permissions: canonical(target.permissions, APP_PERMISSIONS) };
  return { ...source, ...target };
}

/**
 * Adds a rule. The team or app it names is created in the built-in platform when missing, and every
 * current member of the IdP group is queued for a reconcile in the same transaction (under the
 * rule-matching lock, so a user joining the group meanwhile is either queued here or sees the rule).
 */
export async function addRule(
  db: Database,
  tenantId: string,
  input: RuleInput,
  actor: string,
): Promise<AssignmentRule> {
  return db.transaction(async (tx) => {
    await lockRuleMatchingForChange(tx, tenantId);
    const [row] = await tx.execute<{ id: string }>(sql`
      INSERT INTO assignment_rules (tenant_id, idp_group, idp_app_role, target, team_name, team_role, app_name, enterprise_permissions, app_permissions)
      VALUES (${tenantId}, ${input.idpGroup ?? null}, ${input.idpAppRole ?? null}, ${input.target},
        ${input.target === 'team' ? input.team : null},
        ${input.target === 'team' || input.target === 'all-teams' ? input.role : null}::team_role,
        ${input.target === 'app' ? input.app : null},
        ${input.target === 'enterprise' ? sql.param(input.permissions) : null}::enterprise_permission[],
        ${input.target === 'app' ? sql.param(input.permissions) : null}::app_permission[])
      RETURNING id`);
    if (input.target === 'team') {
      await tx.execute(
        sql`INSERT INTO teams (tenant_id, name) VALUES (${tenantId}, ${input.team}) ON CONFLICT DO NOTHING`,
      );
    }
    if (input.target === 'app') {
      await tx.execute(
        sql`INSERT INTO apps (tenant_id, name) VALUES (${tenantId}, ${input.app}) ON CONFLICT DO NOTHING`,
      );
    }
    await queueMatchedUsers(tx, tenantId, input, { event: 'rule.added', ruleId: row!.id, actor });
    await recordAudit(tx, {
      tenantId,
      actor,
      action: 'rule.added',
      subjectType: 'tenant',
      subjectId: tenantId,
      after: { id: row!.id, ...input },
    });
    return { id: row!.id, ...input } as AssignmentRule;
  });
}

export function listRules(db: Database, tenantId: string): Promise<AssignmentRule[]> {
  return loadRules(db, tenantId);
}

export async function removeRule(
  db: Database,
  tenantId: string,
  ruleId: string,
  actor: string,
): Promise<void> {
  if (!isUuid(ruleId)) throw notFound(`no rule ${ruleId}`);
  await db.transaction(async (tx) => {
    await lockRuleMatchingForChange(tx, tenantId);
    const [row] = await tx.execute<{ idp_group: string | null; idp_app_role: string | null }>(sql`
      DELETE FROM assignment_rules WHERE tenant_id = ${tenantId} AND id = ${ruleId}
      RETURNING idp_group, idp_app_role`);
    if (!row) throw notFound(`no rule ${ruleId}`);
    const source: RuleSource =
      row.idp_group !== null ? { idpGroup: row.idp_group } : { idpAppRole: row.idp_app_role! };
    const changeId = `rule:${ruleId}`;
    // Decided now, from the stored state of every member, in the transaction that removes the rule.
    await brakeChange(tx, {
      tenantId,
      changeId,
      event: 'rule.removed',
      affectedUsers: matchedUsers(tenantId, source),
    });
    await queueMatchedUsers(tx, tenantId, source, {
      event: 'rule.removed',
      ruleId,
      actor,
      correlationId: changeId,
    });
    await recordAudit(tx, {
      tenantId,
      actor,
      action: 'rule.removed',
      subjectType: 'tenant',
      subjectId: tenantId,
      before: { id: ruleId },
    });
  });
}

/**
 * The users (tenant id, user id) a rule's source matches: the members of its IdP group (by display name,
 * case-insensitively), or the users holding its app role (users.app_roles, GIN-indexed).
 */
function matchedUsers(tenantId: string, source: RuleSource): SQL {
  return source.idpGroup !== undefined
    ? sql`
      SELECT gm.tenant_id, gm.user_id FROM group_members gm JOIN groups g ON g.id = gm.group_id
      WHERE g.tenant_id = ${tenantId} AND lower(g.display_name) = lower(${source.idpGroup})`
    : sql`
      SELECT u.tenant_id, u.id FROM users u
      WHERE u.tenant_id = ${tenantId} AND u.app_roles @> jsonb_build_array(lower(${source.idpAppRole}::text))`;
}

/** Queues a reconcile of every user the rule's group or app role matches. */
async function queueMatchedUsers(
  tx: Executor,
  tenantId: string,
  source: RuleSource,
  cause: Record<string, unknown>,
) {
  await recordForReconcileEach(
    tx,
    {
      lane: 'reconcile',
      subjectType: 'user',
      cause: { ...cause, source: 'admin', at: new Date().toISOString() },
    },
    matchedUsers(tenantId, source),
  );
}

export function describeRule(rule: AssignmentRule): string {
  const source = rule.idpGroup !== undefined ? `group "${rule.idpGroup}"` : `app role "${rule.idpAppRole}"`;
  switch (rule.target) {
    case 'team':
      return `${source} → team ${rule.team} as ${rule.role}`;
    case 'enterprise':
      return `${source} → Enterprise Account ${rule.permissions.join(',')}`;
    case 'app':
      return `${source} → app ${rule.app} ${rule.permissions.join(',')}`;
    case 'all-teams':
      return `${source} → every team (now and later) as ${rule.role}`;
  }
}
