CREATE TABLE "group_version_slots" (
	"group_id" uuid NOT NULL,
	"slot" smallint NOT NULL,
	"changes" integer DEFAULT 0 NOT NULL,
	"changed_at" timestamp with time zone,
	CONSTRAINT "group_version_slots_group_id_slot_pk" PRIMARY KEY("group_id","slot")
);
--> statement-breakpoint
ALTER TABLE "group_version_slots" ADD CONSTRAINT "group_version_slots_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
-- Every group gets its slots when it is created, whoever creates it (SCIM, SAML JIT, imports).
CREATE FUNCTION group_version_slots_create() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO group_version_slots (group_id, slot)
  SELECT inserted.id, s FROM inserted CROSS JOIN generate_series(0, 15) AS s;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER groups_version_slots_after_insert AFTER INSERT ON groups
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION group_version_slots_create();
--> statement-breakpoint
INSERT INTO group_version_slots (group_id, slot) SELECT g.id, s FROM groups g CROSS JOIN generate_series(0, 15) AS s;
