#!/usr/bin/env bash
# Helpers to run throwaway clusters as the server user. Sourced, not run.
# Requires PG_USER, PG_TARGET and PG_CONFIG (from setup.sh); use_target
# switches to another server build.

# use_target TARGET: point PG_CONFIG, PG_BIN and the per-build directories
# at one server build (see scripts/pg-servers.sh).
use_target() {
    PG_TARGET="$1"
    PG_CONFIG="$(target_pg_config "$PG_TARGET")"
    PG_BIN="$("$PG_CONFIG" --bindir)"
    PG_MAJOR_NUM="$(pg_major "$PG_TARGET")"
    # tests/e2e/cluster.py puts its clusters here.
    PG_EPHCRYPT_E2E_DIR="$BUILD/e2e-$PG_TARGET"
    export PG_TARGET PG_CONFIG PG_BIN PG_MAJOR_NUM PG_EPHCRYPT_E2E_DIR
}
use_target "$PG_TARGET"

as_pg() {
    if [ "$(id -un)" = "$PG_USER" ]; then "$@"; else runuser -u "$PG_USER" -- "$@"; fi
}

# install_extension: build (release) for the current target's major and
# install into its pkglibdir/sharedir. pgrx-pg-sys generates its bindings
# from the pg_config that ~/.pgrx/config.toml lists for that major (not from
# --pg-config, which picks where to install and stage): both 18 builds get
# the library compiled against Debian's 18 headers (same major, same ABI). Any cluster using the library must be
# stopped first: overwriting a loaded .so in place crashes every process
# that maps it. We install to a new inode (copy + rename) so that even a
# forgotten cluster keeps its old copy.
install_extension() {
    local stage="$BUILD/stage-pg$PG_MAJOR_NUM"
    rm -rf "$stage"
    (cd "$ROOT" && cargo pgrx package --pg-config "$PG_CONFIG" \
        --no-default-features --features "pg$PG_MAJOR_NUM" --out-dir "$stage" >/dev/null)
    local libdir sharedir
    libdir="$("$PG_CONFIG" --pkglibdir)"
    sharedir="$("$PG_CONFIG" --sharedir)"
    local so
    so="$(find "$stage" -name 'pg_ephcrypt.so' | head -1)"
    as_root install -m 0755 "$so" "$libdir/.pg_ephcrypt.so.new"
    as_root mv -f "$libdir/.pg_ephcrypt.so.new" "$libdir/pg_ephcrypt.so"
    as_root mkdir -p "$sharedir/extension"
    as_root install -m 0644 "$(find "$stage" -name 'pg_ephcrypt.control' | head -1)" "$sharedir/extension/"
    local sql
    for sql in $(find "$stage" -name 'pg_ephcrypt--*.sql') "$ROOT"/sql/released/pg_ephcrypt--*.sql; do
        as_root install -m 0644 "$sql" "$sharedir/extension/"
    done
}

# new_cluster DIR PORT [preload yes|no]
new_cluster() {
    local dir="$1" port="$2" preload="${3:-yes}"
    stop_cluster "$dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    chown "$PG_USER" "$dir" 2>/dev/null || true
    as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1
    {
        echo "port = $port"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir'"
        echo "logging_collector = off"
        echo "fsync = off"
        [ "$preload" = yes ] && echo "shared_preload_libraries = 'pg_ephcrypt'"
    } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
}

start_cluster() {
    local dir="$1"
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

stop_cluster() {
    local dir="$1"
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

# psql_at DIR PORT ARGS...
psql_at() {
    local dir="$1" port="$2"
    shift 2
    as_pg "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"
}
