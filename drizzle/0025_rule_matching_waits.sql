-- The verdict side of the rule-matching lock (src/reconcile/matching-lock.ts). A change to what a
-- tenant's rules match holds the lock exclusively until it commits; a verdict only needs a moment,
-- after the change it judges committed and before it reads, at which no such change is in progress.
-- So it takes the lock shared and lets go at once, never holding it: a rule change never waits for a
-- verdict's reads or for the relay's Redis calls, and a verdict waiting here holds nothing else yet.
CREATE FUNCTION rule_matching_awaited(tenant uuid) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  -- Waits for a change in progress, if any.
  PERFORM pg_advisory_lock_shared(hashtextextended('rule-matching:' || tenant::text, 0));
  RETURN pg_advisory_unlock_shared(hashtextextended('rule-matching:' || tenant::text, 0));
END $$;
--> statement-breakpoint
CREATE FUNCTION rule_matching_idle(tenant uuid) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  -- False, without waiting, while a change is in progress.
  RETURN pg_try_advisory_lock_shared(hashtextextended('rule-matching:' || tenant::text, 0))
    AND pg_advisory_unlock_shared(hashtextextended('rule-matching:' || tenant::text, 0));
END $$;
