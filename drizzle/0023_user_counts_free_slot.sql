-- Live-user counters without queueing: a random slot collided often enough at 16 concurrent creates that
-- each create waited for another's commit (and its WAL flush) on the counter row — measured at 0.68 ms
-- per create in the counter's INSERT … ON CONFLICT alone, as much as the create itself. A change now
-- takes a slot no other open transaction holds (SKIP LOCKED), starting from one its session prefers, and
-- only when all 16 are held waits on a random one. Every tenant has its 16 slots from its creation on
-- (an uncommitted new slot would be invisible to the others, who would then queue on inserting it).
CREATE OR REPLACE FUNCTION user_counts_add(t uuid, delta bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  free smallint;
BEGIN
  IF delta = 0 THEN RETURN; END IF;
  SELECT slot INTO free FROM user_counts WHERE tenant_id = t
    ORDER BY (slot + pg_backend_pid()) % 16 LIMIT 1 FOR UPDATE SKIP LOCKED;
  IF FOUND THEN
    UPDATE user_counts SET live = live + delta WHERE tenant_id = t AND slot = free;
  ELSE
    INSERT INTO user_counts (tenant_id, slot, live) VALUES (t, floor(random() * 16)::smallint, delta)
    ON CONFLICT (tenant_id, slot) DO UPDATE SET live = user_counts.live + EXCLUDED.live;
  END IF;
END $$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION users_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d record;
BEGIN
  FOR d IN SELECT tenant_id, count(*) AS n FROM inserted WHERE deprovisioned_at IS NULL GROUP BY tenant_id LOOP
    PERFORM user_counts_add(d.tenant_id, d.n);
  END LOOP;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION users_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d record;
BEGIN
  FOR d IN SELECT tenant_id, count(*) AS n FROM removed WHERE deprovisioned_at IS NULL GROUP BY tenant_id LOOP
    PERFORM user_counts_add(d.tenant_id, -d.n);
  END LOOP;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION users_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d record;
BEGIN
  FOR d IN SELECT n.tenant_id, sum((n.deprovisioned_at IS NULL)::int - (o.deprovisioned_at IS NULL)::int) AS n
      FROM after_rows n JOIN before_rows o ON o.id = n.id
      WHERE (n.deprovisioned_at IS NULL) <> (o.deprovisioned_at IS NULL)
      GROUP BY n.tenant_id LOOP
    PERFORM user_counts_add(d.tenant_id, d.n);
  END LOOP;
  RETURN NULL;
END $$;
--> statement-breakpoint
DROP FUNCTION user_counts_apply(jsonb);
--> statement-breakpoint
CREATE FUNCTION tenants_add_user_count_slots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO user_counts (tenant_id, slot, live) SELECT NEW.id, g, 0 FROM generate_series(0, 15) g
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER tenants_user_count_slots AFTER INSERT ON tenants
  FOR EACH ROW EXECUTE FUNCTION tenants_add_user_count_slots();
--> statement-breakpoint
INSERT INTO user_counts (tenant_id, slot, live) SELECT t.id, g, 0 FROM tenants t, generate_series(0, 15) g
ON CONFLICT DO NOTHING;
