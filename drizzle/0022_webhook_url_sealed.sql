ALTER TABLE "webhook_endpoints" DROP CONSTRAINT "webhook_endpoints_http_url";--> statement-breakpoint
DROP INDEX "webhook_endpoints_live_url_key";--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD COLUMN "url_sealed" text;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD COLUMN "url_shown" text;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD COLUMN "url_digest" text;--> statement-breakpoint
-- Hand-written (drizzle cannot express a backfill): SQL cannot seal, so an existing URL is kept as
-- 'plain:<url>' until the webhook worker, which holds IDSYNC_SECRET_KEY, seals it at its next start.
-- url_shown and url_digest are computed exactly as src/alerts/shown-url.ts does.
UPDATE "webhook_endpoints" SET
  "url_sealed" = 'plain:' || "url",
  "url_digest" = encode(sha256(convert_to("url", 'UTF8')), 'hex'),
  "url_shown" = substring("url" from '^https?://[^/?#]*') || '/…#'
    || left(encode(sha256(convert_to(coalesce(substring("url" from '^https?://[^/?#]*(.*)$'), ''), 'UTF8')), 'hex'), 6);--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ALTER COLUMN "url_sealed" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ALTER COLUMN "url_shown" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ALTER COLUMN "url_digest" SET NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "webhook_endpoints_live_url_key" ON "webhook_endpoints" USING btree ("tenant_id","url_digest") WHERE "webhook_endpoints"."disabled_at" IS NULL;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" DROP COLUMN "url";--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD CONSTRAINT "webhook_endpoints_http_url" CHECK ("webhook_endpoints"."url_shown" ~ '^https?://');
