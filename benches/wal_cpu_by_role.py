#!/usr/bin/env python3
"""Where the `wal` class's CPU goes (a companion of benches/wal.py): CPU time
per pgbench transaction of each process role of a primary and its
synchronous standby, sealed (enc) and plain, each round on a fresh pair,
the order alternating. Printed: median µs per transaction per role and the
difference.

Roles: the primary as a whole (backends included, reaped children counted
by the postmaster's cutime+cstime: Cluster.cpu_seconds), its walsender; the
standby as a whole, its walreceiver and startup process.

Run: python3 benches/wal_cpu_by_role.py [ROUNDS]   (PG_CONFIG as for the
e2e tests; the extension installed)."""
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import wal as W  # noqa: E402
from wal_syscalls import pids_of  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 4
ROLES = ("walsender", "walreceiver", "startup")


def role_cpu(pids: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid in pids:
        try:
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cmd = open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        for r in ROLES:
            if r in cmd:
                out[r] = out.get(r, 0.0) + (int(st[11]) + int(st[12])) / TICK
    return out


def main() -> int:
    res: dict[tuple[str, str], list[float]] = {}
    for rnd in range(ROUNDS):
        for mode in (("plain", "enc") if rnd % 2 == 0 else ("enc", "plain")):
            p, s = W.pair(mode)
            try:
                W.run_pgbench(p, "-n", "-c", "4", "-j", "2", "-T", "3")
                a = role_cpu(pids_of(p) + pids_of(s))
                ta = (p.cpu_seconds(), s.cpu_seconds())
                out = W.run_pgbench(p, "-n", "-c", "4", "-j", "2", "-T", "8")
                time.sleep(0.5)  # let the postmaster reap the backends
                tb = (p.cpu_seconds(), s.cpu_seconds())
                b = role_cpu(pids_of(p) + pids_of(s))
                tx = int(re.search(r"processed: (\d+)", out).group(1))
                rows = {"primary (all processes)": tb[0] - ta[0], "standby (all processes)": tb[1] - ta[1]}
                rows.update({r: b.get(r, 0.0) - a.get(r, 0.0) for r in ROLES})
                for k, v in rows.items():
                    res.setdefault((k, mode), []).append(v / tx * 1e6)
            finally:
                s.stop(quiet=True)
                p.stop(quiet=True)
        print(f"round {rnd + 1}/{ROUNDS} done", file=sys.stderr, flush=True)
    print(f"CPU per transaction, median of {ROUNDS} rounds (pgbench -c 4 -j 2 -T 8, scale 10, fsync = off)\n")
    print("| role | plain µs/tx | enc µs/tx | enc - plain |")
    print("|---|---:|---:|---:|")
    for k in ("primary (all processes)", "walsender", "standby (all processes)", "walreceiver", "startup"):
        pl, en = statistics.median(res[(k, "plain")]), statistics.median(res[(k, "enc")])
        print(f"| {k} | {pl:.1f} | {en:.1f} | {en - pl:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
