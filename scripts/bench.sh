#!/usr/bin/env bash
# Encrypted / plain / interposition-only benchmarks (benches/run.py).
#   ./scripts/bench.sh                 default run (11 interleaved rounds, noisy rows extended)
#   ./scripts/bench.sh --quick         half the data, 5 s pgbench runs, same rounds
#   ./scripts/bench.sh --rounds 21 --only external_sort,pgbench_tps
# The fine instrument is the trace replay (cargo bench -p ephcrypt-interpose
# --bench trace_replay; benches/README.md).
# Set-up is idempotent (scripts/setup.sh); the extension is built and
# installed to a new inode first (BENCH_NO_INSTALL=1 skips that and uses the
# installed library as is). Results: stdout, and build/bench/<timestamp>-*.
#   PG_MAJOR=17 ./scripts/bench.sh     another server (15 16 17 18, or a build
#                                      name such as 18-pypi); default 15
set -euo pipefail
PG_MAJOR="${PG_MAJOR:-15}"
source "$(dirname "${BASH_SOURCE[0]}")/pg-servers.sh"
PG_MAJORS="$(primary_target "$PG_MAJOR")"
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$ROOT/scripts/cluster.sh"
cd "$ROOT"

if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    log "install_extension (release build, new inode)"
    install_extension
fi
log "benches/run.py $*"
exec "$VENV/bin/python" "$ROOT/benches/run.py" "$@"
