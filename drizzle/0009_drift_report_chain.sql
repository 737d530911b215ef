ALTER TABLE "drift_reports" ADD COLUMN "seq" integer NOT NULL;--> statement-breakpoint
ALTER TABLE "drift_reports" ADD COLUMN "started_at" timestamp with time zone NOT NULL;--> statement-breakpoint
ALTER TABLE "drift_reports" ADD COLUMN "connector" text NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "drift_reports_tenant_seq_key" ON "drift_reports" USING btree ("tenant_id","seq");--> statement-breakpoint
-- A drift report is evidence: its rows never change once written (the hash chain makes any edit made
-- around this trigger visible; the trigger stops the accidental ones).
CREATE FUNCTION drift_report_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$;
--> statement-breakpoint
CREATE TRIGGER drift_reports_no_update BEFORE UPDATE ON drift_reports
  FOR EACH STATEMENT EXECUTE FUNCTION drift_report_refuse_update();
--> statement-breakpoint
CREATE TRIGGER drift_findings_no_update BEFORE UPDATE ON drift_findings
  FOR EACH STATEMENT EXECUTE FUNCTION drift_report_refuse_update();
