#!/usr/bin/env bash
# Runs the load generator against a fresh local stack of release binaries:
# its own NATS server (the shipped nats.conf, or with another fsync policy),
# a fresh database, one persister and one gateway.
#
#   scripts/bench.sh [--sync-interval 1s|always] [--batching off|atomic] [--webhook up|down] -- throughput --rooms 50 --users 10 --rate 1000 --duration 10
#   scripts/bench.sh -- fanout --members 1000 --rate 10 --duration 10
#   scripts/bench.sh -- connections --count 19000
#   scripts/bench.sh -- ceiling publish | ceiling pipeline
#   scripts/bench.sh -- backlog --count 1000000
#   scripts/bench.sh --peer -- throughput --rooms 50 --users 10 --rate 1000
#
# Everything after -- goes to `loadgen` (`loadgen --help`); --url,
# --database-url, the processes whose CPU it reports, and the gateway's pid
# for `connections` are set here. For `backlog` the persister is started
# only once the jobs are in the stream. `--webhook up` delivers webhooks to a
# receiver on loopback that takes everything; `--webhook down` to a port
# where nothing listens (every delivery fails and is retried).
# `--batching atomic` has the gateway store its jobs in atomic batches
# (CHAT_PUBLISH_BATCHING): the durable mode is `--sync-interval always
# --batching atomic`.
#
# GATEWAY_WRAP runs the gateway under another program, e.g.
# GATEWAY_WRAP="valgrind --tool=dhat --dhat-out-file=/tmp/dhat.json" for a
# heap profile (of a gateway built on the system allocator: DHAT does not
# see jemalloc's allocations).
#
# NATS_EXTRA adds flags to the NATS server (e.g. "--profile 6061 -m 8222"
# to read its goroutines and /jsz while a scenario runs).
#
# `--peer` runs the same scenario against the peer the product is compared
# with instead (bench/peer: Socket.IO with the Redis adapter, a BullMQ queue
# and a pg worker), on its own Redis server and a fresh database.
# scripts/compare.sh runs both in one go and prints them side by side.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

SYNC=""
WEBHOOK=""
PEER=""
while [ $# -gt 0 ]; do
  case $1 in
    --peer) PEER=1; shift ;;
    --sync-interval) SYNC=$2; shift 2 ;;
    --webhook) WEBHOOK=$2; shift 2 ;;
    --batching) export CHAT_PUBLISH_BATCHING=$2; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
done
ensure_script_tools
ensure_postgres
if [ -n "$PEER" ]; then
  cargo build --release --quiet -p loadgen
  exec "$ROOT/scripts/peer.sh" "$@"
fi
NATS=$(nats_server_bin)
cargo build --release --quiet -p gateway -p persister -p loadgen
BIN="$ROOT/target/release"

WORK=$(mktemp -d)
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
  return 0
}
trap cleanup EXIT

conf="$ROOT/nats.conf"
if [ -n "$SYNC" ]; then
  conf="$WORK/nats.conf"
  sed "s/^\(\s*sync_interval:\).*/\1 $SYNC/" "$ROOT/nats.conf" > "$conf"
fi
nport=$(free_port)
"$NATS" -c "$conf" -a 127.0.0.1 -p "$nport" ${NATS_EXTRA:-} -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$nport" nats-server

db="chat_bench_$$"
psql -X -q -d postgres -c "CREATE DATABASE $db" >/dev/null
trap 'cleanup; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS '"$db"' WITH (FORCE)" >/dev/null 2>&1' EXIT
export NATS_URL="nats://127.0.0.1:$nport" DATABASE_URL="postgres://postgres@127.0.0.1:${PGPORT}/$db" RUST_LOG=warn
pport=$(free_port); gport=$(free_port)
case "$WEBHOOK" in
  "") ;;
  up)
    hport=$(free_port)
    python3 -c '
import http.server, sys
class Take(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Take).serve_forever()
' "$hport" &
    receiver_pid=$!
    pids+=("$receiver_pid")
    wait_port 127.0.0.1 "$hport" "webhook receiver"
    export CHAT_WEBHOOK_URL="http://127.0.0.1:$hport/hooks" ;;
  # A free port: nothing listens there, every delivery is refused.
  down) export CHAT_WEBHOOK_URL="http://127.0.0.1:$(free_port)/hooks" ;;
  *) die "--webhook takes up or down" ;;
esac
[ -n "$WEBHOOK" ] && export CHAT_WEBHOOK_SECRET=bench-secret
start_persister() {
  PERSISTER_ADDR="127.0.0.1:$pport" "$BIN/persister" >"$WORK/persister.log" 2>&1 &
  persister_pid=$!
  pids+=("$persister_pid")
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$pport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
}
scenario=${1:-}
# Idle connections are file descriptors: as many as this shell may have.
ulimit -n "$(ulimit -Hn)"
[ "$scenario" = backlog ] || start_persister
# shellcheck disable=SC2086 # GATEWAY_WRAP is a command line, split on purpose
GATEWAY_ADDR="127.0.0.1:$gport" DATABASE_URL="postgres://chat_gateway@127.0.0.1:${PGPORT}/$db" ${GATEWAY_WRAP:-} "$BIN/gateway" >"$WORK/gateway.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$gport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
say "nats sync_interval: ${SYNC:-as shipped (nats.conf)}; publish batching: ${CHAT_PUBLISH_BATCHING:-off}; webhooks: ${WEBHOOK:-off}"
args=("$@")
[ "$scenario" = connections ] && args+=(--gateway-pid "$gateway_pid")
watch=(--watch "gateway=$gateway_pid" --watch "nats=${pids[0]}" --watch "postgres=comm:postgres")
[ -n "${persister_pid:-}" ] && watch+=(--watch "persister=$persister_pid")
[ -n "${receiver_pid:-}" ] && watch+=(--watch "receiver=$receiver_pid")
loadgen=("$BIN/loadgen" --url "http://127.0.0.1:$gport" --database-url "$DATABASE_URL" "${watch[@]}" "${args[@]}")
if [ "$scenario" = backlog ]; then
  # The persister starts once the backlog is in the stream.
  "${loadgen[@]}" 2> >(tee "$WORK/loadgen.err" >&2) &
  lg=$!
  until grep -q "backlog published" "$WORK/loadgen.err" 2>/dev/null; do
    kill -0 "$lg" 2>/dev/null || break
    sleep 0.2
  done
  start_persister
  wait "$lg"
else
  "${loadgen[@]}"
fi
# How the persister batched the load, from its own metrics.
say "persister batches (jobs per transaction)"
curl -fs "http://127.0.0.1:$pport/metrics" | grep -E '^persister_batch_(size|seconds)_(sum|count)' || true
if [ -n "${CHAT_PUBLISH_BATCHING:-}" ]; then
  say "gateway batches (jobs per atomic batch)"
  curl -fs "http://127.0.0.1:$gport/metrics" | grep -E '^gateway_publish_batch' || true
fi
if [ -n "$WEBHOOK" ]; then
  say "webhooks"
  curl -fs "http://127.0.0.1:$pport/metrics" | grep -E '^webhook_' || true
fi
