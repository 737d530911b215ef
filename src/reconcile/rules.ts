import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../db/client.js';
import { isUuid } from '../db/uuid.js';
import { invalid, notFound } from '../errors.js';
import {
  APP_PERMISSIONS,
  type AssignmentRule,
  canonical,
  ENTERPRISE_PERMISSIONS,
  TEAM_ROLES,
} from './model.js';
import { loadRules } from './state.js';

/** A rule as an admin writes it (API body, CLI flags): exactly one target shape is accepted. */
export const ruleInputSchema = z.discriminatedUnion('target', [
  z.object({
    target: z.literal('team'),
    idpGroup: z.string().trim().min(1, 'idpGroup must not be empty'),
    team: z.string().trim().min(1, 'team must not be empty'),
    role: z.enum(TEAM_ROLES, { error: `role must be one of ${TEAM_ROLES.join(', ')}` }),
  }),
  z.object({
    target: z.literal('enterprise'),
    idpGroup: z.string().trim().min(1, 'idpGroup must not be empty'),
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
    idpGroup: z.string().trim().min(1, 'idpGroup must not be empty'),
    app: z.string().trim().min(1, 'app must not be empty'),
    permissions: z
      .array(z.enum(APP_PERMISSIONS, { error: `permissions must be among ${APP_PERMISSIONS.join(', ')}` }))
      .min(1, 'at least one permission'),
  }),
]);

export type RuleInput = z.infer<typeof ruleInputSchema>;

export function readRuleInput(body: unknown): RuleInput {
  const parsed = ruleInputSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
    throw invalid(`${where}${issue.message}`);
  }
  const rule = parsed.data;
  // One spelling for a set of permissions, so listings and comparisons are stable.
  if (rule.target === 'enterprise')
    return { ...rule, permissions: canonical(rule.permissions, ENTERPRISE_PERMISSIONS) };
  if (rule.target === 'app') return { ...rule, permissions: canonical(rule.permissions, APP_PERMISSIONS) };
  return rule;
}

/**
 * Adds a rule. The team or app it names is created in the built-in platform when missing, and every
 * current member of the IdP group is queued for a reconcile in the same transaction.
 */
export async function addRule(
  db: Database,
  tenantId: string,
  input: RuleInput,
  actor: string,
): Promise<AssignmentRule> {
  return db.transaction(async (tx) => {
    const [row] = await tx.execute<{ id: string }>(sql`
      INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role, app_name, enterprise_permissions, app_permissions)
      VALUES (${tenantId}, ${input.idpGroup}, ${input.target},
        ${input.target === 'team' ? input.team : null}, ${input.target === 'team' ? input.role : null}::team_role,
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
    await queueGroupMembers(tx, tenantId, input.idpGroup, { event: 'rule.added', ruleId: row!.id, actor });
    await tx.execute(sql`
      INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, after)
      VALUES (${tenantId}, ${actor}, 'rule.added', 'tenant', ${tenantId}, ${JSON.stringify({ id: row!.id, ...input })}::jsonb)`);
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
    const [row] = await tx.execute<{ idp_group: string }>(sql`
      DELETE FROM assignment_rules WHERE tenant_id = ${tenantId} AND id = ${ruleId} RETURNING idp_group`);
    if (!row) throw notFound(`no rule ${ruleId}`);
    await queueGroupMembers(tx, tenantId, row.idp_group, {
      event: 'rule.removed',
      ruleId,
      actor,
      correlationId: `rule:${ruleId}`,
    });
    await tx.execute(sql`
      INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, before)
      VALUES (${tenantId}, ${actor}, 'rule.removed', 'tenant', ${tenantId}, ${JSON.stringify({ id: ruleId })}::jsonb)`);
  });
}

type Executor = Pick<Database, 'execute'>;

async function queueGroupMembers(
  tx: Executor,
  tenantId: string,
  idpGroup: string,
  cause: Record<string, unknown>,
) {
  const full = { ...cause, source: 'admin', at: new Date().toISOString() };
  // changeSize: how many users this one change touches, for the mass-change brake.
  await tx.execute(sql`
    WITH members AS (
      SELECT gm.user_id FROM group_members gm JOIN groups g ON g.id = gm.group_id
      WHERE g.tenant_id = ${tenantId} AND lower(g.display_name) = lower(${idpGroup})
    )
    INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
    SELECT ${tenantId}, 'reconcile', 'user', members.user_id::text,
      ${JSON.stringify(full)}::jsonb || jsonb_build_object('changeSize', (SELECT count(*) FROM members))
    FROM members`);
}

export function describeRule(rule: AssignmentRule): string {
  switch (rule.target) {
    case 'team':
      return `group "${rule.idpGroup}" → team ${rule.team} as ${rule.role}`;
    case 'enterprise':
      return `group "${rule.idpGroup}" → Enterprise Account ${rule.permissions.join(',')}`;
    case 'app':
      return `group "${rule.idpGroup}" → app ${rule.app} ${rule.permissions.join(',')}`;
  }
}
