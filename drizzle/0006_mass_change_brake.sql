CREATE TABLE "held_change_users" (
	"tenant_id" uuid NOT NULL,
	"change_id" text NOT NULL,
	"user_id" uuid NOT NULL,
	CONSTRAINT "held_change_users_tenant_id_change_id_user_id_pk" PRIMARY KEY("tenant_id","change_id","user_id")
);
--> statement-breakpoint
CREATE TABLE "held_changes" (
	"id" text NOT NULL,
	"tenant_id" uuid NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"event" text NOT NULL,
	"affected_users" integer NOT NULL,
	"enterprise_size" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"approved_at" timestamp with time zone,
	"approved_by" text,
	CONSTRAINT "held_changes_tenant_id_id_pk" PRIMARY KEY("tenant_id","id")
);
--> statement-breakpoint
ALTER TABLE "held_change_users" ADD CONSTRAINT "held_change_users_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "held_changes" ADD CONSTRAINT "held_changes_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "held_change_users_user_idx" ON "held_change_users" USING btree ("user_id");