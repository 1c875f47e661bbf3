#!/usr/bin/env bash
# Bring a fresh Debian 12 machine (Rust 1.95, PostgreSQL 15 from Debian) to a
# working build of pg_ephcrypt for each requested PostgreSQL server.
# Idempotent: a second run takes seconds. Sourced by demo.sh / test.sh /
# bench.sh, or run on its own.
#   PG_MAJORS="16 18"   servers to set up: majors (18 = both 18 builds) or build
#                       names (15 16 17 18-pypi 18-debian); default all of them.
#                       demo.sh and bench.sh set it from PG_MAJOR (default 15).
set -euo pipefail

PGRX_VERSION=0.18.1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build"
mkdir -p "$BUILD"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

source "$ROOT/scripts/pg-servers.sh"

TARGETS="$(expand_targets "${PG_MAJORS:-15 16 17 18}")"
export TARGETS
has_target() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }

# --- apt packages -----------------------------------------------------------
# Debian's 15 is always needed: the default build (lint tier, cargo's default
# feature pg15) compiles against its headers.
server_version="$(dpkg-query -W -f='${Version}' "postgresql-15" 2>/dev/null || true)"
if [ -z "$server_version" ]; then
    echo "postgresql-15 is not installed; install it first (apt-get install postgresql-15)" >&2
    exit 1
fi
need=()
# server-dev must match the installed server exactly, or the headers don't match the binary.
dev_version="$(dpkg-query -W -f='${Version}' "postgresql-server-dev-15" 2>/dev/null || true)"
[ "$dev_version" = "$server_version" ] || need+=("postgresql-server-dev-15=$server_version")
# patchelf: RUNPATH of the private server builds' libpq users (pg-servers.sh).
pkgs=(libclang-dev clang pkg-config libssl-dev sudo gdb python3-venv postgresql-contrib binutils patchelf python3-yaml)
# Building Debian's 18 from source (the build dependencies come later, from
# the source package itself).
has_target 18-debian && pkgs+=(dpkg-dev build-essential fakeroot)
for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "apt-get install ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- cargo-pgrx ---------------------------------------------------------------
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    log "cargo install cargo-pgrx $PGRX_VERSION (takes ~6 minutes once)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

# --- python venv for the end-to-end tests (and pip for the PyPI servers) ------
VENV="$BUILD/venv"
if [ ! -x "$VENV/bin/pytest" ]; then
    log "python venv with pytest in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pytest==8.3.5"
fi

# --- the PostgreSQL servers -----------------------------------------------------
for t in $TARGETS; do
    ensure_target "$t"
    [ -x "$(target_pg_config "$t")" ] || { echo "missing $(target_pg_config "$t")" >&2; exit 1; }
done

# --- pgrx init against those servers (no downloads) ---------------------------
# One `cargo pgrx init` for everything missing: rewriting config.toml makes
# pgrx-pg-sys's build script (rerun-if-changed on it) run again for every
# feature, so it is rewritten only when an entry is missing or different.
PGRX_HOME_DEFAULT="${PGRX_HOME:-$HOME/.pgrx}"
export PGRX_HOME_DEFAULT
pgrx_init() {
    local home="$1"
    shift
    local args=() t cfg
    for t in "$@"; do
        cfg="$(target_pg_config "$t")"
        grep -qsx "pg$(pg_major "$t") = \"$cfg\"" "$home/config.toml" || args+=("--pg$(pg_major "$t")" "$cfg")
    done
    if [ "${#args[@]}" -gt 0 ]; then
        log "cargo pgrx init ${args[*]} (PGRX_HOME $home)"
        PGRX_HOME="$home" cargo pgrx init "${args[@]}" >/dev/null
    fi
}
main_targets=()
for t in $TARGETS; do
    [ "$t" = 18-pypi ] || main_targets+=("$t")
done
pgrx_init "$PGRX_HOME_DEFAULT" "${main_targets[@]}"
has_target 18-pypi && pgrx_init "$(pgrx_home_for 18-pypi)" 18-pypi

# The server runs as this user (PostgreSQL refuses root).
if [ "$(id -u)" = 0 ]; then
    PG_USER=postgres
else
    PG_USER="$(id -un)"
fi
export PG_USER ROOT BUILD VENV
# The build tree and the server builds must be reachable by the server's user.
chmod o+rx "$BUILD"
chmod o+rx "$PG_CACHE" 2>/dev/null || true

# PG_CONFIG of the first requested server, for callers that use one server.
PG_TARGET="${TARGETS%% *}"
PG_CONFIG="$(target_pg_config "$PG_TARGET")"
export PG_TARGET PG_CONFIG
log "ready: servers $TARGETS (PG_CONFIG $PG_CONFIG), cargo-pgrx $PGRX_VERSION"
