#!/usr/bin/env python3
"""The `wal` class: a primary with a synchronous standby, sealed vs plain.

Two pairs with the same configuration (benches/README.md):

  enc    primary: pg_ephcrypt.classes = '...,wal', wal_durability = external;
         its synchronous standby seals its WAL too
  plain  the same pair with the default classes (WAL in plaintext)

Measured alternately (the order rotates each round):

  pgbench_tps  pgbench (TPC-B-like, -c 4 -j 2) against the primary; every
               commit waits for the synchronous standby's flush
  tx_per_cpu_s the same run's transactions per CPU second of both
               instances (every process of primary and standby): the cost,
               less disturbed by other load than the rate
  concurrent_* (--concurrent-rounds N) both pairs' pgbench at the same
               time: the machine's other load falls on both alike, so the
               CPU per transaction compares more tightly than in turns (the
               rates are of two pairs sharing 2 CPUs, not of one alone)
  replay_mbps  the standby pauses replay, the primary writes a bulk insert,
               the standby receives it; then the time to replay it (MB/s of
               WAL read back from the standby's pg_wal)

Before every timed run the primary vacuums pgbench_branches and
pgbench_tellers and empties pgbench_history (what pgbench does without -n),
so that both pairs start each run with the same small tables. The TPS
rounds run first, then the concurrent rounds, then the replay rounds (each bulk insert writes
~150 MB of WAL, whose checkpoints would otherwise land in the next pgbench
run of either pair). Each round measures both pairs back to back (the
order alternates) and keeps the round's enc/plain ratio; the result is the median of those paired
ratios, which is robust against the load of other work on the machine
drifting between rounds (medians of each mode are printed too). Goal: TPS
>= 0.95 of plain.
Results are checked: both pairs end with equal data on primary and standby,
and pg_ephcrypt_stats shows that enc sealed WAL and plain did not.

Python 3.11 standard library only; needs the extension installed
(scripts/cluster.sh install_extension, or PG_CONFIG pointing at a server
where it is installed). Run: python3 benches/wal.py [--rounds N] [--concurrent-rounds N] [--replay-rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from cluster import PG_BIN, Cluster, _as_pg  # noqa: E402
from walcluster import caught_up, lsn, primary, standby, wait_until  # noqa: E402

COMMON = {"shared_buffers": "'128MB'", "max_wal_size": "'1GB'", "checkpoint_timeout": "'15min'",
          "wal_compression": "off", "jit": "off"}


def pair(mode: str) -> tuple[Cluster, Cluster]:
    wal = mode == "enc"
    p = primary(f"benchwal_{mode}_p", wal=wal, conf=COMMON).start()
    p.sql("CREATE EXTENSION pg_ephcrypt")
    s = standby(p, f"benchwal_{mode}_s", wal=wal, slot=f"bench_{mode}", conf=COMMON)
    p.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
    p.sql("SELECT pg_reload_conf()")
    wait_until(lambda: p.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1",
               what="a synchronous standby")
    run_pgbench(p, "-i", "-s", "10", "-q")
    p.sql("CREATE TABLE bulk (id bigint, payload text)")
    return p, s


def run_pgbench(c: Cluster, *args: str) -> str:
    r = subprocess.run(_as_pg([str(PG_BIN / "pgbench"), "-h", str(c.dir), "-p", str(c.port), "-U", "postgres",
                               *args, "postgres"]), capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return r.stdout


def reset_hot_tables(p: Cluster, s: Cluster) -> None:
    """What pgbench does before a run unless -n (vacuum the branch and
    teller tables, empty the history), outside the measured CPU and with
    the standby caught up. Without it the two pairs' 10- and 100-row tables
    drift apart (one run: 1 page against 18-22 after 24 runs), and the
    heap scan and visibility code that reads them differed between the
    pairs by 3-29 µs of perf samples per transaction (DECISIONS.md #69)."""
    p.sql("VACUUM pgbench_branches, pgbench_tellers")
    p.sql("TRUNCATE pgbench_history")
    caught_up(p, s)


def tps(p: Cluster, s: Cluster, seconds: int, reset: bool = True,
        start: threading.Barrier | None = None) -> tuple[float, float]:
    """pgbench's tps, and transactions per CPU second of both instances
    (primary and standby, every process; robust to other load). `start`:
    wait there between the first CPU reading and pgbench."""
    if reset:
        reset_hot_tables(p, s)
    cpu0 = p.cpu_seconds() + s.cpu_seconds()
    if start is not None:
        start.wait(timeout=60)
    out = run_pgbench(p, "-n", "-c", "4", "-j", "2", *PGBENCH_EXTRA, "-T", str(seconds))
    cpu = p.cpu_seconds() + s.cpu_seconds() - cpu0
    rate = txns = None
    for line in out.splitlines():
        if line.startswith("tps = "):
            rate = float(line.split()[2])
        if line.startswith("number of transactions actually processed: "):
            txns = int(line.split(": ")[1].split("/")[0])
    if rate is None or txns is None:
        raise RuntimeError(out)
    return rate, txns / max(cpu, 0.01)


def tps_concurrent(pairs: dict[str, tuple[Cluster, Cluster]], seconds: int,
                   order: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """tps() of both pairs at the same time: whatever else loads the
    machine loads both alike, so their CPU per transaction compares far
    more tightly than in turns (on 2 CPUs both pairs then share the same
    cores, so the rates are not those of one pair alone). Both pgbench
    runs start together (after each thread's first CPU reading) and last
    equally long; `order` is the order the threads start in."""
    for p, s in pairs.values():
        reset_hot_tables(p, s)
    out: dict[str, tuple[float, float] | BaseException] = {}
    start = threading.Barrier(len(order))

    def run(m: str) -> None:
        try:
            out[m] = tps(*pairs[m], seconds, reset=False, start=start)
        except BaseException as e:  # reported below, in the main thread
            start.abort()
            out[m] = e

    threads = [threading.Thread(target=run, args=(m,)) for m in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for v in out.values():
        if isinstance(v, BaseException):
            raise v
    return out  # type: ignore[return-value]


def replay_rate(p: Cluster, s: Cluster, rows: int) -> float:
    caught_up(p, s)
    s.sql("SELECT pg_wal_replay_pause()")
    wait_until(lambda: s.sql("SELECT pg_get_wal_replay_pause_state()") == "paused", what="pause")
    start = lsn(s.sql("SELECT pg_last_wal_replay_lsn()"))
    p.sql("TRUNCATE bulk")
    p.sql(f"INSERT INTO bulk SELECT g, md5(g::text) || repeat('w', 60) FROM generate_series(1, {rows}) g")
    end = lsn(p.sql("SELECT pg_current_wal_flush_lsn()"))
    wait_until(lambda: lsn(s.sql("SELECT pg_last_wal_receive_lsn()")) >= end, timeout=300, what="receive")
    t0 = time.perf_counter()
    s.sql("SELECT pg_wal_replay_resume()")
    wait_until(lambda: lsn(s.sql("SELECT pg_last_wal_replay_lsn()")) >= end, timeout=300, interval=0.02,
               what="replay")
    return (end - start) / (time.perf_counter() - t0) / 1e6


BOOTSTRAP = 10000
# Extra pgbench options for the TPS runs (--pgbench-option; e.g. -N, which
# leaves out the updates of the 10 pgbench_branches and 100 pgbench_tellers
# rows that every TPC-B-like transaction contends for at scale 10).
PGBENCH_EXTRA: list[str] = []


def median_ci(xs: list[float], seed: str) -> tuple[float, float, float]:
    """Median and 95 % percentile-bootstrap interval of the median."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(BOOTSTRAP))
    return statistics.median(xs), meds[int(0.025 * BOOTSTRAP)], meds[int(0.975 * BOOTSTRAP) - 1]


def verdict(lo: float, hi: float, goal: float | None) -> str:
    if goal is None:
        return "-"
    return "yes" if lo >= goal else "**no**" if hi < goal else "undecided"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--replay-rounds", type=int, default=None, help="default: --rounds")
    ap.add_argument("--concurrent-rounds", type=int, default=0,
                    help="rounds with both pairs' pgbench at the same time (rows concurrent_*)")
    ap.add_argument("--pgbench-option", action="append", default=[],
                    help="passed to the timed pgbench runs, e.g. --pgbench-option=-N")
    a = ap.parse_args()
    if a.replay_rounds is None:
        a.replay_rounds = a.rounds
    PGBENCH_EXTRA.extend(a.pgbench_option)
    pairs = {m: pair(m) for m in ("enc", "plain")}
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        # One untimed run per pair first (caches, the backends' first
        # touches of shared memory), then the TPS rounds back to back: the
        # replay measurement writes ~150 MB of WAL per round, and the
        # checkpoints and restartpoints it triggers would land in whichever
        # pair's pgbench ran next, so it has its own phase afterwards.
        for p, s in pairs.values():
            tps(p, s, 3)
        for r in range(a.rounds):
            order = ("enc", "plain") if r % 2 == 0 else ("plain", "enc")
            for m in order:
                p, s = pairs[m]
                rate, per_cpu = tps(p, s, a.seconds)
                samples.setdefault(("pgbench_tps", m), []).append(rate)
                samples.setdefault(("tx_per_cpu_s", m), []).append(per_cpu)
                print(f"round {r + 1} {m}: tps {rate:.0f}, {per_cpu:.0f} tx per CPU second", file=sys.stderr)
        for r in range(a.concurrent_rounds):
            both = tps_concurrent(pairs, a.seconds, ("enc", "plain") if r % 2 == 0 else ("plain", "enc"))
            for m, (rate, per_cpu) in both.items():
                samples.setdefault(("concurrent_tps", m), []).append(rate)
                samples.setdefault(("concurrent_tx_per_cpu_s", m), []).append(per_cpu)
            print(f"concurrent round {r + 1}: " + ", ".join(
                f"{m} tps {v[0]:.0f}, {v[1]:.0f} tx per CPU second" for m, v in both.items()), file=sys.stderr)
        for r in range(a.replay_rounds):
            order = ("enc", "plain") if r % 2 == 0 else ("plain", "enc")
            for m in order:
                p, s = pairs[m]
                samples.setdefault(("replay_mbps", m), []).append(replay_rate(p, s, a.rows))
                print(f"replay round {r + 1} {m}: {samples[('replay_mbps', m)][-1]:.1f} MB/s", file=sys.stderr)
        # Checks: equal data, and enc sealed WAL where plain did not.
        for m, (p, s) in pairs.items():
            caught_up(p, s)
            q = "SELECT sum(abalance) || ':' || (SELECT count(*) FROM bulk) FROM pgbench_accounts"
            assert p.sql(q) == s.sql(q), m
            for c in (p, s):
                sealed = int(c.sql("SELECT bytes_sealed FROM pg_ephcrypt_stats WHERE class = 'wal'") or 0)
                assert (sealed > 0) == (m == "enc"), (m, c.dir.name, sealed)
    finally:
        for p, s in pairs.values():
            s.stop(quiet=True)
            p.stop(quiet=True)
    rows = [("pgbench_tps", "tps", 0.95), ("tx_per_cpu_s", "tx/cpu-s", None)]
    if a.concurrent_rounds:
        rows += [("concurrent_tps", "tps", None), ("concurrent_tx_per_cpu_s", "tx/cpu-s", None)]
    rows.append(("replay_mbps", "MB/s", None))
    ratios = {w: [e / p_ for e, p_ in zip(samples[(w, "enc")], samples[(w, "plain")])] for w, _, _ in rows}
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"Measured {now} at commit `{rev}`, {os.cpu_count()} CPUs, {platform.release()}, "
          f"{a.rounds} TPS rounds, {a.concurrent_rounds} concurrent rounds, then {a.replay_rounds} replay rounds, pgbench -c 4 -j 2 {' '.join(PGBENCH_EXTRA)} -T {a.seconds}, scale 10, fsync = off, "
          f"synchronous standby on the same host.\n")
    print("| workload | median plain | median enc | median of paired enc/plain [95 %] | range | goal | met? |")
    print("|---|---:|---:|---:|---|---|---|")
    for w, unit, goal in rows:
        plain = statistics.median(samples[(w, "plain")])
        enc = statistics.median(samples[(w, "enc")])
        ratio, lo, hi = median_ci(ratios[w], w)
        g = f">= {goal}" if goal else "-"
        print(f"| {w} | {plain:.1f} {unit} | {enc:.1f} {unit} | {ratio:.3f} [{lo:.3f}, {hi:.3f}] | "
              f"{min(ratios[w]):.2f}-{max(ratios[w]):.2f} | {g} | {verdict(lo, hi, goal)} |")
    print(f"\n[95 %]: percentile bootstrap of the median, {BOOTSTRAP} resamples. met? is yes when the "
          "whole interval is at or above the goal, **no** when it is all below, else undecided "
          "(more rounds, or a quieter machine).")
    for (w, m), v in sorted(samples.items()):
        print(f"<!-- {w} {m}: {', '.join(f'{x:.1f}' for x in v)} -->")


if __name__ == "__main__":
    main()
