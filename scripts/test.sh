#!/usr/bin/env bash
# Every test tier of pg_ephcrypt, in order; each tier can also run alone:
#   scripts/test.sh lint     cargo fmt --check and clippy -D warnings
#   scripts/test.sh unit     pure crates (cargo test), once
#   scripts/test.sh pgrx     #[pg_test]s in a preloaded server (cargo pgrx test), per server
#   scripts/test.sh e2e      end-to-end tests driving real clusters (pytest), per server
# Servers: PG_MAJORS="16 18" ./scripts/test.sh e2e (majors or build names,
# see scripts/pg-servers.sh; default all: 15 16 17 18-pypi 18-debian).
# Every requested server runs even after a failure; the summary at the end
# lists each tier x server with its result and time (also build/test-summary.txt).
set -euo pipefail
t_setup=$(date +%s)
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$ROOT/scripts/cluster.sh"
cd "$ROOT"
t_setup=$(($(date +%s) - t_setup))

tiers=("$@")
[ "${#tiers[@]}" -gt 0 ] || tiers=(lint unit pgrx e2e)
for tier in "${tiers[@]}"; do
    case "$tier" in
        lint | unit | pgrx | e2e) ;;
        *) echo "unknown tier $tier (lint|unit|pgrx|e2e)" >&2; exit 2 ;;
    esac
done

# The long soak (PG_EPHCRYPT_SOAK_SECONDS, default 180 s) runs on one server
# only; the others run the same test for 30 s. Setting the variable
# explicitly applies it everywhere.
SOAK_TARGET="${PG_EPHCRYPT_SOAK_TARGET:-18-pypi}"
case " $TARGETS " in *" $SOAK_TARGET "*) ;; *) SOAK_TARGET="${TARGETS##* }" ;; esac

LOGS="$BUILD/logs"
mkdir -p "$LOGS"
SUMMARY="$BUILD/test-summary.txt"
results=()
failed=0
record() { # tier target status seconds
    results+=("$(printf '%-5s %-10s %-6s %5ss' "$1" "$2" "$3" "$4")")
}

run_lint() {
    log "tier lint: cargo fmt --check, cargo clippy -D warnings"
    cargo fmt --all -- --check
    cargo clippy --quiet --workspace --all-targets --features pg_test -- -D warnings
}

run_unit() {
    log "tier unit: cargo test (pure crates)"
    cargo test --quiet -p ephcrypt-format -p ephcrypt-interpose -p ephcrypt-attest
}

run_pgrx() {
    log "tier pgrx on $PG_TARGET: cargo pgrx test pg$PG_MAJOR_NUM (shared_preload_libraries = 'pg_ephcrypt')"
    local pgdata="$BUILD/pgrx-test-data-$PG_TARGET" home
    home="$(pgrx_home_for "$PG_TARGET")"
    local args=(test "pg$PG_MAJOR_NUM" -p pg_ephcrypt --no-default-features --features "pg$PG_MAJOR_NUM pg_test")
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$pgdata" && chown "$PG_USER" "$pgdata"
        args+=(--runas "$PG_USER" --pgdata "$pgdata")
    fi
    PGRX_HOME="$home" cargo pgrx "${args[@]}"
}

run_e2e() {
    log "tier e2e on $PG_TARGET ($PG_CONFIG): real clusters, raw files on disk (pytest)"
    install_extension
    local soak="${PG_EPHCRYPT_SOAK_SECONDS:-}"
    if [ -z "$soak" ]; then
        if [ "$PG_TARGET" = "$SOAK_TARGET" ]; then soak=180; else soak=30; fi
    fi
    PG_EPHCRYPT_SOAK_SECONDS="$soak" "$VENV/bin/pytest" -q "$ROOT/tests/e2e"
}

# run_tier TIER [TARGET]: run it, log to build/logs, record result and time.
run_tier() {
    local tier="$1" target="${2:--}" start rc=0 logf
    logf="$LOGS/$tier-$target.log"
    start=$(date +%s)
    [ "$target" = - ] || use_target "$target"
    set +e
    (set -e; "run_$tier") 2>&1 | tee "$logf"
    rc=${PIPESTATUS[0]}
    set -e
    local secs=$(($(date +%s) - start))
    if [ "$rc" = 0 ]; then
        record "$tier" "$target" ok "$secs"
    else
        record "$tier" "$target" FAILED "$secs"
        failed=1
        log "tier $tier on $target FAILED (exit $rc); log: $logf"
    fi
}

for tier in "${tiers[@]}"; do
    case "$tier" in
        lint | unit) run_tier "$tier" ;;
        pgrx | e2e)
            for t in $TARGETS; do
                run_tier "$tier" "$t"
            done
            ;;
    esac
done

{
    echo "pg_ephcrypt test summary ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    printf '%-5s %-10s %-6s %6s\n' tier server result time
    printf '%-5s %-10s %-6s %5ss\n' setup - ok "$t_setup"
    printf '%s\n' "${results[@]}"
} | tee "$SUMMARY"
if [ "$failed" != 0 ]; then
    log "some tiers FAILED (see above and $LOGS)"
    exit 1
fi
log "all requested tiers passed: ${tiers[*]} on ${TARGETS}"
