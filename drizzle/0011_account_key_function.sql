-- The one normal form of an account name for comparison (src/accounts/account-name.ts refuses what must
-- never be stored: control and format characters, inner whitespace): Unicode NFC, then full case folding
-- with PostgreSQL's builtin Unicode collation, so the key is the same whatever the database's default
-- collation; surrounding blanks are trimmed, so a lookup typed with them still finds the name.
-- users.user_name_key is generated from it, and uniqueness and every lookup by name compare that.
CREATE FUNCTION account_key(name text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN normalize(casefold(normalize(btrim(name, E' \t\r\n'), NFC) COLLATE pg_unicode_fast), NFC);
