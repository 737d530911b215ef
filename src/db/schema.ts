import { sql } from 'drizzle-orm';
import {
  type AnyPgColumn,
  bigint,
  bigserial,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

/*
 * One schema for the whole daemon. Uniqueness that must never be violated is enforced here, by the
 * database, not by a read-then-write in application code: two SCIM requests racing to create the same
 * userName must end with one 201 and one 409, never two rows.
 */

export const teamRole = pgEnum('team_role', ['admin', 'member', 'viewer']);
export const enterprisePermission = pgEnum('enterprise_permission', ['view', 'create', 'manage', 'billing']);
export const appPermission = pgEnum('app_permission', ['view', 'deploy', 'operate', 'manage']);
export const userOrigin = pgEnum('user_origin', ['scim', 'saml', 'csv']);
export const jitMode = pgEnum('jit_mode', ['off', 'create', 'create-and-update']);
export const jobLane = pgEnum('job_lane', ['deprovision', 'reconcile', 'scan']);
export const subjectType = pgEnum('subject_type', ['user', 'group', 'team', 'tenant']);
export const ruleTarget = pgEnum('rule_target', ['team', 'enterprise', 'app', 'all-teams']);
/** Where a stored assignment (access granted to one user directly, not through a rule) came from. */
export const assignmentSource = pgEnum('assignment_source', ['import']);
export const tokenKind = pgEnum('token_kind', ['api', 'session']);
/** How an IdP's logins state groups: names (Okta), object ids (Entra), or not at all (a partner IdP). */
export const groupClaimFormat = pgEnum('group_claim_format', ['names', 'object-ids', 'none']);
export type GroupClaimFormat = (typeof groupClaimFormat.enumValues)[number];
export const adminRole = pgEnum('admin_role', ['owner', 'operator', 'auditor']);
export const clientScope = pgEnum('client_scope', ['introspect', 'revoke']);
/** Who put a user in a group: SCIM's pushes are authoritative; a SAML login only manages its own. */
export const membershipSource = pgEnum('membership_source', ['scim', 'saml']);

/**
 * The comparison key of a stored account name (NFC, full case folding), computed by the `account_key` SQL
 * function (drizzle/0011) so generated columns and indexes share one definition. A column only: the key
 * of a value a request brings is `accountKeyOf`.
 */
export const accountKey = (column: AnyPgColumn) => sql`account_key(${column})`;

/**
 * The key of an account name a statement is given (a parameter or placeholder), to compare with a stored
 * key or an indexed `account_key(column)`. A sub-select, so PostgreSQL computes it once per statement and
 * can look it up in an index. Every statement is prepared, and a generic plan (chosen after five runs,
 * often on statistics gone stale since the rows arrived) could put a bare `account_key($1)` in a scan
 * filter: evaluated for every row scanned, with `account_key(column)` computed per row beside it instead
 * of read from the drizzle/0021 index (BENCHMARKS.md, "Looking an account up by name").
 */
export const accountKeyOf = (value: unknown) => sql`(SELECT account_key(${value}))`;

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true }).notNull().defaultNow();

/** A tenant is one Enterprise Account with its SCIM credential and its policies. */
export const tenants = pgTable(
  'tenants',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull(),
    /** Public half of the SCIM bearer token, used to find the tenant; the secret half is only stored hashed. */
    scimTokenId: text('scim_token_id').notNull(),
    scimTokenHash: text('scim_token_hash').notNull(),
    scimTokenRotatedAt: timestamp('scim_token_rotated_at', { withTimezone: true }).notNull().defaultNow(),
    defaultTeamRole: teamRole('default_team_role').notNull().default('member'),
    fallbackAdminUserId: uuid('fallback_admin_user_id').references((): AnyPgColumn => users.id, {
      onDelete: 'set null',
    }),
    massChangeThresholdPercent: integer('mass_change_threshold_percent').notNull().default(10),
    jitMode: jitMode('jit_mode').notNull().default('create-and-update'),
    idpInitiatedSso: boolean('idp_initiated_sso').notNull().default(false),
    /** Oldest SAML assertion (by IssueInstant) a login may present, whatever its NotOnOrAfter says. */
    maxAssertionAgeSeconds: integer('max_assertion_age_seconds').notNull().default(600),
    inactivityDays: integer('inactivity_days').notNull().default(30),
    connector: text('connector').notNull().default('builtin'),
    connectorSettings: jsonb('connector_settings').notNull().default({}),
    /** `ok`, or why idsync stopped calling the platform for this tenant (a refused credential). */
    connectorStatus: text('connector_status', { enum: ['ok', 'stopped'] })
      .notNull()
      .default('ok'),
    connectorStatusReason: text('connector_status_reason'),
    driftScanIntervalMinutes: integer('drift_scan_interval_minutes').notNull().default(60),
    /** How often the platform's audit trail is read for changes made outside idsync (minute-level drift). */
    auditPollSeconds: integer('audit_poll_seconds').notNull().default(60),
    /** Per finding class: `report` (default) or `fix`. */
    driftPolicy: jsonb('drift_policy').notNull().default({}),
    /** Monthly price of a seat per team role, e.g. {"admin": 25, "member": 25, "viewer": 25}. */
    seatPrices: jsonb('seat_prices').notNull().default({}),
    /** Members of this IdP group may open the security console after signing in through SSO. */
    consoleGroup: text('console_group'),
    /** Scopes a personal API token of this tenant may carry at most (then bounded by the user's access). */
    tokenScopes: text('token_scopes')
      .array()
      .notNull()
      .default(
        sql`'{apps:read,apps:deploy,apps:operate,apps:manage,teams:read,teams:manage,enterprise:read,enterprise:create,enterprise:manage,enterprise:billing}'::text[]`,
      ),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('tenants_name_key').on(t.name),
    uniqueIndex('tenants_scim_token_id_key').on(t.scimTokenId),
    check('tenants_name_format', sql`${t.name} ~ '^[a-z0-9][a-z0-9-]{0,62}$'`),
    check('tenants_mass_change_threshold_range', sql`${t.massChangeThresholdPercent} BETWEEN 0 AND 100`),
    check('tenants_inactivity_days_positive', sql`${t.inactivityDays} > 0`),
    check('tenants_drift_interval_positive', sql`${t.driftScanIntervalMinutes} > 0`),
    check('tenants_audit_poll_range', sql`${t.auditPollSeconds} BETWEEN 1 AND 86400`),
    check('tenants_max_assertion_age_range', sql`${t.maxAssertionAgeSeconds} BETWEEN 30 AND 86400`),
  ],
);

export const teams = pgTable(
  'teams',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** The remote platform's id (Heroku's team id): names can be renamed there, ids cannot. */
    remoteId: text('remote_id'),
    /**
     * When a read of the platform (a scan, the audit trail) last listed this team; null while idsync
     * knows the team only from a rule or its own grants, or once the platform stopped listing it. The
     * teams an "every team" rule covers.
     */
    listedAt: timestamp('listed_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('teams_tenant_name_key').on(t.tenantId, t.name),
    uniqueIndex('teams_tenant_remote_id_key').on(t.tenantId, t.remoteId),
  ],
);

export const apps = pgTable(
  'apps',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** The remote platform's id (Heroku's app id): names can be renamed there, ids cannot. */
    remoteId: text('remote_id'),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('apps_tenant_name_key').on(t.tenantId, t.name),
    uniqueIndex('apps_tenant_remote_id_key').on(t.tenantId, t.remoteId),
  ],
);

/**
 * The members of a SCIM User resource that idsync renders from columns (or from group_members), never
 * from `attributes`: the renderer appends `attributes` after them as text, so a key of these there
 * would be a second member of that name (a CHECK constraint keeps them out).
 */
export const USER_KEYS_FROM_COLUMNS = ['schemas', 'id', 'userName', 'externalId', 'active', 'meta', 'groups'];

/**
 * A SCIM User. userName, externalId and active are columns because they are filtered, constrained
 * and acted on; every other SCIM attribute (name, emails, enterprise extension, …) lives in `attributes`
 * as the client sent it, and filters reach into it with jsonb operators.
 */
export const users = pgTable(
  'users',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    userName: text('user_name').notNull(),
    /** account_key(user_name): what uniqueness and every lookup by name compare. */
    userNameKey: text('user_name_key').notNull().generatedAlwaysAs(sql`account_key(user_name)`),
    externalId: text('external_id'),
    active: boolean('active').notNull().default(true),
    attributes: jsonb('attributes').notNull().default({}),
    origin: userOrigin('origin').notNull(),
    /**
     * The values of the user's SCIM `roles` (Entra app-role assignments), lower-cased, as a jsonb array that
     * assignment rules match with `@>`. Computed by PostgreSQL from `attributes`, so a SCIM write costs
     * no extra statement.
     */
    appRoles: jsonb('app_roles')
      .notNull()
      .generatedAlwaysAs(sql`lower(jsonb_path_query_array(attributes, 'lax $.roles[*].value')::text)::jsonb`),
    lastSsoLoginAt: timestamp('last_sso_login_at', { withTimezone: true }),
    /** Tombstone: set when the IdP deletes the user. The row stays for the audit trail and receipts. */
    deprovisionedAt: timestamp('deprovisioned_at', { withTimezone: true }),
    /**
     * When the IdP last turned the user off (deactivated or deleted); null while active. Kept by a
     * trigger, so every path that deactivates sets it. One offboarding, one receipt: its IdP event time.
     */
    deactivatedAt: timestamp('deactivated_at', { withTimezone: true }),
    version: integer('version').notNull().default(1),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    /**
     * The user's SCIM resource as far as the row alone decides it, kept rendered by PostgreSQL on every
     * write so that reads only splice (src/scim/user-queries.ts, userResourceJson): the head runs from
     * `{"schemas":` to the lastModified value's closing quote, the tail is the stored `attributes` after
     * the members from columns, closing the object. A page of 100 users cost PostgreSQL 0.86–1.15 ms
     * of CPU rendering them on every read, 0.46–0.54 ms splicing them (BENCHMARKS.md, "Users kept
     * rendered"). `scim_text` and `scim_timestamp` are immutable wrappers (migration 0029), as a generated
     * column allows no other: `to_json` and `to_char` are declared stable for types and formats this
     * never uses.
     */
    scimHead: text('scim_head')
      .notNull()
      .generatedAlwaysAs(
        sql`'{"schemas":' || CASE WHEN attributes ? 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'
          THEN '["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]'
          ELSE '["urn:ietf:params:scim:schemas:core:2.0:User"]' END
        || ',"id":"' || id::text || '","userName":' || scim_text(user_name)
        || CASE WHEN external_id IS NULL THEN '' ELSE ',"externalId":' || scim_text(external_id) END
        || ',"active":' || active::text
        || ',"meta":{"resourceType":"User","created":"' || scim_timestamp(created_at)
        || '","lastModified":"' || scim_timestamp(updated_at) || '"'`,
      ),
    scimTail: text('scim_tail')
      .notNull()
      .generatedAlwaysAs(
        sql`CASE WHEN attributes = '{}'::jsonb THEN '}' ELSE ',' || substr(attributes::text, 2) END`,
      ),
  },
  (t) => [
    // RFC 7643 §4.1.1: userName is caseExact=false; the key also folds Unicode spelling variants.
    uniqueIndex('users_tenant_user_name_key')
      .on(t.tenantId, t.userNameKey)
      .where(sql`${t.deprovisionedAt} IS NULL`),
    // Not unique: RFC 7643 gives externalId no uniqueness, and Microsoft's conformance suite creates
    // several users with one externalId. Groups' externalIds are unique (SAML group claims map by them).
    index('users_tenant_external_id_idx')
      .on(t.tenantId, t.externalId)
      .where(sql`${t.externalId} IS NOT NULL`),
    index('users_tenant_live_order_idx')
      .on(t.tenantId, t.createdAt, t.id)
      .where(sql`${t.deprovisionedAt} IS NULL`),
    index('users_tenant_tombstone_name_idx').on(t.tenantId, t.userNameKey),
    index('users_app_roles_idx').using('gin', t.appRoles),
    // The sweeper's lookup of offboarded users.
    index('users_deactivated_idx').on(t.deactivatedAt).where(sql`${t.deactivatedAt} IS NOT NULL`),
    check(
      'users_attributes_beside_columns',
      sql`jsonb_typeof(${t.attributes}) = 'object' AND NOT ${t.attributes} ?| ${sql.raw(`ARRAY[${USER_KEYS_FROM_COLUMNS.map((k) => `'${k}'`).join(', ')}]`)}`,
    ),
  ],
);

export const groups = pgTable(
  'groups',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    displayName: text('display_name').notNull(),
    externalId: text('external_id'),
    version: integer('version').notNull().default(1),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('groups_tenant_display_name_key').on(t.tenantId, sql`lower(${t.displayName})`),
    uniqueIndex('groups_tenant_external_id_key')
      .on(t.tenantId, t.externalId)
      .where(sql`${t.externalId} IS NOT NULL`),
    // Entra's SAML group claims are object ids (GUIDs), compared case-insensitively.
    index('groups_tenant_external_id_lower_idx')
      .on(t.tenantId, sql`lower(${t.externalId})`)
      .where(sql`${t.externalId} IS NOT NULL`),
    index('groups_tenant_order_idx').on(t.tenantId, t.createdAt, t.id),
  ],
);

/**
 * A group's member changes are counted here, spread over GROUP_VERSION_SLOTS rows per group, instead of
 * bumping the group row: a version bump on one row makes every concurrent member add to a hot group wait
 * for the previous one's commit. The group's version (its ETag) is groups.version plus the sum of its
 * slots, and every change adds exactly one to one of them, so the version still changes on every
 * change (RFC 7644 §3.14). A conditional write (If-Match) locks the group row and all its slots.
 */
export const GROUP_VERSION_SLOTS = 16;

export const groupVersionSlots = pgTable(
  'group_version_slots',
  {
    groupId: uuid('group_id')
      .notNull()
      .references(() => groups.id, { onDelete: 'cascade' }),
    slot: smallint('slot').notNull(),
    changes: integer('changes').notNull().default(0),
    changedAt: timestamp('changed_at', { withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.groupId, t.slot] })],
);

export const groupMembers = pgTable(
  'group_members',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    groupId: uuid('group_id')
      .notNull()
      .references(() => groups.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    /** The member's display text as the IdP sent it (clients read it back). */
    display: text('display'),
    /** `scim` once SCIM pushed it (only SCIM removes it); `saml` while only SAML claims grant it. */
    source: membershipSource('source').notNull().default('scim'),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.groupId, t.userId] }), index('group_members_user_idx').on(t.userId)],
);

/**
 * IdP group → access. The group is named by its display name (matched case-insensitively), so an admin
 * can write rules before the IdP has pushed the group, and SAML name claims (Okta) match the same rule.
 * The CHECK makes each target's shape the only shape its row can have.
 */
export const assignmentRules = pgTable(
  'assignment_rules',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    /** Exactly one of: the IdP group's display name, or the value of an app role (SCIM `roles`). */
    idpGroup: text('idp_group'),
    idpAppRole: text('idp_app_role'),
    target: ruleTarget('target').notNull(),
    teamName: text('team_name'),
    teamRole: teamRole('team_role'),
    appName: text('app_name'),
    enterprisePermissions: enterprisePermission('enterprise_permissions').array(),
    appPermissions: appPermission('app_permissions').array(),
    createdAt: createdAt(),
  },
  (t) => [
    index('assignment_rules_tenant_group_idx').on(t.tenantId, sql`lower(${t.idpGroup})`),
    check('assignment_rules_one_source', sql`(${t.idpGroup} IS NULL) <> (${t.idpAppRole} IS NULL)`),
    check(
      'assignment_rules_shape',
      sql`(
        ${t.target} = 'team' AND ${t.teamName} IS NOT NULL AND ${t.teamRole} IS NOT NULL
          AND ${t.appName} IS NULL AND ${t.enterprisePermissions} IS NULL AND ${t.appPermissions} IS NULL
      ) OR (
        ${t.target} = 'enterprise' AND cardinality(${t.enterprisePermissions}) > 0
          AND ${t.teamName} IS NULL AND ${t.teamRole} IS NULL AND ${t.appName} IS NULL AND ${t.appPermissions} IS NULL
      ) OR (
        ${t.target} = 'app' AND ${t.appName} IS NOT NULL AND cardinality(${t.appPermissions}) > 0
          AND ${t.teamName} IS NULL AND ${t.teamRole} IS NULL AND ${t.enterprisePermissions} IS NULL
      ) OR (
        ${t.target}::text = 'all-teams' AND ${t.teamRole} IS NOT NULL
          AND ${t.teamName} IS NULL AND ${t.appName} IS NULL AND ${t.enterprisePermissions} IS NULL AND ${t.appPermissions} IS NULL
      )`,
    ),
  ],
);

/**
 * Access granted to one user directly rather than through a rule: today a CSV import (`source` import).
 * The reconciler's desired state adds these to what the rules give (highest role wins, permissions
 * unioned), so the plan, the brake, receipts and drift see them. A row is a team role or an app's
 * permissions, never both (the CHECK); one row per user, source and team or app (the partial indexes).
 */
export const assignments = pgTable(
  'assignments',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    source: assignmentSource('source').notNull(),
    teamName: text('team_name'),
    teamRole: teamRole('team_role'),
    appName: text('app_name'),
    appPermissions: appPermission('app_permissions').array(),
    /** The line of the file that last set it, for an admin tracing where an access came from. */
    line: integer('line'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('assignments_user_team_key')
      .on(t.userId, t.source, t.teamName)
      .where(sql`${t.teamName} IS NOT NULL`),
    uniqueIndex('assignments_user_app_key')
      .on(t.userId, t.source, t.appName)
      .where(sql`${t.appName} IS NOT NULL`),
    // Reading one user's assignments (every reconcile, every drift scan page): the unique indexes
    // above are partial, so they cannot serve a lookup by user alone.
    index('assignments_user_idx').on(t.userId),
    index('assignments_tenant_source_idx').on(t.tenantId, t.source),
    check(
      'assignments_shape',
      sql`(
        ${t.teamName} IS NOT NULL AND ${t.teamRole} IS NOT NULL AND ${t.appName} IS NULL AND ${t.appPermissions} IS NULL
      ) OR (
        ${t.appName} IS NOT NULL AND cardinality(${t.appPermissions}) > 0 AND ${t.teamName} IS NULL AND ${t.teamRole} IS NULL
      )`,
    ),
  ],
);

/*
 * The built-in platform: the state a platform like Heroku keeps, held in idsync's own tables. Members are
 * keyed by their platform account (the login e-mail, lower-cased), not by an idsync user id, because the
 * platform can hold accounts the IdP has never heard of — exactly the orphans a drift report must show.
 */
export const platformEnterpriseMembers = pgTable(
  'platform_enterprise_members',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    account: text('account').notNull(),
    permissions: enterprisePermission('permissions').array().notNull(),
    /** Signs in through the platform's SSO (its CLI tokens expire); null when the platform did not say. */
    federated: boolean('federated'),
    /** The platform's id of the user (Heroku user id), used in paths instead of the e-mail when known. */
    remoteId: text('remote_id'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.account] }),
    index('platform_enterprise_members_account_key_idx').on(t.tenantId, accountKey(t.account)),
    check('platform_enterprise_members_account_lower', sql`${t.account} = lower(${t.account})`),
  ],
);

export const platformTeamMembers = pgTable(
  'platform_team_members',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    teamId: uuid('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    account: text('account').notNull(),
    role: teamRole('role').notNull(),
    /** The platform's id of this membership (Heroku team-member id), when known. */
    remoteId: text('remote_id'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    primaryKey({ columns: [t.teamId, t.account] }),
    index('platform_team_members_account_idx').on(t.tenantId, t.account),
    index('platform_team_members_account_key_idx').on(t.tenantId, accountKey(t.account)),
    check('platform_team_members_account_lower', sql`${t.account} = lower(${t.account})`),
  ],
);

export const platformAppCollaborators = pgTable(
  'platform_app_collaborators',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    appId: uuid('app_id')
      .notNull()
      .references(() => apps.id, { onDelete: 'cascade' }),
    account: text('account').notNull(),
    permissions: appPermission('permissions').array().notNull(),
    /** The platform's id of this collaborator record (Heroku collaborator id), when known. */
    remoteId: text('remote_id'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    primaryKey({ columns: [t.appId, t.account] }),
    index('platform_app_collaborators_account_idx').on(t.tenantId, t.account),
    index('platform_app_collaborators_account_key_idx').on(t.tenantId, accountKey(t.account)),
    check('platform_app_collaborators_account_lower', sql`${t.account} = lower(${t.account})`),
  ],
);

/**
 * Accounts the platform does not know yet (Heroku: "Couldn't find that user" before the person's first
 * SSO login creates their Heroku account). Their grants wait; a sign-in through idsync queues a retry.
 */
export const platformPendingAccounts = pgTable(
  'platform_pending_accounts',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    account: text('account').notNull(),
    reason: text('reason').notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.account] })],
);

/**
 * The last thing each platform account did (Heroku: an audit-trail event or a release it created; the
 * built-in platform: `POST /api/tenants/:t/activity`), keyed by `account_key()` so it matches
 * `users.user_name_key`. Only ever moved forward (GREATEST), so replayed or late reads cannot age it.
 */
export const platformActivity = pgTable(
  'platform_activity',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    accountKey: text('account_key').notNull(),
    /** What it was, e.g. `code_release.create`, `release`, `deploy`. */
    kind: text('kind').notNull(),
    app: text('app'),
    at: timestamp('at', { withTimezone: true }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.accountKey] })],
);

/**
 * Where the audit-trail poller of each tenant stopped: the newest event it processed and the ids of
 * the events at exactly that instant, so overlapping reads skip what was already handled.
 */
export const platformAuditCursors = pgTable('platform_audit_cursors', {
  tenantId: uuid('tenant_id')
    .primaryKey()
    .references(() => tenants.id, { onDelete: 'cascade' }),
  lastEventAt: timestamp('last_event_at', { withTimezone: true }).notNull(),
  seenEventIds: text('seen_event_ids').array().notNull().default(sql`'{}'::text[]`),
  updatedAt: updatedAt(),
});

/**
 * Edges removed on the platform in the last moments. Heroku is eventually consistent after a DELETE
 * (terraform polls for 10 s), so a scan overlapping a removal must not read the edge back as present.
 */
export const platformRecentRemovals = pgTable(
  'platform_recent_removals',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    /** `enterprise`, `team:<name>` or `app:<name>`. */
    edge: text('edge').notNull(),
    account: text('account').notNull(),
    removedAt: timestamp('removed_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.edge, t.account] })],
);

/** Credentials idsync issues (personal API tokens, SSO sessions): looked up by tokenId, secret stored hashed. */
export const tokens = pgTable(
  'tokens',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    kind: tokenKind('kind').notNull(),
    tokenId: text('token_id').notNull(),
    secretHash: text('secret_hash').notNull(),
    label: text('label'),
    scopes: text('scopes').array().notNull().default(sql`'{}'::text[]`),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    revokedReason: text('revoked_reason'),
  },
  (t) => [
    uniqueIndex('tokens_token_id_key').on(t.tokenId),
    index('tokens_user_live_idx').on(t.userId).where(sql`${t.revokedAt} IS NULL`),
  ],
);

/**
 * Platform services that check tokens (RFC 7662 introspection, RFC 7009 revocation) for one tenant.
 * `client_id` is the public half of the `client_<id>_<secret>` credential; only the secret's hash is kept.
 */
export const oauthClients = pgTable(
  'oauth_clients',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    clientId: text('client_id').notNull(),
    secretHash: text('secret_hash').notNull(),
    scopes: clientScope('scopes').array().notNull(),
    createdAt: createdAt(),
    rotatedAt: timestamp('rotated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('oauth_clients_tenant_name_key').on(t.tenantId, t.name),
    uniqueIndex('oauth_clients_client_id_key').on(t.clientId),
    check('oauth_clients_name_format', sql`${t.name} ~ '^[a-z0-9][a-z0-9._-]{0,62}$'`),
  ],
);

/**
 * Admin API and console credentials with a role, for one tenant or (tenant_id null) all of them. The
 * IDSYNC_ADMIN_TOKEN environment token is the bootstrap owner and has no row.
 */
export const adminTokens = pgTable(
  'admin_tokens',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull(),
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'cascade' }),
    role: adminRole('role').notNull(),
    tokenId: text('token_id').notNull(),
    secretHash: text('secret_hash').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('admin_tokens_token_id_key').on(t.tokenId),
    uniqueIndex('admin_tokens_live_name_key').on(t.name).where(sql`${t.revokedAt} IS NULL`),
    check('admin_tokens_name_format', sql`${t.name} ~ '^[a-z0-9][a-z0-9._-]{0,62}$'`),
  ],
);

/**
 * The durable hand-off from a request to the reconciler: written in the same transaction as the change
 * it announces, moved into BullMQ by the relay. A row names a subject (a key), never a diff, so relaying
 * it twice is harmless.
 */
export const outbox = pgTable(
  'outbox',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    lane: jobLane('lane').notNull(),
    subjectType: subjectType('subject_type').notNull(),
    subjectId: text('subject_id').notNull(),
    cause: jsonb('cause').notNull().default({}),
    createdAt: createdAt(),
    relayedAt: timestamp('relayed_at', { withTimezone: true }),
    /** How many times the row was relayed: each relay is a new job id, so a lost job can be re-sent. */
    relayCount: integer('relay_count').notNull().default(0),
    /** Set when a job for the subject finished after reading the state this row announced. */
    completedAt: timestamp('completed_at', { withTimezone: true }),
  },
  (t) => [
    index('outbox_pending_idx').on(t.id).where(sql`${t.relayedAt} IS NULL`),
    // The sweeper's and the job's lookups: rows of one subject not yet completed.
    index('outbox_open_subject_idx')
      .on(t.tenantId, t.subjectType, t.subjectId, t.id)
      .where(sql`${t.completedAt} IS NULL`),
  ],
);

/** Append-only: a trigger (see the migrations) refuses UPDATE and DELETE on this table. */
export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'set null' }),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    subjectType: subjectType('subject_type'),
    subjectId: text('subject_id'),
    before: jsonb('before'),
    after: jsonb('after'),
    cause: jsonb('cause'),
    correlationId: text('correlation_id'),
    durationMs: integer('duration_ms'),
  },
  (t) => [
    index('audit_log_tenant_subject_idx').on(t.tenantId, t.subjectType, t.subjectId, t.id),
    index('audit_log_tenant_at_idx').on(t.tenantId, t.at),
  ],
);

/** Each report carries the hash of the tenant's previous one, so a removed or edited report shows. */
export const driftReports = pgTable(
  'drift_reports',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    /** Position in the tenant's chain of reports, 1 for the first. */
    seq: integer('seq').notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
    connector: text('connector').notNull(),
    /** Counts by class and severity, the difference from the previous report, and the scan's cost. */
    summary: jsonb('summary').notNull(),
    previousHash: text('previous_hash'),
    /** sha256 over the previous hash, the summary and every finding: editing any of them breaks the chain. */
    hash: text('hash').notNull(),
  },
  (t) => [
    index('drift_reports_tenant_created_idx').on(t.tenantId, t.createdAt),
    uniqueIndex('drift_reports_tenant_seq_key').on(t.tenantId, t.seq),
  ],
);

export const driftFindings = pgTable(
  'drift_findings',
  {
    reportId: uuid('report_id')
      .notNull()
      .references(() => driftReports.id, { onDelete: 'cascade' }),
    /** Identifies the same finding across reports (class, account and the edge). */
    key: text('key').notNull(),
    class: text('class').notNull(),
    severity: text('severity').notNull(),
    account: text('account').notNull(),
    userId: uuid('user_id'),
    team: text('team'),
    app: text('app'),
    expected: text('expected'),
    actual: text('actual'),
    since: timestamp('since', { withTimezone: true }).notNull(),
    action: text('action').notNull(),
    /** `new` in this report, or `open` since an earlier one. */
    status: text('status', { enum: ['new', 'open'] }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.reportId, t.key] }),
    index('drift_findings_report_class_idx').on(t.reportId, t.class),
  ],
);

/** The offboarding receipt: one per deprovisioning event of a user; its edges are in receipt_edges. */
export const receipts = pgTable(
  'receipts',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    account: text('account').notNull(),
    idpEvent: text('idp_event').notNull(),
    idpEventAt: timestamp('idp_event_at', { withTimezone: true }).notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    completedAt: timestamp('completed_at', { withTimezone: true }),
    tokensRevoked: integer('tokens_revoked').notNull().default(0),
    leftToHuman: jsonb('left_to_human').notNull().default([]),
    correlationId: text('correlation_id'),
  },
  (t) => [
    uniqueIndex('receipts_user_event_key').on(t.userId, t.idpEventAt),
    index('receipts_tenant_event_idx').on(t.tenantId, t.idpEventAt),
  ],
);

/**
 * Each edge of an offboarding, recorded as `removing` before the platform is asked and `removed` after.
 * A worker that dies between the two leaves a `removing` edge; the retry finds the edge gone from the
 * platform and confirms it, so the receipt never loses an edge that was in fact removed.
 */
export const receiptEdges = pgTable(
  'receipt_edges',
  {
    receiptId: uuid('receipt_id')
      .notNull()
      .references(() => receipts.id, { onDelete: 'cascade' }),
    key: text('key').notNull(),
    operation: text('operation').notNull(),
    description: text('description').notNull(),
    status: text('status', { enum: ['removing', 'removed'] }).notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    removedAt: timestamp('removed_at', { withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.receiptId, t.key] })],
);

/**
 * One IdP change (a SCIM request, a rule removal) that would remove more than the tenant's threshold of
 * the Enterprise Account's members: its removals wait here until someone approves them.
 */
export const heldChanges = pgTable(
  'held_changes',
  {
    id: text('id').notNull(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    status: text('status', { enum: ['pending', 'approved'] })
      .notNull()
      .default('pending'),
    event: text('event').notNull(),
    affectedUsers: integer('affected_users').notNull(),
    enterpriseSize: integer('enterprise_size').notNull(),
    createdAt: createdAt(),
    approvedAt: timestamp('approved_at', { withTimezone: true }),
    approvedBy: text('approved_by'),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.id] })],
);

export const heldChangeUsers = pgTable(
  'held_change_users',
  {
    tenantId: uuid('tenant_id').notNull(),
    changeId: text('change_id').notNull(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.changeId, t.userId] }),
    index('held_change_users_user_idx').on(t.userId),
  ],
);

/**
 * A tenant's SAML identity provider. Several signing certificates may be listed at once so an IdP can
 * roll its key without a gap. Entra signs only the assertion by default, Okta can sign both: the
 * response signature is required only when `wantResponseSigned`, the assertion signature always.
 */
export const ssoConnections = pgTable(
  'sso_connections',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    idpEntityId: text('idp_entity_id').notNull(),
    ssoUrl: text('sso_url').notNull(),
    certificates: text('certificates').array().notNull(),
    wantResponseSigned: boolean('want_response_signed').notNull().default(false),
    /** SAML attribute names for email, givenName, familyName, displayName and groups. */
    attributeMap: jsonb('attribute_map').notNull().default({}),
    groupClaimFormat: groupClaimFormat('group_claim_format').notNull().default('names'),
    /** E-mail domains (lower case) whose users this IdP may sign in; empty: any. */
    allowedDomains: text('allowed_domains').array().notNull().default(sql`'{}'::text[]`),
    /** The IdP's HTTP-Redirect SingleLogoutService; null: the IdP does no Single Logout. */
    sloUrl: text('slo_url'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('sso_connections_tenant_idp_key').on(t.tenantId, t.idpEntityId)],
);

/**
 * Which IdP login a session came from, for SAML Single Logout: the IdP names the session to end by
 * NameID and SessionIndex, and only the IdP that started a session may end it.
 */
export const samlSessions = pgTable(
  'saml_sessions',
  {
    tokenId: uuid('token_id')
      .primaryKey()
      .references(() => tokens.id, { onDelete: 'cascade' }),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    connectionId: uuid('connection_id')
      .notNull()
      .references(() => ssoConnections.id, { onDelete: 'cascade' }),
    nameId: text('name_id').notNull(),
    nameIdFormat: text('name_id_format'),
    sessionIndex: text('session_index'),
    createdAt: createdAt(),
  },
  (t) => [index('saml_sessions_connection_name_idx').on(t.connectionId, sql`lower(${t.nameId})`)],
);

/** Each tenant's SP signing key for logout messages: the certificate is published, the key is sealed. */
export const ssoSigningKeys = pgTable('sso_signing_keys', {
  tenantId: uuid('tenant_id')
    .primaryKey()
    .references(() => tenants.id, { onDelete: 'cascade' }),
  certificate: text('certificate').notNull(),
  privateKeySealed: text('private_key_sealed').notNull(),
  createdAt: createdAt(),
});

/**
 * Where a tenant's alerts go (issue 15): an HTTPS or HTTP URL, the events it wants, and its Standard
 * Webhooks signing secret, sealed like a platform token (idsync must sign with it, so it cannot be hashed).
 * The URL is a secret too (a Slack or Teams webhook URL is its own credential): sealed with the same
 * box, shown everywhere as `url_shown` (scheme, host and a short hash of the path); `url_digest` (its
 * SHA-256) keeps one live endpoint per URL and tenant, so one event never reaches the same URL twice.
 */
export const webhookEndpoints = pgTable(
  'webhook_endpoints',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    urlSealed: text('url_sealed').notNull(),
    urlShown: text('url_shown').notNull(),
    urlDigest: text('url_digest').notNull(),
    events: text('events').array().notNull(),
    format: text('format', { enum: ['standard', 'slack'] })
      .notNull()
      .default('standard'),
    secretSealed: text('secret_sealed').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    /** Set when the receiver answered 410 Gone or an admin removed it: nothing is sent to it any more. */
    disabledAt: timestamp('disabled_at', { withTimezone: true }),
    disabledReason: text('disabled_reason'),
  },
  (t) => [
    uniqueIndex('webhook_endpoints_live_url_key')
      .on(t.tenantId, t.urlDigest)
      .where(sql`${t.disabledAt} IS NULL`),
    check('webhook_endpoints_http_url', sql`${t.urlShown} ~ '^https?://'`),
  ],
);

/**
 * One event for one endpoint, written with the fact it announces (the outbox of alerts); the dispatcher
 * moves it into the webhook lane. `event_key` names the fact (`brake.held:<change>`), so a fact announced
 * twice (a retried job, a change held by several requests) reaches an endpoint once.
 */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    endpointId: uuid('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    /** The Standard Webhooks message id (webhook-id): one per event, the same on every attempt. */
    messageId: text('message_id').notNull(),
    eventKey: text('event_key').notNull(),
    eventType: text('event_type').notNull(),
    payload: jsonb('payload').notNull(),
    status: text('status', { enum: ['pending', 'delivered', 'failed', 'gone', 'cancelled'] })
      .notNull()
      .default('pending'),
    attempts: integer('attempts').notNull().default(0),
    createdAt: createdAt(),
    queuedAt: timestamp('queued_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('webhook_deliveries_endpoint_event_key').on(t.endpointId, t.eventKey),
    // What the dispatcher looks for: pending rows not queued yet, or queued long ago (Redis lost the job).
    index('webhook_deliveries_pending_idx').on(t.queuedAt).where(sql`${t.status} = 'pending'`),
    index('webhook_deliveries_tenant_recent_idx').on(t.tenantId, t.id),
  ],
);

/** Every attempt at a delivery and how it ended: the receiver's status, or why there was none. */
export const webhookDeliveryAttempts = pgTable(
  'webhook_delivery_attempts',
  {
    deliveryId: bigint('delivery_id', { mode: 'number' })
      .notNull()
      .references(() => webhookDeliveries.id, { onDelete: 'cascade' }),
    attempt: integer('attempt').notNull(),
    responseStatus: integer('response_status'),
    error: text('error'),
    durationMs: integer('duration_ms').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.deliveryId, t.attempt] })],
);
