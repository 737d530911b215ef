-- NOTIFY takes a cluster-wide lock at commit and holds it through the commit's WAL flush, so every
-- transaction that notifies commits one after another (no group commit). With a NOTIFY per outbox
-- insert, 16 IdP clients creating users waited on that lock more than on anything else
-- (pg_stat_activity: Lock:object on pg_database). Only deprovisions wake the relay at once now; the
-- relay's short poll (OUTBOX_POLL_MS) picks up ordinary reconciles.
DROP TRIGGER outbox_notify_after_insert ON outbox;
--> statement-breakpoint
CREATE TRIGGER outbox_notify_after_insert
  AFTER INSERT ON outbox
  FOR EACH ROW WHEN (NEW.lane = 'deprovision') EXECUTE FUNCTION outbox_notify();
