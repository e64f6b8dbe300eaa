#!/usr/bin/env bash
# Starts the whole local stack: a current NATS server with JetStream,
# PostgreSQL, persisters and gateways. Installs what is missing, prints where
# to open it, and stops everything on Ctrl-C.
#
#   scripts/dev.sh [--gateways N] [--persisters N]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GATEWAYS=1 PERSISTERS=1
while [ $# -gt 0 ]; do
  case $1 in
    --gateways) GATEWAYS=$2; shift 2 ;;
    --persisters) PERSISTERS=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

RUN="$ROOT/.run"
mkdir -p "$RUN/logs" "$RUN/nats"
pids=()
cleanup() {
  trap - EXIT INT TERM
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

command -v cargo >/dev/null || die "Rust is needed: install it from rustup"
ensure_script_tools
say "building (release)"
cargo build --release --quiet --bins --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release"

# NATS: our own current server unless NATS_URL points at one.
if [ -z "${NATS_URL:-}" ]; then
  NATS=$(nats_server_bin)
  port=${CHAT_NATS_PORT:-4222}
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    port=$(free_port)
    say "port 4222 is taken; starting NATS on $port instead"
  fi
  say "starting $($NATS --version) on 127.0.0.1:$port"
  "$NATS" -c "$ROOT/nats.conf" -a 127.0.0.1 -p "$port" -sd "$RUN/nats" >"$RUN/logs/nats.log" 2>&1 &
  pids+=($!)
  wait_port 127.0.0.1 "$port" "nats-server"
  export NATS_URL="nats://127.0.0.1:$port"
fi

# PostgreSQL: the one at DATABASE_URL, or the local one (installed and
# started when missing).
if [ -z "${DATABASE_URL:-}" ]; then
  ensure_postgres
  psql -X -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'chat'" | grep -q 1 \
    || psql -X -q -d postgres -c "CREATE DATABASE chat" >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:${PGPORT}/chat"
  GATEWAY_DATABASE_URL="postgres://chat_gateway@127.0.0.1:${PGPORT}/chat"
else
  GATEWAY_DATABASE_URL=${GATEWAY_DATABASE_URL:-$DATABASE_URL}
fi

# The schema (and the gateway's read-only role) before anything reads it.
"$BIN/persister" migrate

for i in $(seq 0 $((PERSISTERS - 1))); do
  PERSISTER_ADDR="127.0.0.1:$((9090 + i))" "$BIN/persister" >"$RUN/logs/persister-$i.log" 2>&1 &
  pids+=($!)
done
# Uploaded files: one directory for every gateway of this stack.
export CHAT_UPLOAD_DIR=${CHAT_UPLOAD_DIR:-$RUN/uploads}
urls=()
for i in $(seq 0 $((GATEWAYS - 1))); do
  port=$((8080 + i))
  GATEWAY_ADDR="127.0.0.1:$port" DATABASE_URL="$GATEWAY_DATABASE_URL" \
    "$BIN/gateway" >"$RUN/logs/gateway-$i.log" 2>&1 &
  pids+=($!)
  urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do
  for _ in $(seq 1 100); do curl -fs "$u/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "$u/readyz" >/dev/null || die "gateway at $u is not ready; see $RUN/logs/"
done

cat <<TXT

  Chat is running.
    Open:        ${urls[0]}/
    WebSocket:   ${urls[0]/http/ws}/v1/ws?token=...   (token from POST ${urls[0]}/v1/auth/guest)
    Gateways:    ${urls[*]}
    Persisters:  $(for i in $(seq 0 $((PERSISTERS - 1))); do printf 'http://127.0.0.1:%s ' $((9090 + i)); done)
    NATS:        $NATS_URL      PostgreSQL: $DATABASE_URL
    Logs:        $RUN/logs/
  Ctrl-C stops everything.

TXT
wait -n "${pids[@]}" || true
die "a process of the stack exited; see $RUN/logs/"
