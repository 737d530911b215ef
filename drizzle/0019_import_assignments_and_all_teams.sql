CREATE TYPE "public"."assignment_source" AS ENUM('import');--> statement-breakpoint
ALTER TYPE "public"."rule_target" ADD VALUE 'all-teams';--> statement-breakpoint
CREATE TABLE "assignments" (
	"tenant_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"source" "assignment_source" NOT NULL,
	"team_name" text,
	"team_role" "team_role",
	"app_name" text,
	"app_permissions" "app_permission"[],
	"line" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "assignments_shape" CHECK ((
        "assignments"."team_name" IS NOT NULL AND "assignments"."team_role" IS NOT NULL AND "assignments"."app_name" IS NULL AND "assignments"."app_permissions" IS NULL
      ) OR (
        "assignments"."app_name" IS NOT NULL AND cardinality("assignments"."app_permissions") > 0 AND "assignments"."team_name" IS NULL AND "assignments"."team_role" IS NULL
      ))
);
--> statement-breakpoint
ALTER TABLE "assignment_rules" DROP CONSTRAINT "assignment_rules_shape";--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "listed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "assignments" ADD CONSTRAINT "assignments_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "assignments" ADD CONSTRAINT "assignments_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "assignments_user_team_key" ON "assignments" USING btree ("user_id","source","team_name") WHERE "assignments"."team_name" IS NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "assignments_user_app_key" ON "assignments" USING btree ("user_id","source","app_name") WHERE "assignments"."app_name" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "assignments_user_idx" ON "assignments" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "assignments_tenant_source_idx" ON "assignments" USING btree ("tenant_id","source");--> statement-breakpoint
ALTER TABLE "assignment_rules" ADD CONSTRAINT "assignment_rules_shape" CHECK ((
        "assignment_rules"."target" = 'team' AND "assignment_rules"."team_name" IS NOT NULL AND "assignment_rules"."team_role" IS NOT NULL
          AND "assignment_rules"."app_name" IS NULL AND "assignment_rules"."enterprise_permissions" IS NULL AND "assignment_rules"."app_permissions" IS NULL
      ) OR (
        "assignment_rules"."target" = 'enterprise' AND cardinality("assignment_rules"."enterprise_permissions") > 0
          AND "assignment_rules"."team_name" IS NULL AND "assignment_rules"."team_role" IS NULL AND "assignment_rules"."app_name" IS NULL AND "assignment_rules"."app_permissions" IS NULL
      ) OR (
        "assignment_rules"."target" = 'app' AND "assignment_rules"."app_name" IS NOT NULL AND cardinality("assignment_rules"."app_permissions") > 0
          AND "assignment_rules"."team_name" IS NULL AND "assignment_rules"."team_role" IS NULL AND "assignment_rules"."enterprise_permissions" IS NULL
      ) OR (
        "assignment_rules"."target"::text = 'all-teams' AND "assignment_rules"."team_role" IS NOT NULL
          AND "assignment_rules"."team_name" IS NULL AND "assignment_rules"."app_name" IS NULL AND "assignment_rules"."enterprise_permissions" IS NULL AND "assignment_rules"."app_permissions" IS NULL
      ));--> statement-breakpoint
-- Hand-written (data, which drizzle cannot generate): teams idsync already knew are taken as listed, so
-- an "every team" rule covers them before the next scan confirms or clears them.
UPDATE "teams" SET "listed_at" = "created_at";
