#!/usr/bin/env bash
# Helpers to run throwaway clusters as the server user. Sourced, not run.
# Requires PG_USER and PG_CONFIG (from setup.sh).

PG_BIN="$("$PG_CONFIG" --bindir)"

as_pg() {
    if [ "$(id -un)" = "$PG_USER" ]; then "$@"; else runuser -u "$PG_USER" -- "$@"; fi
}

# install_extension: build (release) and install into the server's libdir.
# Any cluster using the library must be stopped first: overwriting a loaded
# .so in place crashes every process that maps it. We install to a new
# inode (copy + rename) so that even a forgotten cluster keeps its old copy.
install_extension() {
    local stage="$BUILD/stage"
    rm -rf "$stage"
    (cd "$ROOT" && cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$stage" >/dev/null)
    local libdir sharedir
    libdir="$("$PG_CONFIG" --pkglibdir)"
    sharedir="$("$PG_CONFIG" --sharedir)"
    local so
    so="$(find "$stage" -name 'pg_ephcrypt.so' | head -1)"
    as_root install -m 0755 "$so" "$libdir/.pg_ephcrypt.so.new"
    as_root mv -f "$libdir/.pg_ephcrypt.so.new" "$libdir/pg_ephcrypt.so"
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
