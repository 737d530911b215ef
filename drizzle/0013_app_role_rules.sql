ALTER TABLE "assignment_rules" ALTER COLUMN "idp_group" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "assignment_rules" ADD COLUMN "idp_app_role" text;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "app_roles" jsonb GENERATED ALWAYS AS (lower(jsonb_path_query_array(attributes, 'lax $.roles[*].value')::text)::jsonb) STORED NOT NULL;--> statement-breakpoint
CREATE INDEX "users_app_roles_idx" ON "users" USING gin ("app_roles");--> statement-breakpoint
ALTER TABLE "assignment_rules" ADD CONSTRAINT "assignment_rules_one_source" CHECK (("assignment_rules"."idp_group" IS NULL) <> ("assignment_rules"."idp_app_role" IS NULL));