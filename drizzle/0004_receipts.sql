CREATE TABLE "receipts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"account" text NOT NULL,
	"idp_event" text NOT NULL,
	"idp_event_at" timestamp with time zone NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp with time zone,
	"edges" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"tokens_revoked" integer DEFAULT 0 NOT NULL,
	"left_to_human" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"correlation_id" text
);
--> statement-breakpoint
ALTER TABLE "receipts" ADD CONSTRAINT "receipts_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "receipts" ADD CONSTRAINT "receipts_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "receipts_user_event_key" ON "receipts" USING btree ("user_id","idp_event_at");--> statement-breakpoint
CREATE INDEX "receipts_tenant_event_idx" ON "receipts" USING btree ("tenant_id","idp_event_at");