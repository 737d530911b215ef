#!/usr/bin/env bash
# What keeping each user's SCIM rendering stored (users.scim_head, scim_tail; migration 0029) costs a
# write, not a test: copies every user of DATABASE_URL (run bench/after-start.sh or bench/peers.sh first
# for the peers' 10,000) into two temporary tables, one with the generated columns and one without,
# ROUNDS times alternating after a warm-up round, and prints each INSERT's time. The difference is the
# rendering's cost per written row, the same on an UPDATE, which recomputes both columns. Then times
# migration 0029's ALTER (which rewrites the table and its indexes, WAL included) on a table copying the
# users COPIES times over (default 10), dropped afterwards. Last, the size of the users with and without
# the columns, and the WAL of an UPDATE of each user as a login in the default JIT mode writes it
# (attributes, updated_at, version, last_sso_login_at), on real tables dropped afterwards.
#   DATABASE_URL=postgres://postgres@127.0.0.1:55432/idsync [ROUNDS=6] [COPIES=10] bench/stored-rendering-write-cost.sh
set -euo pipefail
: "${DATABASE_URL:?DATABASE_URL of a migrated idsync database with users}"
ROUNDS=${ROUNDS:-6}
COPIES=${COPIES:-10}
columns=$(psql "$DATABASE_URL" -Atc "SELECT string_agg(quote_ident(column_name), ',' ORDER BY ordinal_position)
  FROM information_schema.columns
  WHERE table_schema = 'public' AND table_name = 'users' AND is_generated = 'NEVER'")
rows=$(psql "$DATABASE_URL" -Atc 'SELECT count(*) FROM users')
{
  echo 'CREATE TEMP TABLE plain (LIKE users INCLUDING DEFAULTS INCLUDING GENERATED);'
  echo 'ALTER TABLE plain DROP COLUMN scim_head, DROP COLUMN scim_tail;'
  echo 'CREATE TEMP TABLE generated (LIKE users INCLUDING DEFAULTS INCLUDING GENERATED);'
  for table in plain generated; do # a warm-up round, untimed: first touches of the new tables
    echo "INSERT INTO $table ($columns) SELECT $columns FROM users;"
    echo "TRUNCATE $table;"
  done
  for _ in $(seq "$ROUNDS"); do
    for table in plain generated; do
      echo "\\echo $table"
      echo '\timing on'
      echo "INSERT INTO $table ($columns) SELECT $columns FROM users;"
      echo '\timing off'
      echo "TRUNCATE $table;"
    done
  done
} | psql -q "$DATABASE_URL" -v ON_ERROR_STOP=1 | awk -v rows="$rows" '
  /^(plain|generated)$/ { table = $1 }
  /^Time:/ && table != "" { ms[table] = ms[table] " " $2; n[table]++; sum[table] += $2 }
  END {
    for (t in n) printf "%-9s %d rows per INSERT, ms:%s (mean %.1f, %.1f µs a row)\n", t, rows, ms[t], sum[t] / n[t], 1000 * sum[t] / n[t] / rows
  }'

# The migration's ALTER, on a table shaped as users was before it (indexes and constraints included).
alter=$(sed -n '/^ALTER TABLE "users"/,$p' "$(dirname "$0")/../drizzle/0029_users_scim_rendered.sql" |
  sed 's/ALTER TABLE "users"/ALTER TABLE migration_copy/')
copied=$(psql "$DATABASE_URL" -Atc "SELECT string_agg(quote_ident(column_name), ',' ORDER BY ordinal_position)
  FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'users'
  AND is_generated = 'NEVER' AND column_name NOT IN ('id', 'user_name')")
{
  echo 'SET client_min_messages = warning;'
  echo 'DROP TABLE IF EXISTS migration_copy;'
  echo 'CREATE TABLE migration_copy (LIKE users INCLUDING ALL);'
  echo 'ALTER TABLE migration_copy DROP COLUMN scim_head, DROP COLUMN scim_tail;'
  # user names made unique per copy, as the unique index on live user names requires
  echo "INSERT INTO migration_copy ($copied, id, user_name)
    SELECT $copied, gen_random_uuid(), copy || '.' || user_name FROM users, generate_series(1, $COPIES) copy;"
  echo 'CHECKPOINT;'
  echo '\timing on'
  echo "$alter"
  echo '\timing off'
  echo 'DROP TABLE migration_copy;'
} | psql -q "$DATABASE_URL" -v ON_ERROR_STOP=1 |
  awk -v rows="$((rows * COPIES))" '/^Time:/ { printf "migration 0029 on %d users: %s ms\n", rows, $2 }'

# Sizes, and the WAL of a login's UPDATE, on logged copies with and without the columns.
{
  echo 'SET client_min_messages = warning;'
  echo 'DROP TABLE IF EXISTS wal_plain, wal_generated;'
  echo 'CREATE TABLE wal_plain (LIKE users INCLUDING DEFAULTS INCLUDING GENERATED);'
  echo 'ALTER TABLE wal_plain DROP COLUMN scim_head, DROP COLUMN scim_tail;'
  echo 'CREATE TABLE wal_generated (LIKE users INCLUDING DEFAULTS INCLUDING GENERATED);'
  for table in wal_plain wal_generated; do
    echo "INSERT INTO $table ($columns) SELECT $columns FROM users;"
    echo "VACUUM (ANALYZE) $table;"
    echo "SELECT '$table size ' || pg_total_relation_size('$table') / 1024 || ' kB';"
    echo "SELECT pg_current_wal_insert_lsn() AS before \\gset"
    echo "UPDATE $table SET attributes = attributes || '{\"title\": \"Signed in\"}', updated_at = now(),
      version = version + 1, last_sso_login_at = now();"
    echo "SELECT '$table WAL per login UPDATE ' || round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'before') / $rows) || ' bytes';"
  done
  echo 'DROP TABLE wal_plain, wal_generated;'
} | psql -qAt "$DATABASE_URL" -v ON_ERROR_STOP=1
