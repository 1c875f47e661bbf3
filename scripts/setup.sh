#!/usr/bin/env bash
# Bring a fresh Debian 12 machine (Rust 1.95, PostgreSQL 15 from Debian) to a
# working build of pg_ephcrypt. Idempotent: a second run takes seconds.
# Sourced by demo.sh / test.sh / bench.sh, or run on its own.
set -euo pipefail

PGRX_VERSION=0.18.1
PG_MAJOR=15
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build"
mkdir -p "$BUILD"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- apt packages -----------------------------------------------------------
server_version="$(dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR" 2>/dev/null || true)"
if [ -z "$server_version" ]; then
    echo "postgresql-$PG_MAJOR is not installed; install it first (apt-get install postgresql-$PG_MAJOR)" >&2
    exit 1
fi
need=()
# server-dev must match the installed server exactly, or the headers don't match the binary.
dev_version="$(dpkg-query -W -f='${Version}' "postgresql-server-dev-$PG_MAJOR" 2>/dev/null || true)"
[ "$dev_version" = "$server_version" ] || need+=("postgresql-server-dev-$PG_MAJOR=$server_version")
for pkg in libclang-dev clang pkg-config libssl-dev sudo gdb python3-venv python3-yaml postgresql-contrib; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "apt-get install ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
export PG_CONFIG
[ -x "$PG_CONFIG" ] || { echo "missing $PG_CONFIG" >&2; exit 1; }

# --- cargo-pgrx ---------------------------------------------------------------
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    log "cargo install cargo-pgrx $PGRX_VERSION (takes ~6 minutes once)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

# --- pgrx init against the installed server (no downloads) -------------------
PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "$PGRX_HOME/config.toml"; then
    log "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" >/dev/null
fi

# --- python venv for the end-to-end tests ------------------------------------
VENV="$BUILD/venv"
if [ ! -x "$VENV/bin/pytest" ]; then
    log "python venv with pytest in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pytest==8.3.5"
fi

# The server runs as this user (PostgreSQL refuses root).
if [ "$(id -u)" = 0 ]; then
    PG_USER=postgres
else
    PG_USER="$(id -un)"
fi
export PG_USER ROOT BUILD VENV
# The build tree must be reachable by the server's user.
chmod o+rx "$BUILD"
log "ready (pg_config $PG_CONFIG, server $server_version, cargo-pgrx $PGRX_VERSION)"
