#!/usr/bin/env bash
# The main job: set up, build and install pg_ephcrypt, start a throwaway
# cluster (as a non-root user) with the extension preloaded, show the key
# status, and stop the cluster on exit, even on error.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$ROOT/scripts/cluster.sh"

DEMO="$BUILD/demo"
PORT="${DEMO_PORT:-54390}"

stop_cluster "$DEMO"
log "building and installing pg_ephcrypt (release)"
install_extension

trap 'stop_cluster "$DEMO"; log "demo cluster stopped"' EXIT
new_cluster "$DEMO" "$PORT" yes
start_cluster "$DEMO"
log "cluster up in $DEMO/data (user $PG_USER, port $PORT), shared_preload_libraries = 'pg_ephcrypt'"

psql_at "$DEMO" "$PORT" -q -c "CREATE EXTENSION pg_ephcrypt"
log "key status:"
psql_at "$DEMO" "$PORT" -x -c "SELECT * FROM pg_ephcrypt_status()"
