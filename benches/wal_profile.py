#!/usr/bin/env python3
"""Where the `wal` class's extra CPU goes, by shared object and symbol (a
companion of benches/wal.py and wal_cpu_by_role.py).

For each round and mode (enc, plain; the order alternating, a fresh pair of
benches/wal.py's configuration per round): a 3 s pgbench warm-up, then
`perf record -e cpu-clock` of every process of the primary and of its
synchronous standby (and, by inheritance, the backends forked for the
measured pgbench run) during `pgbench -c 4 -j 2 -T SECONDS`. Samples are
divided by the run's transactions: samples per 1,000 transactions by
shared object ([kernel] included), and the symbols whose share moved most.
pg_stat_wal and pg_stat_replication counters per transaction show whether
the class changes how PostgreSQL batches its work (WAL writes per
transaction on the primary, i.e. group commit).

This machine has no hardware counters (a VM): cpu-clock samples at
SAMPLE_HZ per running thread, so a sample is 1/SAMPLE_HZ s of CPU.

Run: python3 benches/wal_profile.py [--rounds N] [--seconds S]
(root, perf installed; PG_CONFIG as for the e2e tests, the extension
installed)."""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import wal as W  # noqa: E402
from walcluster import instance_pids as pids_of  # noqa: E402

SAMPLE_HZ = 4999
WAL_STATS = "SELECT wal_records, wal_write, wal_bytes FROM pg_stat_wal"


def wal_counters(p) -> tuple[int, int, int]:
    rec, writes, nbytes = p.rows(WAL_STATS)[0]
    return int(rec), int(writes), int(float(nbytes))


def profile(mode: str, seconds: int, work: Path, kept: tuple | None = None) -> dict:
    p, s = kept or W.pair(mode)
    try:
        W.run_pgbench(p, "-n", "-c", "4", "-j", "2", "-T", "3")
        data = work / f"perf-{mode}.data"
        for _attempt in range(10):
            # The warm-up's backends exit meanwhile: perf refuses a pid that
            # is gone, so list the instances again until it attaches.
            time.sleep(0.5)
            pids = pids_of(p) + pids_of(s)
            rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(SAMPLE_HZ), "--inherit",
                                    "-o", str(data), "-p", ",".join(map(str, pids))],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
            if rec.poll() is None:
                break
        else:
            raise RuntimeError(f"perf record did not attach: {rec.stderr.read().decode()[-500:]}")
        w0 = wal_counters(p)
        out = W.run_pgbench(p, "-n", "-c", "4", "-j", "2", "-T", str(seconds))
        w1 = wal_counters(p)
        time.sleep(0.3)
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)  # 130 or -2 after SIGINT: the report below says whether the data are whole
        tx = int(re.search(r"processed: (\d+)", out).group(1))
        rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "-F",
                              "sample,dso,sym", "--sort", "dso,sym"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        if kept is None:
            s.stop(quiet=True)
            p.stop(quiet=True)
    by_dso: collections.Counter = collections.Counter()
    by_sym: collections.Counter = collections.Counter()
    for line in rep.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
        if not m:
            continue
        n, dso, sym = int(m.group(1)), m.group(2), m.group(3).strip()
        by_dso[dso] += n
        by_sym[f"{dso}: {sym}"] += n
    return {"tx": tx, "dso": by_dso, "sym": by_sym,
            "records": (w1[0] - w0[0]) / tx, "writes": (w1[1] - w0[1]) / tx, "bytes": (w1[2] - w0[2]) / tx}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--keep-pairs", action="store_true",
                    help="both pairs live through every round, as in benches/wal.py (default: a fresh pair per run)")
    a = ap.parse_args()
    if shutil.which("perf") is None:
        print("perf is not installed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="wal_profile."))
    per: dict[str, list[dict]] = {"enc": [], "plain": []}
    kept = {m: W.pair(m) for m in ("enc", "plain")} if a.keep_pairs else {}
    try:
        run_rounds(a, work, per, kept)
    finally:
        for p, s in kept.values():
            s.stop(quiet=True)
            p.stop(quiet=True)
    shutil.rmtree(work, ignore_errors=True)
    report(a, per)
    return 0


def run_rounds(a, work: Path, per: dict, kept: dict) -> None:
    for r in range(a.rounds):
        for mode in (("plain", "enc") if r % 2 == 0 else ("enc", "plain")):
            res = profile(mode, a.seconds, work, kept.get(mode))
            per[mode].append(res)
            total = sum(res["dso"].values())
            print(f"round {r + 1} {mode}: {res['tx']} tx, {total / res['tx'] * 1000:.0f} samples per 1,000 tx, "
                  f"{res['writes']:.3f} WAL writes per tx", file=sys.stderr, flush=True)


def seen(per: dict, key: str) -> collections.Counter:
    """Samples per shared object or symbol over every run of both modes."""
    total: collections.Counter = collections.Counter()
    for runs in per.values():
        for x in runs:
            total.update(x[key])
    return total


def report(a, per: dict) -> None:

    def med(mode: str, key: str, name: str | None = None) -> float:
        """Median over rounds: a counter's samples per 1,000 tx (name given), else the per-tx value."""
        if name is None:
            return statistics.median(x[key] for x in per[mode])
        return statistics.median(x[key][name] / x["tx"] * 1000 for x in per[mode])

    us = 1e6 / SAMPLE_HZ / 1000  # µs of CPU per (sample per 1,000 tx)
    print(f"CPU per transaction by shared object, median of {a.rounds} rounds (pgbench -c 4 -j 2 -T {a.seconds}, "
          f"scale 10, fsync = off, synchronous standby; every process of both instances; cpu-clock at "
          f"{SAMPLE_HZ} Hz; {'both pairs live throughout' if a.keep_pairs else 'a fresh pair per run'})\n")
    print("| shared object | plain µs/tx | enc µs/tx | enc - plain |")
    print("|---|---:|---:|---:|")
    rows = []
    for d, _ in seen(per, "dso").most_common():
        pl, en = med("plain", "dso", d) * us, med("enc", "dso", d) * us
        rows.append((d, pl, en))
    for d, pl, en in rows[:12]:
        print(f"| {d} | {pl:.1f} | {en:.1f} | {en - pl:+.1f} |")
    tot = {m: statistics.median(sum(x["dso"].values()) / x["tx"] * 1000 * us for x in per[m]) for m in per}
    print(f"| all | {tot['plain']:.1f} | {tot['enc']:.1f} | {tot['enc'] - tot['plain']:+.1f} |")
    print("\nSymbols whose CPU per transaction moved most (enc - plain, µs/tx, medians):\n")
    deltas = []
    for sym, _ in seen(per, "sym").most_common(400):
        pl, en = med("plain", "sym", sym) * us, med("enc", "sym", sym) * us
        deltas.append((en - pl, sym, pl, en))
    deltas.sort(key=lambda t: -abs(t[0]))
    print("| symbol | plain | enc | enc - plain |")
    print("|---|---:|---:|---:|")
    for dlt, sym, pl, en in deltas[:25]:
        print(f"| `{sym[:90]}` | {pl:.1f} | {en:.1f} | {dlt:+.1f} |")
    print("\nPrimary's WAL per transaction (pg_stat_wal, medians):\n")
    print("| counter | plain | enc |")
    print("|---|---:|---:|")
    for k in ("records", "writes", "bytes"):
        print(f"| {k} | {med('plain', k):.3f} | {med('enc', k):.3f} |")
    print(f"| tps-equivalent (tx in {a.seconds} s) | {statistics.median(x['tx'] for x in per['plain']) / a.seconds:.0f} "
          f"| {statistics.median(x['tx'] for x in per['enc']) / a.seconds:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
