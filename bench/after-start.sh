#!/usr/bin/env bash
# The first pages an `idsync start` serves: the peers' list phases (load.mjs PHASES=list: 100 pages of
# 100 at 16 clients, then the same pages walked by one client) against a freshly started daemon, whose
# database already holds the peers' 10,000 users. With COMPARE (another checkout, built, with the same
# migrations) the two builds alternate on that database, each round a fresh start of each.
#
#   npm run build && bench/after-start.sh                              # this checkout, ROUNDS rounds
#   COMPARE=/tmp/idsync-before ROUNDS=4 bench/after-start.sh           # before (COMPARE) and after, alternating
#   COMPARE=/tmp/idsync-before ROUNDS=4 RUNS=2 bench/after-start.sh    # the list phases twice per start: warm too
#
# Uses the peers' folder and PostgreSQL 15 as bench/peers.sh sets them up (run that once first). Prints,
# per phase and build: pages/s, and the CPU per page of the daemon and of PostgreSQL (load.mjs reads them
# from /proc).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${PEERS_DIR:-/tmp/idsync-peers}
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-1}
PORT=${PORT:-8095}
REDIS_PORT=${REDIS_PORT:-56395}
[ -f "$DIR/load.mjs" ] || { echo "run bench/peers.sh once first: it sets up $DIR" >&2; exit 1; }
cd "$DIR"
if ! ./pg.sh psql -At -c 'select 1' >/dev/null 2>&1; then ./pg.sh start; fi
redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
redis-server --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes >/dev/null
trap 'redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true' EXIT
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT PORT PUBLIC_URL=http://127.0.0.1:$PORT LOG_LEVEL=warn \
  IDSYNC_SECRET_KEY=bench-secret-key-bench-secret-key-0123 DRIFT_TICK_MS=0
unset WORKER_PROCESSES
url() { echo "postgres://postgres@127.0.0.1:55432/$1"; }

start_daemon() { # checkout database -> pid in $PID
  DATABASE_URL=$(url "$2") node "$1/dist/cli/main.js" start >"$DIR/results/after-start.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 240); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return; sleep 0.25; done
  echo "idsync did not become ready" >&2; exit 1
}
stop_daemon() { kill -INT "$PID"; while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done; }

# The users, loaded once through this checkout's daemon: the peers' whole load, as in a sitting.
mkdir -p results
./pg.sh psql -q -c "DROP DATABASE IF EXISTS idsync_after_start" -c "CREATE DATABASE idsync_after_start"
DATABASE_URL=$(url idsync_after_start) node "$REPO/dist/cli/main.js" migrate >/dev/null
TOKEN=$(DATABASE_URL=$(url idsync_after_start) node "$REPO/dist/cli/main.js" tenant create bench |
  grep -iE 'SCIM token' | grep -oE 'scim_[A-Za-z0-9_-]+')
start_daemon "$REPO" idsync_after_start
node load.mjs "http://127.0.0.1:$PORT/scim/v2/" "$TOKEN" >/dev/null
stop_daemon
BUILDS=("$REPO")
[ -z "${COMPARE:-}" ] || BUILDS=("$COMPARE" "$REPO")

echo "rounds $ROUNDS  $(uptime)"
for round in $(seq 1 "$ROUNDS"); do
  for build in "${BUILDS[@]}"; do
    start_daemon "$build" idsync_after_start
    for run in $(seq 1 "$RUNS"); do
      SERVER_PID=$PID PG_DATA=$DIR/pg/data PHASES=list node load.mjs "http://127.0.0.1:$PORT/scim/v2/" "$TOKEN" |
        grep -E '^list-(pages|walk) ' |
        awk -v build="$build" -v round="$round" -v run="$run" '{
          for (i = 1; i <= NF; i++) {
            if ($i ~ /^wall=/) wall = substr($i, 6) + 0
            if ($i == "req/s") rate = $(i - 1)
            if ($i ~ /^srv=/) srv = substr($i, 5) + 0
            if ($i ~ /^pg=/) pg = substr($i, 4) + 0
          }
          printf "round %s run %s  %-10s %7s pages/s  daemon %.2f ms/page  PostgreSQL %.2f ms/page  %s\n",
            round, run, $1, rate, srv * wall * 10 / 100, pg * wall * 10 / 100, build
        }'
    done
    stop_daemon
  done
done
