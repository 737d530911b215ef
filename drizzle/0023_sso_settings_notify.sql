-- Every change to a tenant or an SSO connection, by any writer (CLI, admin API, console, a manual
-- UPDATE), tells every idsync process on the idsync_tenants channel, so the caches that spare the SAML
-- ACS and SCIM authentication a lookup per request drop what they hold at once.
CREATE FUNCTION notify_tenant_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('idsync_tenants', OLD.tenant_id::text);
  ELSE
    PERFORM pg_notify('idsync_tenants', NEW.tenant_id::text);
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION notify_tenant_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('idsync_tenants', OLD.id::text);
  ELSE
    PERFORM pg_notify('idsync_tenants', NEW.id::text);
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER tenants_notify_after_change AFTER INSERT OR UPDATE OR DELETE ON tenants
  FOR EACH ROW EXECUTE FUNCTION notify_tenant_row_changed();
--> statement-breakpoint
CREATE TRIGGER sso_connections_notify_after_change AFTER INSERT OR UPDATE OR DELETE ON sso_connections
  FOR EACH ROW EXECUTE FUNCTION notify_tenant_changed();
