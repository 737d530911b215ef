-- An IdP's initial push writes tens of thousands of users (and their memberships, outbox and audit rows)
-- into tables whose statistics say they are empty. Until autovacuum analyzes them, plans are made for an
-- empty table (seen: a userName lookup walking the whole tenant), and until it vacuums them index-only
-- scans visit the heap for every entry (seen: an OFFSET page of users 21 ms instead of 1). The defaults
-- wait for 10–20 % of the table to change; these tables are re-analyzed and vacuumed after 1–2 %.
ALTER TABLE users SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_vacuum_scale_factor = 0.05);
--> statement-breakpoint
ALTER TABLE group_members SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_vacuum_scale_factor = 0.05);
--> statement-breakpoint
ALTER TABLE outbox SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_scale_factor = 0.02);
