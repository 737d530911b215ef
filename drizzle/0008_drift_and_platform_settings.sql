CREATE TABLE "drift_findings" (
	"report_id" uuid NOT NULL,
	"key" text NOT NULL,
	"class" text NOT NULL,
	"severity" text NOT NULL,
	"account" text NOT NULL,
	"user_id" uuid,
	"team" text,
	"app" text,
	"expected" text,
	"actual" text,
	"since" timestamp with time zone NOT NULL,
	"action" text NOT NULL,
	"status" text NOT NULL,
	CONSTRAINT "drift_findings_report_id_key_pk" PRIMARY KEY("report_id","key")
);
--> statement-breakpoint
ALTER TABLE "platform_enterprise_members" ADD COLUMN "federated" boolean;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "connector_status" text DEFAULT 'ok' NOT NULL;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "connector_status_reason" text;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "drift_scan_interval_minutes" integer DEFAULT 60 NOT NULL;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "drift_policy" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "seat_prices" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "drift_findings" ADD CONSTRAINT "drift_findings_report_id_drift_reports_id_fk" FOREIGN KEY ("report_id") REFERENCES "public"."drift_reports"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "drift_findings_report_class_idx" ON "drift_findings" USING btree ("report_id","class");--> statement-breakpoint
ALTER TABLE "drift_reports" DROP COLUMN "findings";--> statement-breakpoint
ALTER TABLE "tenants" ADD CONSTRAINT "tenants_drift_interval_positive" CHECK ("tenants"."drift_scan_interval_minutes" > 0);