CREATE TABLE "platform_activity" (
	"tenant_id" uuid NOT NULL,
	"account_key" text NOT NULL,
	"kind" text NOT NULL,
	"app" text,
	"at" timestamp with time zone NOT NULL,
	CONSTRAINT "platform_activity_tenant_id_account_key_pk" PRIMARY KEY("tenant_id","account_key")
);
--> statement-breakpoint
CREATE TABLE "platform_audit_cursors" (
	"tenant_id" uuid PRIMARY KEY NOT NULL,
	"last_event_at" timestamp with time zone NOT NULL,
	"seen_event_ids" text[] DEFAULT '{}'::text[] NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "audit_poll_seconds" integer DEFAULT 60 NOT NULL;--> statement-breakpoint
ALTER TABLE "platform_activity" ADD CONSTRAINT "platform_activity_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "platform_audit_cursors" ADD CONSTRAINT "platform_audit_cursors_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "platform_app_collaborators_account_key_idx" ON "platform_app_collaborators" USING btree ("tenant_id",account_key("account"));--> statement-breakpoint
CREATE INDEX "platform_enterprise_members_account_key_idx" ON "platform_enterprise_members" USING btree ("tenant_id",account_key("account"));--> statement-breakpoint
CREATE INDEX "platform_team_members_account_key_idx" ON "platform_team_members" USING btree ("tenant_id",account_key("account"));--> statement-breakpoint
ALTER TABLE "tenants" ADD CONSTRAINT "tenants_audit_poll_range" CHECK ("tenants"."audit_poll_seconds" BETWEEN 1 AND 86400);