CREATE TYPE "public"."membership_source" AS ENUM('scim', 'saml');--> statement-breakpoint
DROP INDEX "users_tenant_user_name_key";--> statement-breakpoint
DROP INDEX "users_tenant_tombstone_name_idx";--> statement-breakpoint
ALTER TABLE "group_members" ADD COLUMN "source" "membership_source" DEFAULT 'scim' NOT NULL;--> statement-breakpoint
ALTER TABLE "sso_connections" ADD COLUMN "allowed_domains" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "max_assertion_age_seconds" integer DEFAULT 600 NOT NULL;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "user_name_key" text GENERATED ALWAYS AS (account_key(user_name)) STORED NOT NULL;--> statement-breakpoint
CREATE INDEX "groups_tenant_external_id_lower_idx" ON "groups" USING btree ("tenant_id",lower("external_id")) WHERE "groups"."external_id" IS NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "users_tenant_user_name_key" ON "users" USING btree ("tenant_id","user_name_key") WHERE "users"."deprovisioned_at" IS NULL;--> statement-breakpoint
CREATE INDEX "users_tenant_tombstone_name_idx" ON "users" USING btree ("tenant_id","user_name_key");--> statement-breakpoint
ALTER TABLE "tenants" ADD CONSTRAINT "tenants_max_assertion_age_range" CHECK ("tenants"."max_assertion_age_seconds" BETWEEN 30 AND 86400);