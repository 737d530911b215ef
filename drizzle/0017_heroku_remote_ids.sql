CREATE TABLE "platform_pending_accounts" (
	"tenant_id" uuid NOT NULL,
	"account" text NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "platform_pending_accounts_tenant_id_account_pk" PRIMARY KEY("tenant_id","account")
);
--> statement-breakpoint
CREATE TABLE "platform_recent_removals" (
	"tenant_id" uuid NOT NULL,
	"edge" text NOT NULL,
	"account" text NOT NULL,
	"removed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "platform_recent_removals_tenant_id_edge_account_pk" PRIMARY KEY("tenant_id","edge","account")
);
--> statement-breakpoint
ALTER TABLE "apps" ADD COLUMN "remote_id" text;--> statement-breakpoint
ALTER TABLE "platform_app_collaborators" ADD COLUMN "remote_id" text;--> statement-breakpoint
ALTER TABLE "platform_enterprise_members" ADD COLUMN "remote_id" text;--> statement-breakpoint
ALTER TABLE "platform_team_members" ADD COLUMN "remote_id" text;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "remote_id" text;--> statement-breakpoint
ALTER TABLE "platform_pending_accounts" ADD CONSTRAINT "platform_pending_accounts_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "platform_recent_removals" ADD CONSTRAINT "platform_recent_removals_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "apps_tenant_remote_id_key" ON "apps" USING btree ("tenant_id","remote_id");--> statement-breakpoint
CREATE UNIQUE INDEX "teams_tenant_remote_id_key" ON "teams" USING btree ("tenant_id","remote_id");