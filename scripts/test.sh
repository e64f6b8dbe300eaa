#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests, and the end-to-end tests
# of the real binaries against a real NATS server (a current one, started
# here) and PostgreSQL (started, or installed, when missing).
#
#   scripts/test.sh [extra cargo test arguments, e.g. a test name filter]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v cargo >/dev/null || die "Rust is needed: install it from rustup"
ensure_script_tools
NATS=$(nats_server_bin)
export CHAT_TEST_NATS_SERVER="$NATS"
# The upgrade tests start from a stream an earlier release made on the
# server of its day.
CHAT_TEST_OLD_NATS_SERVER=$(nats_release "$NATS_OLD_VERSION")
export CHAT_TEST_OLD_NATS_SERVER
ensure_postgres
export CHAT_TEST_DATABASE_URL=${CHAT_TEST_DATABASE_URL:-"postgres://postgres@$PGHOST:$PGPORT/postgres"}
command -v docker-compose >/dev/null || apt_install docker-compose
# The web client's browser test: Debian's Chromium, driven by playwright-core.
command -v chromium >/dev/null || apt_install chromium
# Emoji (reactions) drawn in the screenshots, not as empty boxes.
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || apt_install fonts-noto-color-emoji
# And Firefox ESR, driven by geckodriver.
command -v firefox-esr >/dev/null || apt_install firefox-esr
CHAT_GECKODRIVER=$(geckodriver_bin)
export CHAT_GECKODRIVER
# The OpenAPI document's test of the live gateway.
CHAT_TEST_SCHEMATHESIS=$(schemathesis_bin)
export CHAT_TEST_SCHEMATHESIS
command -v npm >/dev/null || apt_install nodejs npm
if [ ! -d e2e/browser/node_modules/playwright-core ]; then
  say "installing playwright-core for the browser test"
  npm ci --prefix e2e/browser --no-audit --no-fund --silent
fi

# Each test drops its database when it ends; these drop what a killed run
# left behind, before and after this run. One still in use (another run
# going on) refuses to be dropped and is left alone.
drop_test_databases() {
  for db in $(psql -X -d postgres -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'chat\_t\_%'"); do
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
}
drop_test_databases

# One NATS server shared by every test that does not stop it; each test has
# a stream of its own on it.
NATS_DIR=$(mktemp -d)
# Never fails: the tests' verdict is the script's exit status.
cleanup() {
  set +e
  if [ -n "${NATS_PID:-}" ]; then
    kill "$NATS_PID" 2>/dev/null
    wait "$NATS_PID" 2>/dev/null
  fi
  rm -rf "$NATS_DIR" 2>/dev/null
  drop_test_databases
  return 0
}
trap cleanup EXIT
if [ -z "${CHAT_TEST_NATS_URL:-}" ]; then
  port=$(free_port)
  "$NATS" -js -a 127.0.0.1 -p "$port" -sd "$NATS_DIR" >"$NATS_DIR/nats.log" 2>&1 &
  NATS_PID=$!
  wait_port 127.0.0.1 "$port" "nats-server"
  export CHAT_TEST_NATS_URL="nats://127.0.0.1:$port"
fi
say "NATS $("$NATS" --version) at $CHAT_TEST_NATS_URL; PostgreSQL at $CHAT_TEST_DATABASE_URL"

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "building the binaries the end-to-end tests start"
cargo build --workspace --bins --tests --quiet
say "cargo test"
# The end-to-end tests mostly wait on processes: run many at once.
# The load tests (a 20,000-message flood, 5,000 sends under a persister
# kill, a cluster failover) run afterwards, one at a time, so they do not
# starve the others of the machine's two cores.
HEAVY=(slow:: ordering:: cluster::)
LOG="$NATS_DIR/cargo-test.log"
set +e
if [ $# -gt 0 ]; then
  cargo test --workspace --lib --bins --tests -- --test-threads "${CHAT_TEST_THREADS:-8}" "$@" 2>&1 | tee "$LOG"
  status=${PIPESTATUS[0]}
else
  skips=()
  for h in "${HEAVY[@]}"; do skips+=(--skip "$h"); done
  cargo test --workspace --lib --bins --tests -- --test-threads "${CHAT_TEST_THREADS:-8}" "${skips[@]}" 2>&1 | tee "$LOG"
  status=${PIPESTATUS[0]}
  say "load tests, one at a time"
  cargo test -p e2e --test e2e -- --test-threads 1 "${HEAVY[@]}" 2>&1 | tee -a "$LOG"
  heavy=${PIPESTATUS[0]}
  [ "$status" -eq 0 ] && status=$heavy
fi
set -e
# One closing line with the totals of every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
exit "$status"
