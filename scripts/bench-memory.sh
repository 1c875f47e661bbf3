#!/usr/bin/env bash
# Cost of the memory hygiene settings (issue #15), each vs memory_hygiene = off
# (benches/memory.py): pgbench and a spilling parallel hash join, 5 rounds.
#   ./scripts/bench-memory.sh                  ~6 minutes on 2 cores
#   ./scripts/bench-memory.sh --rounds 3 --pgbench-secs 5
#   ./scripts/bench-memory.sh --syscalls       system calls each setting adds per
#                                              transaction / query, and the ratio
#                                              bound they give (benches/memory_syscalls.py)
# The extension is built and installed to a new inode first
# (BENCH_NO_INSTALL=1 uses the installed library as is).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$ROOT/scripts/cluster.sh"
cd "$ROOT"

if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    log "install_extension (release build, new inode)"
    install_extension
fi
if [ "${1:-}" = --syscalls ]; then
    shift
    log "benches/memory_syscalls.py $*"
    exec "$VENV/bin/python" "$ROOT/benches/memory_syscalls.py" "$@"
fi
log "benches/memory.py $*"
exec "$VENV/bin/python" "$ROOT/benches/memory.py" "$@"
