#!/usr/bin/env bash
# The main job: set up, build and install pg_ephcrypt, start a throwaway
# cluster (as a non-root user) with the extension preloaded, show the key
# status, and stop the cluster on exit, even on error.
#   PG_MAJOR=18 ./scripts/demo.sh    another server (15 16 17 18, or a build
#                                    name such as 18-pypi); default 15
set -euo pipefail
PG_MAJOR="${PG_MAJOR:-15}"
source "$(dirname "${BASH_SOURCE[0]}")/pg-servers.sh"
PG_MAJORS="$(primary_target "$PG_MAJOR")"
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$ROOT/scripts/cluster.sh"

if [ "$PG_TARGET" = 15 ]; then DEMO="$BUILD/demo"; else DEMO="$BUILD/demo-$PG_TARGET"; fi
PORT="${DEMO_PORT:-54390}"

stop_cluster "$DEMO"
log "building and installing pg_ephcrypt (release)"
install_extension

trap 'stop_cluster "$DEMO"; log "demo cluster stopped"' EXIT
new_cluster "$DEMO" "$PORT" yes
start_cluster "$DEMO"
log "cluster up in $DEMO/data ($("$PG_BIN/postgres" --version), build $PG_TARGET; user $PG_USER, port $PORT), shared_preload_libraries = 'pg_ephcrypt'"

psql_at "$DEMO" "$PORT" -q -c "CREATE EXTENSION pg_ephcrypt"
log "key status:"
psql_at "$DEMO" "$PORT" -x -c "SELECT * FROM pg_ephcrypt_status()"

# --- a spilling workload, and the raw bytes on disk while it holds its files --
log "spilling workload: an external sort of 300,000 rows carrying the marker 'TENANT-SECRET' (work_mem = 64kB)"
psql_at "$DEMO" "$PORT" -q -c "CREATE TABLE demo AS SELECT g, 'TENANT-SECRET-' || md5(g::text) AS s FROM generate_series(1, 300000) g"
session_in="$DEMO/session.in"
session_out="$DEMO/session.out"
rm -f "$session_in" "$session_out"
mkfifo "$session_in"
chmod 0666 "$session_in"
psql_at "$DEMO" "$PORT" -q -A -t <"$session_in" >"$session_out" 2>&1 &
session_pid=$!
exec 3>"$session_in"
cat >&3 <<'SQL'
SET work_mem = '64kB';
BEGIN;
DECLARE c CURSOR FOR SELECT g, s FROM demo ORDER BY s;
FETCH 1 FROM c;
\echo HOLDING
SQL
for _ in $(seq 1 600); do
    grep -q HOLDING "$session_out" 2>/dev/null && break
    sleep 0.1
done
grep -q HOLDING "$session_out" || { cat "$session_out"; echo "the sort did not start" >&2; exit 1; }

tmpdir="$DEMO/data/base/pgsql_tmp"
log "while the cursor holds its sort, the temp files on disk:"
as_root ls -l "$tmpdir"
files=$(as_root find "$tmpdir" -type f -size +0)
[ -n "$files" ] || { echo "no temp files: the sort did not spill" >&2; exit 1; }
plain=0
for f in $files; do
    head=$(as_root head -c 8 "$f" | od -An -c | tr -s ' ')
    hits=$(as_root grep -c -a 'TENANT-SECRET' "$f" || true)
    printf '  %-60s header:%s  marker hits: %s\n' "${f#"$DEMO/data/"}" "$head" "$hits"
    [ "$hits" = 0 ] || plain=1
    as_root head -c 8 "$f" | grep -q -a '^PGEPHCR' || plain=1
done
if [ "$plain" = 0 ]; then
    log "PROOF: every temp file starts with the pg_ephcrypt header and no plaintext marker is on disk"
else
    echo "FAILED: plaintext found on disk" >&2
    exit 1
fi
log "the server's own on-disk audit while the files exist (pg_ephcrypt_scan()):"
psql_at "$DEMO" "$PORT" -c "SELECT path, class, size, logical_size, status FROM pg_ephcrypt_scan() ORDER BY path"
scan_bad=$(psql_at "$DEMO" "$PORT" -At -c "SELECT count(*) FROM pg_ephcrypt_scan() WHERE status NOT IN ('encrypted_current', 'empty')")
scan_ok=$(psql_at "$DEMO" "$PORT" -At -c "SELECT count(*) FROM pg_ephcrypt_scan() WHERE status = 'encrypted_current'")
[ "$scan_bad" = 0 ] && [ "$scan_ok" -gt 0 ] || { echo "FAILED: the scan shows $scan_ok sealed and $scan_bad bad files" >&2; exit 1; }
# A copy of the volume taken now, as a snapshot or backup would be: audited
# offline at the end.
snapshot="$DEMO/snapshot"
as_root rm -rf "$snapshot"
as_root cp -a "$DEMO/data" "$snapshot"
log "copied the data directory to $snapshot while the sort holds its files (a volume snapshot)"

cat >&3 <<'SQL'
FETCH 2 FROM c;
COMMIT;
SQL
exec 3>&-
wait "$session_pid"
log "and the query result is correct (first three rows of the sort):"
cat "$session_out" | grep -v HOLDING
psql_at "$DEMO" "$PORT" -c "SELECT g, s FROM demo ORDER BY s LIMIT 3"

# --- key status after the workload, and a signed attestation verified offline --
log "counters:"
psql_at "$DEMO" "$PORT" -c "SELECT class, files_created, bytes_sealed, bytes_opened, auth_failures FROM pg_ephcrypt_stats ORDER BY class"

log "signed attestation (an auditor's fresh challenge), verified offline with ephcrypt-verify:"
(cd "$ROOT" && cargo build --quiet --release -p ephcrypt-attest -p ephcrypt-audit --bins)
challenge=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
public_key=$(psql_at "$DEMO" "$PORT" -At -c "SELECT encode(attestation_public_key, 'hex') FROM pg_ephcrypt_status()")
psql_at "$DEMO" "$PORT" -At -c "SELECT pg_ephcrypt_attest('\\x$challenge'::bytea)" >"$DEMO/attestation.json"
python3 -m json.tool "$DEMO/attestation.json"
"$ROOT/target/release/ephcrypt-verify" --public-key "$public_key" --challenge "$challenge" "$DEMO/attestation.json"

# --- the offline audit (no server, no key) -------------------------------------
epoch=$(psql_at "$DEMO" "$PORT" -At -c "SELECT epoch_id FROM pg_ephcrypt_status()")
stop_cluster "$DEMO"
log "offline audit of the snapshot taken while the spill files existed (ephcrypt-audit; current epoch $epoch):"
"$ROOT/target/release/ephcrypt-audit" "$snapshot"
"$ROOT/target/release/ephcrypt-audit" --json "$snapshot" | grep -q "\"$epoch\"" ||
    { echo "FAILED: the snapshot's files are not sealed under epoch $epoch" >&2; exit 1; }
log "offline audit of the demo's data directory itself, server stopped:"
"$ROOT/target/release/ephcrypt-audit" "$DEMO/data"
