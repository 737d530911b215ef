CREATE TYPE "public"."admin_role" AS ENUM('owner', 'operator', 'auditor');--> statement-breakpoint
CREATE TYPE "public"."client_scope" AS ENUM('introspect', 'revoke');--> statement-breakpoint
CREATE TABLE "admin_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"tenant_id" uuid,
	"role" "admin_role" NOT NULL,
	"token_id" text NOT NULL,
	"secret_hash" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "admin_tokens_name_format" CHECK ("admin_tokens"."name" ~ '^[a-z0-9][a-z0-9._-]{0,62}$')
);
--> statement-breakpoint
CREATE TABLE "oauth_clients" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"name" text NOT NULL,
	"client_id" text NOT NULL,
	"secret_hash" text NOT NULL,
	"scopes" "client_scope"[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"rotated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "oauth_clients_name_format" CHECK ("oauth_clients"."name" ~ '^[a-z0-9][a-z0-9._-]{0,62}$')
);
--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "token_scopes" text[] DEFAULT '{apps:read,apps:deploy,apps:operate,apps:manage,teams:read,teams:manage,enterprise:read,enterprise:create,enterprise:manage,enterprise:billing}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "admin_tokens" ADD CONSTRAINT "admin_tokens_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "oauth_clients" ADD CONSTRAINT "oauth_clients_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "admin_tokens_token_id_key" ON "admin_tokens" USING btree ("token_id");--> statement-breakpoint
CREATE UNIQUE INDEX "admin_tokens_live_name_key" ON "admin_tokens" USING btree ("name") WHERE "admin_tokens"."revoked_at" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "oauth_clients_tenant_name_key" ON "oauth_clients" USING btree ("tenant_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "oauth_clients_client_id_key" ON "oauth_clients" USING btree ("client_id");