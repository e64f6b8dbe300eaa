#!/usr/bin/env bash
# The peer stack the benchmark compares the product with, started fresh
# for one loadgen run: its own Redis server, a fresh database, the
# Socket.IO server and the BullMQ worker of bench/peer. Run it through
# `scripts/bench.sh --peer -- <scenario>` (or scripts/compare.sh); the
# arguments are loadgen's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v redis-server >/dev/null || apt_install redis-server
command -v npm >/dev/null || apt_install nodejs npm
[ -d bench/peer/node_modules ] ||
  npm ci --prefix bench/peer --no-audit --no-fund --silent
ensure_postgres
BIN="$ROOT/target/release"

WORK=$(mktemp -d)
pids=()
db="chat_peer_$$"
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  return 0
}
trap cleanup EXIT

rport=$(free_port)
# As BullMQ asks: keys are never evicted. Nothing is saved to disk, as with
# the product's NATS at sync_interval 1 s the loss of the host loses the
# last moments.
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
  --maxmemory-policy noeviction >"$WORK/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
wait_port 127.0.0.1 "$rport" redis-server

psql -X -q -d postgres -c "CREATE DATABASE $db" >/dev/null
export REDIS_URL="redis://127.0.0.1:$rport" DATABASE_URL="postgres://postgres@127.0.0.1:${PGPORT}/$db"
node bench/peer/worker.js >"$WORK/worker.log" 2>&1 &
worker_pid=$!
pids+=("$worker_pid")
sport=$(free_port)
PORT=$sport node bench/peer/server.js >"$WORK/server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
wait_port 127.0.0.1 "$sport" "the peer's server"
for _ in $(seq 1 100); do grep -q "peer worker" "$WORK/worker.log" && break; sleep 0.1; done
grep -q "peer worker" "$WORK/worker.log" || die "the peer's worker did not start: $(cat "$WORK/worker.log")"

say "peer: Socket.IO $(node -p 'require("./bench/peer/node_modules/socket.io/package.json").version') + BullMQ $(node -p 'require("./bench/peer/node_modules/bullmq/package.json").version') + pg, Redis $(redis-server --version | grep -o 'v=[0-9.]*')"
ulimit -n "$(ulimit -Hn)"
args=("$@")
[ "${1:-}" = connections ] && args+=(--gateway-pid "$server_pid")
"$BIN/loadgen" --protocol socketio --url "http://127.0.0.1:$sport" --database-url "$DATABASE_URL" \
  --watch "server=$server_pid" --watch "worker=$worker_pid" --watch "redis=$redis_pid" \
  --watch "postgres=comm:postgres" "${args[@]}"
if grep -q "failed" "$WORK/server.log" "$WORK/worker.log"; then
  say "the peer reported failures:"
  grep -h "failed" "$WORK/server.log" "$WORK/worker.log" | sort | uniq -c | sort -rn | head -5 >&2
fi
