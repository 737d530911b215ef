#!/usr/bin/env bash
# idsync beside the SCIM peers of ../shared/peers, in one sitting on one PostgreSQL 15, same load script,
# then the ratios per phase (bench/peers-ratios.ts).
#
#   npm run build && bench/peers.sh                 # Jackson, better-auth, then idsync in each mode below
#   RUNS="start serve:1" bench/peers.sh             # only some idsync modes (peers still run first)
#   PEERS="" RUNS="serve:2" bench/peers.sh          # idsync only (ratios then use the last peer results)
#
# idsync modes (RUNS): start = `idsync start` as shipped (API + workers in each process, as many processes
# as it chooses: here PostgreSQL is on loopback, so one per core less one); start:N = `idsync start
# --processes N`; serve:N = `idsync serve --processes N`, then one `idsync worker` timed while it drains
# the outbox the run left. Extra env (USERS, FILTERS, ...) is passed on to load.mjs.
# The peers' folder is read-only: it is copied to PEERS_DIR and installed there once (npm ci, minutes).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SRC=${PEERS_SRC:-$REPO/../shared/peers}
DIR=${PEERS_DIR:-/tmp/idsync-peers}
PEERS=${PEERS-jackson better-auth}
CORES=$(nproc)
RUNS=${RUNS:-start start:$CORES serve:1}
[ -f "$REPO/dist/cli/main.js" ] || (cd "$REPO" && npm run --silent build)

if [ ! -f "$DIR/load.mjs" ]; then
  mkdir -p "$DIR" && cp -r "$SRC"/. "$DIR"/ && chmod -R u+w "$DIR"
fi
[ -d "$DIR/node_modules" ] || (cd "$DIR" && npm ci --no-audit --no-fund)
[ -d "$DIR/better-auth/node_modules" ] || (cd "$DIR/better-auth" && npm ci --no-audit --no-fund)
command -v /usr/lib/postgresql/15/bin/postgres >/dev/null || {
  echo "PostgreSQL 15 is needed: apt-get update && apt-get install -y postgresql-15" >&2
  exit 1
}
cd "$DIR"
[ -d pg/data ] || ./pg.sh init
if ! ./pg.sh psql -At -c 'select 1' >/dev/null 2>&1; then ./pg.sh start; fi

OUT=$DIR/results/sitting-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
COMMIT=$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src drizzle || echo '+dirty')
{
  echo "commit $COMMIT  cores $CORES  $(node --version)  $(./pg.sh psql -At -c 'show server_version')"
  echo "load before: $(uptime)"
} | tee "$OUT/sitting.txt"

for peer in $PEERS; do
  ./bench.sh "$peer"
  cp "results/$peer.json" "$OUT/$peer.json"
  echo "$peer done: $(uptime)" | tee -a "$OUT/sitting.txt"
done

for run in $RUNS; do
  mode=${run%%:*}
  if [ "$mode" = "$run" ]; then
    name=idsync-$mode
    (unset WORKER_PROCESSES; MODE=$mode ./bench-idsync.sh "$REPO")
  else
    name=idsync-$mode-${run#*:}
    WORKER_PROCESSES=${run#*:} MODE=$mode ./bench-idsync.sh "$REPO"
  fi
  cp results/idsync.json "$OUT/$name.json"
  drained=$(grep -oE 'worker drained .*' results/idsync.txt || true)
  [ -n "$drained" ] && echo "$name $drained" | tee -a "$OUT/sitting.txt"
  echo "$name done: $(uptime)" | tee -a "$OUT/sitting.txt"
done

echo "load after: $(uptime)" | tee -a "$OUT/sitting.txt"
(cd "$REPO" && npx tsx bench/peers-ratios.ts "$OUT") | tee "$OUT/ratios.txt"
echo "results in $OUT"
