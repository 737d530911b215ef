ALTER TABLE "outbox" ADD COLUMN "relay_count" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "outbox" ADD COLUMN "completed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "deactivated_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "outbox_open_subject_idx" ON "outbox" USING btree ("tenant_id","subject_type","subject_id","id") WHERE "outbox"."completed_at" IS NULL;--> statement-breakpoint
CREATE INDEX "users_deactivated_idx" ON "users" USING btree ("deactivated_at") WHERE "users"."deactivated_at" IS NOT NULL;--> statement-breakpoint
-- Rows relayed before this migration are history: nothing to complete or sweep.
UPDATE "outbox" SET "completed_at" = "relayed_at" WHERE "relayed_at" IS NOT NULL;--> statement-breakpoint
UPDATE "users" SET "deactivated_at" = COALESCE("deprovisioned_at", "updated_at") WHERE NOT "active" OR "deprovisioned_at" IS NOT NULL;--> statement-breakpoint
-- deactivated_at is when the IdP turned the user off: set on the first deactivation or deletion, kept
-- while the user stays off (a delete after a deactivation is the same offboarding), cleared on reactivation.
CREATE FUNCTION users_track_deactivation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.active AND NEW.deprovisioned_at IS NULL THEN
    NEW.deactivated_at := NULL;
  ELSIF NEW.deactivated_at IS NULL OR (TG_OP = 'UPDATE' AND OLD.active AND OLD.deprovisioned_at IS NULL) THEN
    NEW.deactivated_at := now();
  END IF;
  RETURN NEW;
END $$;--> statement-breakpoint
CREATE TRIGGER users_track_deactivation BEFORE INSERT OR UPDATE OF active, deprovisioned_at ON "users"
  FOR EACH ROW EXECUTE FUNCTION users_track_deactivation();
