-- Each user's SCIM resource, as far as its row decides it, kept rendered beside the row by PostgreSQL
-- (src/db/schema.ts, users.scim_head and scim_tail), so that pages of users splice text instead of
-- rendering it on every read. A generated column may call immutable functions only: to_json and to_char
-- are declared stable because some types and format patterns depend on settings (DateStyle, locale),
-- and these two wrappers use neither: to_json of text and a fixed numeric pattern in UTC.
-- SQL-standard bodies (RETURN) are bound when created, as account_key's are: a writing session's
-- search_path cannot put another to_json in front of pg_catalog's and change what is stored.
CREATE FUNCTION scim_text(value text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN pg_catalog.to_json(value)::text;
--> statement-breakpoint
CREATE FUNCTION scim_timestamp(at timestamptz) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN pg_catalog.to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
--> statement-breakpoint
-- idsync writes only finite times; a row edited by hand to ±infinity would render no head (to_char
-- gives NULL) and fail the NOT NULL below with a message that names no user.
DO $$
DECLARE
  infinite text;
BEGIN
  SELECT string_agg(id::text, ', ') INTO infinite FROM (
    SELECT id FROM users WHERE NOT isfinite(created_at) OR NOT isfinite(updated_at) LIMIT 10) u;
  IF infinite IS NOT NULL THEN
    RAISE EXCEPTION 'users with an infinite created_at or updated_at cannot be rendered as SCIM: %', infinite
      USING HINT = 'set a finite time on those rows (UPDATE users SET updated_at = now() WHERE id = ...) and start again';
  END IF;
END $$;
--> statement-breakpoint
-- One ALTER, so the table is rewritten once.
ALTER TABLE "users" ADD COLUMN "scim_head" text GENERATED ALWAYS AS ('{"schemas":' || CASE WHEN attributes ? 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'
          THEN '["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]'
          ELSE '["urn:ietf:params:scim:schemas:core:2.0:User"]' END
        || ',"id":"' || id::text || '","userName":' || scim_text(user_name)
        || CASE WHEN external_id IS NULL THEN '' ELSE ',"externalId":' || scim_text(external_id) END
        || ',"active":' || active::text
        || ',"meta":{"resourceType":"User","created":"' || scim_timestamp(created_at)
        || '","lastModified":"' || scim_timestamp(updated_at) || '"') STORED NOT NULL,
  ADD COLUMN "scim_tail" text GENERATED ALWAYS AS (CASE WHEN attributes = '{}'::jsonb THEN '}' ELSE ',' || substr(attributes::text, 2) END) STORED NOT NULL;