#!/usr/bin/env python3
"""What each memory-hygiene setting adds per unit of work (issue #15): a
deterministic companion of benches/memory.py, whose end-to-end ratios this
2-core shared machine cannot resolve to 1 %.

For each mode of benches/memory.py (off, dontdump, dontdump_lock, nocore) on
the same preloaded clusters:

1. `strace -f -c` on the postmaster (it follows every backend and parallel
   worker forked while tracing) during N pgbench transactions and K spilling
   parallel hash joins: the memory system calls (mmap, munmap, madvise,
   mlock*, prctl) and the file calls of a DSM segment's life (openat,
   ftruncate, fallocate, fstat*, unlink, ...) per transaction and per query. What a setting adds is the
   difference to `off`.
2. Untraced, the server CPU time per transaction and per query (every
   process of the instance), several rounds, median.
3. In this process, the CPU time of one `madvise(MADV_DONTDUMP)` on a shared
   mapping of a /dev/shm file (an upper bound: it includes the Python call),
   interleaved with the same call of `MADV_DODUMP` that undoes it.

   Also of one `openat` + `close` of that file, per call: the dearest of
   the other calls counted.

Bound printed per setting and workload, charging every call a mode makes
more of than `off` (also incidental ones: a backend that opened one more
catalog file in that run) at the dearest measured cost:
    ratio >= 1 - (added calls per unit x dearest cost per call) / CPU per unit
The settings' other work happens once per postmaster start (madvise and mlock
of the main segment, prctl), before tracing starts: not a cost per unit of
work (pgbench here keeps its connections; with -C every transaction would
also pay a backend start, which no setting changes either: children inherit
the mapping flags).

Run: ./scripts/bench-memory.sh --syscalls (needs strace; root)."""

from __future__ import annotations

import argparse
import mmap
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from memory import MODES, PHJ_QUERY, PHJ_SETTINGS, MemCluster, log, prepared  # noqa: E402

# Memory calls, and the file calls a DSM segment's life makes (shm_open is an
# openat of /dev/shm; sizing, statting, unlinking): whatever a setting could
# add on the way to or from a mapping.
CALLS = ("mmap", "munmap", "madvise", "mlock", "mlock2", "mlockall", "prctl", "openat", "fstat", "newfstatat",
         "ftruncate", "fallocate", "fstatfs", "unlink", "memfd_create")
GOAL = 0.99


def traced(c: MemCluster, run) -> dict[str, int]:
    """Memory system calls of every process the postmaster forks while `run`
    runs."""
    out = Path(tempfile.mkdtemp(prefix="memsys-")) / "strace.txt"
    st = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-e", "trace=" + ",".join(CALLS),
                           "-p", str(c.postmaster_pid())], stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        run()
    finally:
        time.sleep(0.5)
        st.send_signal(2)
        st.wait(timeout=60)
    counts = {k: 0 for k in CALLS}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in counts:
            # % time, seconds, usecs/call, calls, [errors], syscall
            counts[parts[-1]] = int(parts[3])
    shutil.rmtree(out.parent)
    return counts


def madvise_cost(rounds: int, calls: int) -> tuple[float, float, float]:
    """CPU seconds of one madvise(MADV_DONTDUMP) on a 1 MiB shared mapping of
    a /dev/shm file: median and spread over `rounds`."""
    path = Path("/dev/shm") / f"pg_ephcrypt_bench_{os.getpid()}"
    with open(path, "w+b") as f:
        f.truncate(1 << 20)
        m = mmap.mmap(f.fileno(), 1 << 20, flags=mmap.MAP_SHARED)
    path.unlink()
    per = []
    for _ in range(rounds):
        t0 = time.thread_time_ns()
        for _ in range(calls):
            m.madvise(mmap.MADV_DONTDUMP)
            m.madvise(mmap.MADV_DODUMP)
        per.append((time.thread_time_ns() - t0) / 1e9 / (2 * calls))
    m.close()
    return statistics.median(per), min(per), max(per)


def open_close_cost(rounds: int, calls: int) -> tuple[float, float, float]:
    """CPU seconds per system call of os.open + os.close of a /dev/shm file."""
    path = Path("/dev/shm") / f"pg_ephcrypt_bench_oc_{os.getpid()}"
    path.write_bytes(b"x")
    per = []
    for _ in range(rounds):
        t0 = time.thread_time_ns()
        for _ in range(calls):
            os.close(os.open(path, os.O_RDWR))
        per.append((time.thread_time_ns() - t0) / 1e9 / (2 * calls))
    path.unlink()
    return statistics.median(per), min(per), max(per)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txns", type=int, default=400, help="pgbench transactions per client (2 clients)")
    ap.add_argument("--queries", type=int, default=3)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5, help="untraced CPU-time rounds")
    args = ap.parse_args()

    clusters: dict[str, MemCluster] = {}
    calls: dict[tuple[str, str], dict[str, int]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    t0 = time.monotonic()
    phj = PHJ_SETTINGS + "\n" + PHJ_QUERY + ";\n"
    txns = 2 * args.txns
    try:
        for m in MODES:
            c = prepared(m, args.rows)
            clusters[m] = c
            c.pgbench(["-T", "2", "-c", "2", "-j", "2"])
            calls[("pgbench", m)] = traced(c, lambda c=c: c.pgbench(["-t", str(args.txns), "-c", "2", "-j", "2"]))
            calls[("parallel_hash_join", m)] = traced(
                c, lambda c=c: [c.sql(phj, timeout=900) for _ in range(args.queries)])
            log(f"[{time.monotonic() - t0:.0f} s] {m}: traced")
        for rnd in range(args.rounds):
            order = MODES[rnd % len(MODES):] + MODES[:rnd % len(MODES)]
            for m in order:
                c = clusters[m]
                a = c.cpu_seconds()
                c.pgbench(["-t", str(args.txns), "-c", "2", "-j", "2"])
                cpu.setdefault(("pgbench", m), []).append((c.cpu_seconds() - a) / txns)
                a = c.cpu_seconds()
                for _ in range(args.queries):
                    c.sql(phj, timeout=900)
                cpu.setdefault(("parallel_hash_join", m), []).append((c.cpu_seconds() - a) / args.queries)
        cost, cost_lo, cost_hi = madvise_cost(21, 2000)
        oc, oc_lo, oc_hi = open_close_cost(21, 2000)
    finally:
        for c in clusters.values():
            c.stop(quiet=True)
            if c.data.exists():
                shutil.rmtree(c.data)

    units = {"pgbench": txns, "parallel_hash_join": args.queries}
    lines = [
        f"memory hygiene, system calls per unit of work: pgbench -t {args.txns} -c 2 ({txns} transactions), "
        f"{args.queries} parallel hash joins of 2 x {args.rows} rows; {time.monotonic() - t0:.0f} s",
        f"one madvise(MADV_DONTDUMP) on a shared mapping: {cost * 1e6:.2f} us CPU "
        f"(median of 21 rounds, {cost_lo * 1e6:.2f}-{cost_hi * 1e6:.2f}; includes the Python call); "
        f"openat/close: {oc * 1e6:.2f} us per call ({oc_lo * 1e6:.2f}-{oc_hi * 1e6:.2f})",
        "",
        "| workload | mode | " + " | ".join(f"{k}/unit" for k in CALLS) + " | server CPU/unit | added calls vs off | ratio bound | goal >= 0.99 |",
        "|---|---|" + "---:|" * len(CALLS) + "---:|---|---:|---|",
    ]
    for w in ("pgbench", "parallel_hash_join"):
        base = calls[(w, "off")]
        for m in MODES:
            got = calls[(w, m)]
            per = {k: got[k] / units[w] for k in CALLS}
            added = {k: (got[k] - base[k]) / units[w] for k in CALLS}
            cpu_unit = statistics.median(cpu[(w, m)])
            charge = max(cost_hi, oc_hi)
            if m == "off":
                bound, verdict, add = "", "", ""
            else:
                b = 1 - sum(max(v, 0) for v in added.values()) * charge / cpu_unit
                bound, verdict = f">= {b:.5f}", ("yes" if b >= GOAL else "**no**")
                add = ", ".join(f"{k} {v:+.3f}" for k, v in added.items() if v) or "none"
            lines.append(f"| {w} | {m} | " + " | ".join(f"{per[k]:.3f}" for k in CALLS)
                         + f" | {cpu_unit * 1e3:.3f} ms | {add} | {bound} | {verdict} |")
    lines += ["", f"The bound charges every added call {max(cost_hi, oc_hi) * 1e6:.2f} us (the slowest round of "
              "the dearer measured call); calls that a mode makes fewer of than off (negative) are not credited."]
    report = "\n".join(lines)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
