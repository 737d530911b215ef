DROP INDEX "users_tenant_external_id_key";--> statement-breakpoint
ALTER TABLE "group_members" ADD COLUMN "display" text;--> statement-breakpoint
CREATE INDEX "users_tenant_external_id_idx" ON "users" USING btree ("tenant_id","external_id") WHERE "users"."external_id" IS NOT NULL;