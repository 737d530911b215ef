-- The one normal form of an account name for comparison (src/accounts/account-name.ts refuses what must
-- never be stored: control and format characters, inner whitespace): Unicode NFC, then full case folding
-- with PostgreSQL's builtin Unicode collation, so the key is the same whatever the database's default
-- collation; surrounding blanks are trimmed, so a lookup typed with them still finds the name.
-- users.user_name_key is generated from it, and uniqueness and every lookup by name compare that.
--
-- casefold() and pg_unicode_fast arrived in PostgreSQL 18. On 15-17 the body is lower() with ICU's root
-- locale (full Unicode lowercasing whatever the database's collation), with final sigma folded to sigma as
-- casefold does; what it does not do is case folding's expansions (ß/ẞ -> ss, ligatures such as ﬁ -> fi),
-- so on 15-17 "straße" and "strasse" are two names. Without ICU it is lower() under the database's
-- collation. src/db/account-key.ts holds the same bodies and re-keys the users when the server's version
-- asks for another one (an upgrade across 18). This file was a plain CREATE FUNCTION with the 18 body: on
-- 18 the DO block creates exactly that function, and drizzle never re-runs an applied migration (it only
-- compares the journal's timestamps), so existing databases are untouched by the edit.
DO $migration$
BEGIN
  IF current_setting('server_version_num')::int >= 180000 THEN
    EXECUTE $ddl$CREATE FUNCTION account_key(name text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN normalize(casefold(normalize(btrim(name, E' \t\r\n'), NFC) COLLATE pg_unicode_fast), NFC)$ddl$;
  ELSIF EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu') THEN
    EXECUTE $ddl$CREATE FUNCTION account_key(name text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN normalize(translate(lower(normalize(btrim(name, E' \t\r\n'), NFC) COLLATE "und-x-icu"), 'ς', 'σ'), NFC)$ddl$;
  ELSE
    EXECUTE $ddl$CREATE FUNCTION account_key(name text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN normalize(translate(lower(normalize(btrim(name, E' \t\r\n'), NFC)), 'ς', 'σ'), NFC)$ddl$;
  END IF;
END
$migration$;
