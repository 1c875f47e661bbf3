#!/usr/bin/env bash
# Every test tier of pg_ephcrypt, in order; each tier can also run alone:
#   scripts/test.sh lint     cargo fmt --check and clippy -D warnings
#   scripts/test.sh unit     pure crates (cargo test), once
#   scripts/test.sh pgrx     #[pg_test]s in a preloaded server (cargo pgrx test), per server
#   scripts/test.sh e2e      end-to-end tests driving real clusters (pytest), per server
# Servers: PG_MAJORS="16 18" ./scripts/test.sh e2e (majors or build names,
# see scripts/pg-servers.sh; default all: 15 16 17 18-debian 18-pypi).
# A partial e2e run: PG_EPHCRYPT_E2E_SELECT="core_dumps or wal" ./scripts/test.sh e2e
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
# A full disk shows up as compiler or initdb errors deep in a tier; say it
# up front (the whole run, all five servers, peaks at several GB).
free_kib=$(df -Pk "$BUILD" | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((8 * 1024 * 1024)) ]; then
    log "WARNING: only $((free_kib / 1024)) MiB free under $BUILD; the tiers may fail with 'No space left on device'"
fi
SUMMARY="$BUILD/test-summary.txt"
results=()
failed=0
record() { # tier target status seconds cpu-seconds
    results+=("$(printf '%-5s %-10s %-6s %5ss %6ss' "$1" "$2" "$3" "$4" "$5")")
}
# cpu_now: CPU_NOW = user + system seconds of this shell's finished children
# (the machine may be shared: CPU time says more than wall time then).
# `times` must run in this shell, not in a $(...) subshell.
cpu_now() {
    times >"$LOGS/.times"
    CPU_NOW=$(tail -1 "$LOGS/.times" | awk '{
        split($1, u, "m"); split($2, s, "m");
        printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
}
cpu_now
cpu_setup=$CPU_NOW

run_lint() {
    log "tier lint: cargo fmt --check, cargo clippy -D warnings"
    cargo fmt --all -- --check
    cargo clippy --quiet --workspace --all-targets --features pg_test -- -D warnings
}

run_unit() {
    log "tier unit: cargo test (pure crates)"
    # The import audit and the ELF reader also check every server build's
    # postgres binary.
    local bins="" t
    for t in $TARGETS; do
        bins="$bins:$("$(target_pg_config "$t")" --bindir)/postgres"
    done
    PG_EPHCRYPT_POSTGRES_BINARIES="${bins#:}" \
        cargo test --quiet -p ephcrypt-format -p ephcrypt-classify -p ephcrypt-got -p ephcrypt-interpose -p ephcrypt-attest -p ephcrypt-audit
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
    # PG_EPHCRYPT_E2E_SELECT: a pytest -k expression, for a partial run.
    local select=()
    if [ -n "${PG_EPHCRYPT_E2E_SELECT:-}" ]; then select=(-k "$PG_EPHCRYPT_E2E_SELECT"); fi
    PG_EPHCRYPT_SOAK_SECONDS="$soak" "$VENV/bin/pytest" -q "$ROOT/tests/e2e" "${select[@]}"
}

# run_tier TIER [TARGET]: run it, log to build/logs, record result and time.
run_tier() {
    local tier="$1" target="${2:--}" start cpu0 rc=0 logf
    logf="$LOGS/$tier-$target.log"
    start=$(date +%s)
    cpu_now
    cpu0=$CPU_NOW
    [ "$target" = - ] || use_target "$target"
    set +e
    (set -e; "run_$tier") 2>&1 | tee "$logf"
    rc=${PIPESTATUS[0]}
    set -e
    cpu_now
    local secs=$(($(date +%s) - start)) cpu=$((CPU_NOW - cpu0))
    if [ "$rc" = 0 ]; then
        record "$tier" "$target" ok "$secs" "$cpu"
    else
        record "$tier" "$target" FAILED "$secs" "$cpu"
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
    echo "machine: $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-5s %-10s %-6s %6s %7s\n' tier server result wall cpu
    printf '%-5s %-10s %-6s %5ss %6ss\n' setup - ok "$t_setup" "$cpu_setup"
    printf '%s\n' "${results[@]}"
} | tee "$SUMMARY"
if [ "$failed" != 0 ]; then
    log "some tiers FAILED (see above and $LOGS)"
    exit 1
fi
log "all requested tiers passed: ${tiers[*]} on ${TARGETS}"
