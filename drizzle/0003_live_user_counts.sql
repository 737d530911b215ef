-- Exact per-tenant counts of live users for unfiltered SCIM lists (totalResults), without counting
-- 100,000 rows on every page request. Counts are spread over 16 slots per tenant so concurrent creates
-- rarely touch the same counter row; a reader sums the slots. Maintained by statement-level triggers
-- in the same transaction as the change, so a snapshot always sees counts and rows agree.
CREATE TABLE "user_counts" (
  "tenant_id" uuid NOT NULL REFERENCES "tenants"("id") ON DELETE CASCADE,
  "slot" smallint NOT NULL,
  "live" bigint NOT NULL DEFAULT 0,
  PRIMARY KEY ("tenant_id", "slot")
);
--> statement-breakpoint
CREATE FUNCTION user_counts_apply(deltas jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO user_counts (tenant_id, slot, live)
  SELECT (d->>'tenant_id')::uuid, floor(random() * 16)::smallint, (d->>'delta')::bigint
  FROM jsonb_array_elements(deltas) AS d WHERE (d->>'delta')::bigint <> 0
  ON CONFLICT (tenant_id, slot) DO UPDATE SET live = user_counts.live + EXCLUDED.live;
$$;
--> statement-breakpoint
CREATE FUNCTION users_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM user_counts_apply(COALESCE((SELECT jsonb_agg(jsonb_build_object('tenant_id', tenant_id, 'delta', n))
    FROM (SELECT tenant_id, count(*) AS n FROM inserted WHERE deprovisioned_at IS NULL GROUP BY tenant_id) x), '[]'));
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION users_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM user_counts_apply(COALESCE((SELECT jsonb_agg(jsonb_build_object('tenant_id', tenant_id, 'delta', -n))
    FROM (SELECT tenant_id, count(*) AS n FROM removed WHERE deprovisioned_at IS NULL GROUP BY tenant_id) x), '[]'));
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION users_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM user_counts_apply(COALESCE((SELECT jsonb_agg(jsonb_build_object('tenant_id', tenant_id, 'delta', n))
    FROM (SELECT n.tenant_id,
            sum((n.deprovisioned_at IS NULL)::int - (o.deprovisioned_at IS NULL)::int) AS n
          FROM after_rows n JOIN before_rows o ON o.id = n.id
          WHERE (n.deprovisioned_at IS NULL) <> (o.deprovisioned_at IS NULL)
          GROUP BY n.tenant_id) x), '[]'));
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER users_count_after_insert AFTER INSERT ON users
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION users_count_inserted();
--> statement-breakpoint
CREATE TRIGGER users_count_after_delete AFTER DELETE ON users
  REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION users_count_deleted();
--> statement-breakpoint
CREATE TRIGGER users_count_after_update AFTER UPDATE ON users
  REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows FOR EACH STATEMENT EXECUTE FUNCTION users_count_updated();
--> statement-breakpoint
INSERT INTO user_counts (tenant_id, slot, live)
SELECT tenant_id, 0, count(*) FROM users WHERE deprovisioned_at IS NULL GROUP BY tenant_id;
