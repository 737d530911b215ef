CREATE TYPE "public"."app_permission" AS ENUM('view', 'deploy', 'operate', 'manage');--> statement-breakpoint
CREATE TYPE "public"."enterprise_permission" AS ENUM('view', 'create', 'manage', 'billing');--> statement-breakpoint
CREATE TYPE "public"."jit_mode" AS ENUM('off', 'create', 'create-and-update');--> statement-breakpoint
CREATE TYPE "public"."job_lane" AS ENUM('deprovision', 'reconcile', 'scan');--> statement-breakpoint
CREATE TYPE "public"."rule_target" AS ENUM('team', 'enterprise', 'app');--> statement-breakpoint
CREATE TYPE "public"."subject_type" AS ENUM('user', 'group', 'team', 'tenant');--> statement-breakpoint
CREATE TYPE "public"."team_role" AS ENUM('admin', 'member', 'viewer');--> statement-breakpoint
CREATE TYPE "public"."token_kind" AS ENUM('api', 'session');--> statement-breakpoint
CREATE TYPE "public"."user_origin" AS ENUM('scim', 'saml', 'csv');--> statement-breakpoint
CREATE TABLE "apps" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "assignment_rules" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"idp_group" text NOT NULL,
	"target" "rule_target" NOT NULL,
	"team_name" text,
	"team_role" "team_role",
	"app_name" text,
	"enterprise_permissions" "enterprise_permission"[],
	"app_permissions" "app_permission"[],
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "assignment_rules_shape" CHECK ((
        "assignment_rules"."target" = 'team' AND "assignment_rules"."team_name" IS NOT NULL AND "assignment_rules"."team_role" IS NOT NULL
          AND "assignment_rules"."app_name" IS NULL AND "assignment_rules"."enterprise_permissions" IS NULL AND "assignment_rules"."app_permissions" IS NULL
      ) OR (
        "assignment_rules"."target" = 'enterprise' AND cardinality("assignment_rules"."enterprise_permissions") > 0
          AND "assignment_rules"."team_name" IS NULL AND "assignment_rules"."team_role" IS NULL AND "assignment_rules"."app_name" IS NULL AND "assignment_rules"."app_permissions" IS NULL
      ) OR (
        "assignment_rules"."target" = 'app' AND "assignment_rules"."app_name" IS NOT NULL AND cardinality("assignment_rules"."app_permissions") > 0
          AND "assignment_rules"."team_name" IS NULL AND "assignment_rules"."team_role" IS NULL AND "assignment_rules"."enterprise_permissions" IS NULL
      ))
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" uuid,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"subject_type" "subject_type",
	"subject_id" text,
	"before" jsonb,
	"after" jsonb,
	"cause" jsonb,
	"correlation_id" text,
	"duration_ms" integer
);
--> statement-breakpoint
CREATE TABLE "drift_reports" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"summary" jsonb NOT NULL,
	"findings" jsonb NOT NULL,
	"previous_hash" text,
	"hash" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "group_members" (
	"tenant_id" uuid NOT NULL,
	"group_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "group_members_group_id_user_id_pk" PRIMARY KEY("group_id","user_id")
);
--> statement-breakpoint
CREATE TABLE "groups" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"display_name" text NOT NULL,
	"external_id" text,
	"version" integer DEFAULT 1 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "outbox" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"lane" "job_lane" NOT NULL,
	"subject_type" "subject_type" NOT NULL,
	"subject_id" text NOT NULL,
	"cause" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"relayed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "platform_app_collaborators" (
	"tenant_id" uuid NOT NULL,
	"app_id" uuid NOT NULL,
	"account" text NOT NULL,
	"permissions" "app_permission"[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "platform_app_collaborators_app_id_account_pk" PRIMARY KEY("app_id","account"),
	CONSTRAINT "platform_app_collaborators_account_lower" CHECK ("platform_app_collaborators"."account" = lower("platform_app_collaborators"."account"))
);
--> statement-breakpoint
CREATE TABLE "platform_enterprise_members" (
	"tenant_id" uuid NOT NULL,
	"account" text NOT NULL,
	"permissions" "enterprise_permission"[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "platform_enterprise_members_tenant_id_account_pk" PRIMARY KEY("tenant_id","account"),
	CONSTRAINT "platform_enterprise_members_account_lower" CHECK ("platform_enterprise_members"."account" = lower("platform_enterprise_members"."account"))
);
--> statement-breakpoint
CREATE TABLE "platform_team_members" (
	"tenant_id" uuid NOT NULL,
	"team_id" uuid NOT NULL,
	"account" text NOT NULL,
	"role" "team_role" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "platform_team_members_team_id_account_pk" PRIMARY KEY("team_id","account"),
	CONSTRAINT "platform_team_members_account_lower" CHECK ("platform_team_members"."account" = lower("platform_team_members"."account"))
);
--> statement-breakpoint
CREATE TABLE "teams" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tenants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"scim_token_id" text NOT NULL,
	"scim_token_hash" text NOT NULL,
	"scim_token_rotated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"default_team_role" "team_role" DEFAULT 'member' NOT NULL,
	"fallback_admin_user_id" uuid,
	"mass_change_threshold_percent" integer DEFAULT 10 NOT NULL,
	"jit_mode" "jit_mode" DEFAULT 'create-and-update' NOT NULL,
	"idp_initiated_sso" boolean DEFAULT false NOT NULL,
	"inactivity_days" integer DEFAULT 30 NOT NULL,
	"connector" text DEFAULT 'builtin' NOT NULL,
	"connector_settings" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tenants_name_format" CHECK ("tenants"."name" ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
	CONSTRAINT "tenants_mass_change_threshold_range" CHECK ("tenants"."mass_change_threshold_percent" BETWEEN 0 AND 100),
	CONSTRAINT "tenants_inactivity_days_positive" CHECK ("tenants"."inactivity_days" > 0)
);
--> statement-breakpoint
CREATE TABLE "tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"kind" "token_kind" NOT NULL,
	"token_id" text NOT NULL,
	"secret_hash" text NOT NULL,
	"label" text,
	"scopes" text[] DEFAULT '{}'::text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"revoked_reason" text
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"user_name" text NOT NULL,
	"external_id" text,
	"active" boolean DEFAULT true NOT NULL,
	"attributes" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"origin" "user_origin" NOT NULL,
	"last_sso_login_at" timestamp with time zone,
	"deprovisioned_at" timestamp with time zone,
	"version" integer DEFAULT 1 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "apps" ADD CONSTRAINT "apps_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "assignment_rules" ADD CONSTRAINT "assignment_rules_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "audit_log" ADD CONSTRAINT "audit_log_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "drift_reports" ADD CONSTRAINT "drift_reports_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_members" ADD CONSTRAINT "group_members_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_members" ADD CONSTRAINT "group_members_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_members" ADD CONSTRAINT "group_members_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "groups" ADD CONSTRAINT "groups_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "outbox" ADD CONSTRAINT "outbox_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "platform_app_collaborators" ADD CONSTRAINT "platform_app_collaborators_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "platform_app_collaborators" ADD CONSTRAINT "platform_app_collaborators_app_id_apps_id_fk" FOREIGN KEY ("app_id") REFERENCES "public"."apps"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "platform_enterprise_members" ADD CONSTRAINT "platform_enterprise_members_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "platform_team_members" ADD CONSTRAINT "platform_team_members_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "platform_team_members" ADD CONSTRAINT "platform_team_members_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "teams" ADD CONSTRAINT "teams_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenants" ADD CONSTRAINT "tenants_fallback_admin_user_id_users_id_fk" FOREIGN KEY ("fallback_admin_user_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tokens" ADD CONSTRAINT "tokens_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tokens" ADD CONSTRAINT "tokens_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "users" ADD CONSTRAINT "users_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "apps_tenant_name_key" ON "apps" USING btree ("tenant_id","name");--> statement-breakpoint
CREATE INDEX "assignment_rules_tenant_group_idx" ON "assignment_rules" USING btree ("tenant_id",lower("idp_group"));--> statement-breakpoint
CREATE INDEX "audit_log_tenant_subject_idx" ON "audit_log" USING btree ("tenant_id","subject_type","subject_id","id");--> statement-breakpoint
CREATE INDEX "audit_log_tenant_at_idx" ON "audit_log" USING btree ("tenant_id","at");--> statement-breakpoint
CREATE INDEX "drift_reports_tenant_created_idx" ON "drift_reports" USING btree ("tenant_id","created_at");--> statement-breakpoint
CREATE INDEX "group_members_user_idx" ON "group_members" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "groups_tenant_display_name_key" ON "groups" USING btree ("tenant_id",lower("display_name"));--> statement-breakpoint
CREATE UNIQUE INDEX "groups_tenant_external_id_key" ON "groups" USING btree ("tenant_id","external_id") WHERE "groups"."external_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "groups_tenant_order_idx" ON "groups" USING btree ("tenant_id","created_at","id");--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "outbox" USING btree ("id") WHERE "outbox"."relayed_at" IS NULL;--> statement-breakpoint
CREATE INDEX "platform_app_collaborators_account_idx" ON "platform_app_collaborators" USING btree ("tenant_id","account");--> statement-breakpoint
CREATE INDEX "platform_team_members_account_idx" ON "platform_team_members" USING btree ("tenant_id","account");--> statement-breakpoint
CREATE UNIQUE INDEX "teams_tenant_name_key" ON "teams" USING btree ("tenant_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "tenants_name_key" ON "tenants" USING btree ("name");--> statement-breakpoint
CREATE UNIQUE INDEX "tenants_scim_token_id_key" ON "tenants" USING btree ("scim_token_id");--> statement-breakpoint
CREATE UNIQUE INDEX "tokens_token_id_key" ON "tokens" USING btree ("token_id");--> statement-breakpoint
CREATE INDEX "tokens_user_live_idx" ON "tokens" USING btree ("user_id") WHERE "tokens"."revoked_at" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "users_tenant_user_name_key" ON "users" USING btree ("tenant_id",lower("user_name")) WHERE "users"."deprovisioned_at" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "users_tenant_external_id_key" ON "users" USING btree ("tenant_id","external_id") WHERE "users"."deprovisioned_at" IS NULL AND "users"."external_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "users_tenant_live_order_idx" ON "users" USING btree ("tenant_id","created_at","id") WHERE "users"."deprovisioned_at" IS NULL;--> statement-breakpoint
CREATE INDEX "users_tenant_tombstone_name_idx" ON "users" USING btree ("tenant_id",lower("user_name"));