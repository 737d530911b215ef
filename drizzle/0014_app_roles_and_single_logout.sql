CREATE TABLE "saml_sessions" (
	"token_id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"connection_id" uuid NOT NULL,
	"name_id" text NOT NULL,
	"name_id_format" text,
	"session_index" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sso_signing_keys" (
	"tenant_id" uuid PRIMARY KEY NOT NULL,
	"certificate" text NOT NULL,
	"private_key_sealed" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "assignment_rules" ALTER COLUMN "idp_group" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "assignment_rules" ADD COLUMN "idp_app_role" text;--> statement-breakpoint
ALTER TABLE "sso_connections" ADD COLUMN "slo_url" text;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "app_roles" jsonb GENERATED ALWAYS AS (lower(jsonb_path_query_array(attributes, 'lax $.roles[*].value')::text)::jsonb) STORED NOT NULL;--> statement-breakpoint
ALTER TABLE "saml_sessions" ADD CONSTRAINT "saml_sessions_token_id_tokens_id_fk" FOREIGN KEY ("token_id") REFERENCES "public"."tokens"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "saml_sessions" ADD CONSTRAINT "saml_sessions_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "saml_sessions" ADD CONSTRAINT "saml_sessions_connection_id_sso_connections_id_fk" FOREIGN KEY ("connection_id") REFERENCES "public"."sso_connections"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sso_signing_keys" ADD CONSTRAINT "sso_signing_keys_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "saml_sessions_connection_name_idx" ON "saml_sessions" USING btree ("connection_id",lower("name_id"));--> statement-breakpoint
CREATE INDEX "users_app_roles_idx" ON "users" USING gin ("app_roles");--> statement-breakpoint
ALTER TABLE "assignment_rules" ADD CONSTRAINT "assignment_rules_one_source" CHECK (("assignment_rules"."idp_group" IS NULL) <> ("assignment_rules"."idp_app_role" IS NULL));