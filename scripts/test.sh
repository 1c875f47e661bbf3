#!/usr/bin/env bash
# Every test tier of pg_ephcrypt, in order; each tier can also run alone:
#   scripts/test.sh lint     cargo fmt --check and clippy -D warnings
#   scripts/test.sh unit     pure crates (cargo test)
#   scripts/test.sh pgrx     #[pg_test]s in a preloaded server (cargo pgrx test)
#   scripts/test.sh e2e      end-to-end tests driving real clusters (pytest)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$ROOT/scripts/cluster.sh"
cd "$ROOT"

tiers=("$@")
[ "${#tiers[@]}" -gt 0 ] || tiers=(lint unit pgrx e2e)

run_lint() {
    log "tier lint: cargo fmt --check, cargo clippy -D warnings"
    cargo fmt --all -- --check
    cargo clippy --quiet --workspace --all-targets --features pg_test -- -D warnings
}

run_unit() {
    log "tier unit: cargo test (pure crates)"
    cargo test --quiet -p ephcrypt-format -p ephcrypt-classify -p ephcrypt-got -p ephcrypt-interpose -p ephcrypt-attest -p ephcrypt-audit
}

run_pgrx() {
    log "tier pgrx: cargo pgrx test (shared_preload_libraries = 'pg_ephcrypt')"
    local pgdata="$BUILD/pgrx-test-data"
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$pgdata" && chown "$PG_USER" "$pgdata"
        cargo pgrx test pg15 -p pg_ephcrypt --runas "$PG_USER" --pgdata "$pgdata"
    else
        cargo pgrx test pg15 -p pg_ephcrypt
    fi
}

run_e2e() {
    log "tier e2e: real clusters, raw files on disk (pytest)"
    install_extension
    "$VENV/bin/pytest" -q "$ROOT/tests/e2e"
}

for tier in "${tiers[@]}"; do
    case "$tier" in
        lint) run_lint ;;
        unit) run_unit ;;
        pgrx) run_pgrx ;;
        e2e) run_e2e ;;
        *) echo "unknown tier $tier (lint|unit|pgrx|e2e)" >&2; exit 2 ;;
    esac
done
log "all requested tiers passed: ${tiers[*]}"
