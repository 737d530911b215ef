-- Each user's SCIM resource, as far as its row decides it, kept rendered beside the row by PostgreSQL
-- (src/db/schema.ts, users.scim_head and scim_tail), so that pages of users splice text instead of
-- rendering it on every read. A generated column may call immutable functions only: to_json and to_char
-- are declared stable because some types and format patterns depend on settings (DateStyle, locale),
-- and these two wrappers use neither: to_json of text and a fixed numeric pattern in UTC.
CREATE FUNCTION scim_text(value text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT to_json(value)::text $$;
--> statement-breakpoint
CREATE FUNCTION scim_timestamp(at timestamptz) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;
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