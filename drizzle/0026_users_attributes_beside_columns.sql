-- A SCIM User is rendered as text: the members idsync keeps in columns, then the stored `attributes`
-- spliced in after them (src/scim/user-queries.ts). Keys of those members inside `attributes` would be a
-- second member of the same name; idsync's writers never store them (src/scim/users.ts drops them), and
-- this keeps it so. Rows written otherwise lose those keys here: they were never what idsync answered
-- for a column it keeps (the rendering before this one let them override the column, wrongly). What
-- such a row's resource says changes, so its version (ETag) and lastModified move too.
UPDATE "users" SET "attributes" = '{}'::jsonb, "version" = "version" + 1, "updated_at" = now()
WHERE jsonb_typeof("attributes") <> 'object';
--> statement-breakpoint
UPDATE "users" SET "attributes" = "attributes" - ARRAY['schemas', 'id', 'userName', 'externalId', 'active', 'meta', 'groups'],
  "version" = "version" + 1, "updated_at" = now()
WHERE "attributes" ?| ARRAY['schemas', 'id', 'userName', 'externalId', 'active', 'meta', 'groups'];
--> statement-breakpoint
ALTER TABLE "users" ADD CONSTRAINT "users_attributes_beside_columns" CHECK (jsonb_typeof("users"."attributes") = 'object' AND NOT "users"."attributes" ?| ARRAY['schemas', 'id', 'userName', 'externalId', 'active', 'meta', 'groups']);
