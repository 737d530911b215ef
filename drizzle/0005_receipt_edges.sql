CREATE TABLE "receipt_edges" (
	"receipt_id" uuid NOT NULL,
	"key" text NOT NULL,
	"operation" text NOT NULL,
	"description" text NOT NULL,
	"status" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"removed_at" timestamp with time zone,
	CONSTRAINT "receipt_edges_receipt_id_key_pk" PRIMARY KEY("receipt_id","key")
);
--> statement-breakpoint
ALTER TABLE "receipt_edges" ADD CONSTRAINT "receipt_edges_receipt_id_receipts_id_fk" FOREIGN KEY ("receipt_id") REFERENCES "public"."receipts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "receipts" DROP COLUMN "edges";