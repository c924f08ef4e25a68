#!/usr/bin/env bash
# Install everything HomeVitals needs on Debian 12 or 13, idempotently (root or sudo):
# PostgreSQL + TimescaleDB, Mosquitto, dbus-daemon, Chromium (browser tests), the venv.
# The services themselves are started per project by `homevitals services up`.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

. /etc/os-release
case "${ID:-}:${VERSION_ID:-}" in
  debian:12|debian:13) ;;
  *) log "warning: tested on Debian 12/13, this is ${PRETTY_NAME:-unknown}" ;;
esac

APT_UPDATED=0
apt_update() { if [ "$APT_UPDATED" -eq 0 ]; then $SUDO apt-get update -q >/dev/null; APT_UPDATED=1; fi; }
missing() { local p; for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done; }
apt_install() {
  local need; need=$(missing "$@")
  if [ -n "$need" ]; then
    apt_update
    log "installing: $(echo $need)"
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $need >/dev/null
  fi
}

# Don't let the PostgreSQL packages create and start a system cluster on 5432: the
# project runs its own cluster in .homevitals/ on its own port.
if [ ! -e /etc/postgresql-common/createcluster.d/homevitals.conf ] && ! dpkg-query -W postgresql-common >/dev/null 2>&1; then
  $SUDO mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/homevitals.conf >/dev/null
fi

# --- PostgreSQL: the distribution's default major version.
apt_install postgresql-common
PGV=""
for v in 17 16 15; do
  if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then PGV=$v; break; fi
done
if [ -z "$PGV" ]; then
  apt_update
  PGV=$(apt-cache depends postgresql 2>/dev/null | grep -o 'postgresql-[0-9]\+' | head -n1 | cut -d- -f2)
  [ -n "$PGV" ] || { echo "setup: cannot find the postgresql package in the apt sources" >&2; exit 1; }
fi
apt_install "postgresql-$PGV" postgresql-contrib mosquitto mosquitto-clients dbus-daemon \
  python3 python3-venv python3-dev build-essential chromium fonts-dejavu-core

# --- TimescaleDB: the distribution's package, else built once from the Debian source package.
PKGLIB=/usr/lib/postgresql/$PGV/lib
if [ ! -f "$PKGLIB/timescaledb.so" ]; then
  apt_update
  if apt-cache show "postgresql-$PGV-timescaledb" >/dev/null 2>&1; then
    apt_install "postgresql-$PGV-timescaledb"
  else
    log "no TimescaleDB package for PostgreSQL $PGV: building the Debian source package (Apache edition)"
    apt_install dpkg-dev cmake "postgresql-server-dev-$PGV" libssl-dev
    if ! apt-cache showsrc timescaledb 2>/dev/null | grep -q '^Package: timescaledb'; then
      # Source-only entry for the release that ships TimescaleDB; no binaries from it.
      # from the mirror this machine already uses (a local mirror included), trixie suite.
      read -r MIRROR KEYRING < <(python3 scripts/debian_mirror.py "${VERSION_CODENAME:-bookworm}")
      log "TimescaleDB source package from $MIRROR (trixie)"
      $SUDO tee /etc/apt/sources.list.d/homevitals-timescaledb-src.sources >/dev/null <<SRC
Types: deb-src
URIs: $MIRROR
Suites: trixie
Components: main
Signed-By: $KEYRING
SRC
      $SUDO apt-get update -q >/dev/null
    fi
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    (cd "$build" && apt-get source -q timescaledb >/dev/null 2>&1)
    src=$(find "$build" -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)
    [ -n "$src" ] || { echo "setup: apt-get source timescaledb failed" >&2; exit 1; }
    (cd "$src" && ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF -DPG_CONFIG="/usr/lib/postgresql/$PGV/bin/pg_config" >/dev/null \
      && make -C build -j"$(nproc)" >/dev/null && $SUDO make -C build install >/dev/null)
    log "TimescaleDB built and installed into $PKGLIB"
  fi
fi

# --- Python: exactly what uv.lock pins, hash-checked (docs/install.md).  pip installs only
# uv itself, from requirements/bootstrap.txt (hashes); uv then makes .venv match the lock
# and fails if pyproject.toml and uv.lock disagree.  Never a network resolution.
PY=${PYTHON:-python3}
UV_PIN=$(sed -n 's/^uv==\([^ ;]*\).*/\1/p' requirements/bootstrap.txt)
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
if [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_PIN" ]; then
  log "installing uv $UV_PIN (hash-checked)"
  if ! .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements/bootstrap.txt \
       >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2; echo "setup: installing uv failed (log above)" >&2; exit 1
  fi
fi
# All extras (the server roles) and the dev group (tests, lint, types): a developer's machine.
UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=.venv \
  .venv/bin/uv sync --locked --all-extras --quiet \
  || { echo "setup: uv sync --locked failed: pyproject.toml and uv.lock disagree? (scripts/lock.sh)" >&2; exit 1; }
log "ready (PostgreSQL $PGV + TimescaleDB, Mosquitto, dbus-daemon, .venv from uv.lock)"
