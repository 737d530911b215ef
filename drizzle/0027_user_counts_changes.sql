-- Beside each tenant's count of live users, a count of changes to that set (a user created, deprovisioned,
-- reactivated or deleted), striped over the same 16 slots. Its sum only grows, so two reads that see the
-- same sum saw the same live users in the same order: a page that ended at offset N then still ends
-- there, and the next one can start after its last user instead of counting past N users again.
ALTER TABLE user_counts ADD COLUMN changes bigint NOT NULL DEFAULT 0;
--> statement-breakpoint
CREATE FUNCTION user_counts_add(t uuid, delta bigint, changed bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  free smallint;
BEGIN
  IF changed = 0 THEN RETURN; END IF;
  SELECT slot INTO free FROM user_counts WHERE tenant_id = t
    ORDER BY (slot + pg_backend_pid()) % 16 LIMIT 1 FOR UPDATE SKIP LOCKED;
  IF FOUND THEN
    UPDATE user_counts SET live = live + delta, changes = changes + changed WHERE tenant_id = t AND slot = free;
  ELSE
    INSERT INTO user_counts (tenant_id, slot, live, changes)
    VALUES (t, floor(random() * 16)::smallint, delta, changed)
    ON CONFLICT (tenant_id, slot) DO UPDATE
      SET live = user_counts.live + EXCLUDED.live, changes = user_counts.changes + EXCLUDED.changes;
  END IF;
END $$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION users_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d record;
BEGIN
  FOR d IN SELECT tenant_id, count(*) AS n FROM inserted WHERE deprovisioned_at IS NULL GROUP BY tenant_id LOOP
    PERFORM user_counts_add(d.tenant_id, d.n, d.n);
  END LOOP;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION users_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d record;
BEGIN
  FOR d IN SELECT tenant_id, count(*) AS n FROM removed WHERE deprovisioned_at IS NULL GROUP BY tenant_id LOOP
    PERFORM user_counts_add(d.tenant_id, -d.n, d.n);
  END LOOP;
  RETURN NULL;
END $$;
--> statement-breakpoint
-- Transitions are counted, not only their net sum: one user deprovisioned and another reactivated in
-- one statement leave the count as it was but change the set.
CREATE OR REPLACE FUNCTION users_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d record;
BEGIN
  FOR d IN SELECT n.tenant_id, sum((n.deprovisioned_at IS NULL)::int - (o.deprovisioned_at IS NULL)::int) AS n,
      count(*) AS changed
      FROM after_rows n JOIN before_rows o ON o.id = n.id
      WHERE (n.deprovisioned_at IS NULL) <> (o.deprovisioned_at IS NULL) OR n.created_at <> o.created_at
      GROUP BY n.tenant_id LOOP
    PERFORM user_counts_add(d.tenant_id, d.n, d.changed);
  END LOOP;
  RETURN NULL;
END $$;
--> statement-breakpoint
DROP FUNCTION user_counts_add(uuid, bigint);
