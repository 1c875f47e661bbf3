#!/usr/bin/env python3
"""Cost of pg_ephcrypt's memory hygiene (issue #15), each setting vs `off`.

Four clusters, all preloaded with every class encrypted and the same
configuration, differing only in the memory settings:

  off            pg_ephcrypt.memory_hygiene = off (the yardstick)
  dontdump       memory_hygiene = dontdump (the default)
  dontdump_lock  memory_hygiene = dontdump_lock (started with CAP_IPC_LOCK
                 as an ambient capability when run as root, so that mlock of
                 the 128 MB segment is not bounded by RLIMIT_MEMLOCK)
  nocore         memory_hygiene = off, core_dumps = off

Workloads, alternated across the modes (order rotating each round), every
sample a fresh session:

  pgbench_tps         pgbench TPC-B, -c 2 -j 2 (no covered file: what every
                      query pays, incl. backend start-up in a marked segment)
  parallel_hash_join  a spilling parallel hash join (DSM mapped by leader and
                      workers through the mmap shim, batch files sealed)

Printed: medians, min-max spread, the ratio of medians vs off and the median
of per-round paired ratios, as speed ratios (higher is better; goal >= 0.99);
for each workload twice: by wall time (tps, seconds) and by the server's CPU
time per unit of work (every process of the instance, reaped children
included: /proc/<postmaster>/stat utime+stime+cutime+cstime plus each live
child's utime+stime), which the load of other work on a shared machine
disturbs much less than wall time.
Python 3.11 standard library only. Run it through ./scripts/bench-memory.sh.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from cluster import BUILD, PG_BIN, PG_USER, Cluster, SqlError, _as_pg  # noqa: E402

OUT = BUILD / "bench-memory"
MODES = ("off", "dontdump", "dontdump_lock", "nocore")
MODE_CONF = {
    "off": {"pg_ephcrypt.memory_hygiene": "off"},
    "dontdump": {"pg_ephcrypt.memory_hygiene": "dontdump"},
    "dontdump_lock": {"pg_ephcrypt.memory_hygiene": "dontdump_lock"},
    "nocore": {"pg_ephcrypt.memory_hygiene": "off", "pg_ephcrypt.core_dumps": "off"},
}
COMMON = {
    "shared_buffers": "'128MB'",
    "work_mem": "'4MB'",
    "max_parallel_workers_per_gather": "2",
    "max_worker_processes": "8",
    "max_parallel_workers": "4",
    "jit": "off",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "autovacuum": "off",
    "checkpoint_timeout": "'30min'",
    "max_wal_size": "'2GB'",
}
PHJ_SETTINGS = ("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; "
                "SET enable_parallel_hash = on; SET enable_mergejoin = off; SET enable_nestloop = off;")
PHJ_QUERY = "SELECT count(*), sum(length(t2.s)) FROM t1 JOIN t2 ON t1.s = t2.s"
GOAL = 0.99


TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench-memory] {msg}", file=sys.stderr, flush=True)


class MemCluster(Cluster):
    def __init__(self, mode: str):
        super().__init__("benchmem_" + mode, conf={**COMMON, **MODE_CONF[mode]})
        self.mode = mode
        self.dir = OUT / "clusters" / mode
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"

    def init(self) -> "MemCluster":
        (BUILD / "e2e").mkdir(parents=True, exist_ok=True)
        (OUT / "clusters").mkdir(parents=True, exist_ok=True)
        for d in (OUT, OUT / "clusters"):
            d.chmod(0o755)
        super().init()
        return self

    def start(self) -> "MemCluster":
        if self.mode == "dontdump_lock" and os.getuid() == 0:
            subprocess.run(["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups",
                            "--inh-caps=+ipc_lock", "--ambient-caps=+ipc_lock", "--",
                            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120",
                            "start"], check=True, stdout=subprocess.DEVNULL)
        else:
            super().start()
        return self

    def timed(self, script: str) -> tuple[list[str], float]:
        r = subprocess.run(self._psql("postgres"), input=script, text=True, capture_output=True, timeout=900)
        if r.returncode != 0:
            raise SqlError(r.stderr)
        rows, times = [], []
        for line in r.stdout.splitlines():
            m = re.match(r"^Time: ([0-9.]+) ms", line)
            if m:
                times.append(float(m.group(1)) / 1000.0)
            elif line:
                rows.append(line)
        assert len(times) == 1 and len(rows) == 1, (rows, times)
        return rows, times[0]

    def pgbench(self, args: list[str]) -> str:
        cmd = _as_pg([str(PG_BIN / "pgbench"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
                      *args, "postgres"])
        r = subprocess.run(cmd, text=True, capture_output=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"pgbench {args} on {self.mode}:\n{r.stdout}\n{r.stderr}")
        return r.stdout


def check_mode(c: MemCluster) -> None:
    """The setting must be in force as the kernel reports it, or the numbers
    measure nothing."""
    hygiene, core = c.rows("SELECT memory_hygiene, core_dumps FROM pg_ephcrypt_status()")[0]
    want = {"off": ("off", "on"), "dontdump": ("dontdump", "on"), "dontdump_lock": ("dontdump_lock", "on"),
            "nocore": ("off", "off")}[c.mode]
    if (hygiene, core) != want:
        raise SystemExit(f"{c.mode}: status reports memory_hygiene={hygiene} core_dumps={core}, want {want}")


def prepared(mode: str, rows: int) -> MemCluster:
    """A started cluster of `mode` with the extension, its setting checked,
    the parallel hash join's tables (2 x `rows`) and pgbench scale 10."""
    c = MemCluster(mode).init().start()
    c.sql("CREATE EXTENSION pg_ephcrypt")
    check_mode(c)
    c.sql(f"""
CREATE TABLE t1 AS SELECT g, md5(g::text) || md5((g + 1)::text) AS s FROM generate_series(1, {rows}) g;
CREATE TABLE t2 AS SELECT g, md5((g * 7)::text) || md5((g * 7 + 1)::text) AS s FROM generate_series(1, {rows}) g;
VACUUM (FREEZE, ANALYZE) t1, t2;""", timeout=1800)
    c.pgbench(["-i", "-q", "-s", "10"])
    c.sql("VACUUM ANALYZE; CHECKPOINT;", timeout=1800)
    plan = c.sql(PHJ_SETTINGS + "EXPLAIN (COSTS OFF) " + PHJ_QUERY)
    if "Parallel Hash Join" not in plan:
        raise SystemExit(f"{mode}: no parallel hash join:\n{plan}")
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pgbench-secs", type=int, default=10)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--phj-reps", type=int, default=3, help="parallel hash joins per sample (median taken)")
    args = ap.parse_args()

    clusters: dict[str, MemCluster] = {}
    samples: dict[tuple[str, str], list[float]] = {}
    t0 = time.monotonic()
    try:
        for m in MODES:
            clusters[m] = prepared(m, args.rows)
        log(f"[{time.monotonic() - t0:.0f} s] clusters loaded; warm-up")
        results = set()
        for c in clusters.values():
            c.pgbench(["-T", "2", "-c", "2", "-j", "2"])
            rows, _ = c.timed(PHJ_SETTINGS + "\n\\timing on\n" + PHJ_QUERY + ";\n")
            results.add(rows[0])
        if len(results) != 1:
            raise SystemExit(f"parallel hash join results differ between modes: {results}")
        for rnd in range(args.rounds):
            order = MODES[rnd % len(MODES):] + MODES[:rnd % len(MODES)]
            for m in order:
                c = clusters[m]
                cpu0 = c.cpu_seconds()
                out = c.pgbench(["-T", str(args.pgbench_secs), "-c", "2", "-j", "2"])
                cpu = c.cpu_seconds() - cpu0
                tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out).group(1))
                txns = int(re.search(r"number of transactions actually processed: ([0-9]+)", out).group(1))
                samples.setdefault(("pgbench_tps", m), []).append(tps)
                # Transactions per server CPU second: higher is better.
                samples.setdefault(("pgbench_tx_per_cpu_s", m), []).append(txns / max(cpu, 1 / TICK))
                cpu0 = c.cpu_seconds()
                times = [c.timed(PHJ_SETTINGS + "\n\\timing on\n" + PHJ_QUERY + ";\n")[1]
                         for _ in range(args.phj_reps)]
                cpu = c.cpu_seconds() - cpu0
                # Speed (1/s) so that both rows read "higher is better".
                samples.setdefault(("parallel_hash_join", m), []).append(1.0 / statistics.median(times))
                samples.setdefault(("phj_per_cpu_s", m), []).append(args.phj_reps / max(cpu, 1 / TICK))
            log(f"round {rnd + 1}/{args.rounds}: " + "  ".join(
                f"{m} {samples[('pgbench_tps', m)][-1]:.0f} tps / {1 / samples[('parallel_hash_join', m)][-1]:.3f} s"
                for m in MODES))
        for m, c in clusters.items():
            errs = [ln for ln in c.log_text().splitlines() if re.search(r"\b(PANIC|FATAL|ERROR):", ln)]
            if errs:
                log(f"warning: {m}: {len(errs)} ERROR/FATAL/PANIC lines, first: {errs[0]}")
    finally:
        for c in clusters.values():
            c.stop(quiet=True)
            if c.data.exists():
                shutil.rmtree(c.data)

    lines = [
        f"memory hygiene benchmark: {args.rounds} rounds, pgbench -s 10 -T {args.pgbench_secs} -c 2 -j 2, "
        f"parallel hash join of 2 x {args.rows} rows (median of {args.phj_reps} per sample), "
        f"{time.monotonic() - t0:.0f} s",
        "",
        "| workload | mode | median | min-max | ratio vs off (medians) | paired ratio (median, min-max) | goal >= 0.99 |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for w, unit in (("pgbench_tps", "tps"), ("pgbench_tx_per_cpu_s", "tx/cpu-s"),
                    ("parallel_hash_join", "s"), ("phj_per_cpu_s", "cpu-s")):
        base = samples[(w, "off")]
        for m in MODES:
            v = samples[(w, m)]
            med = statistics.median(v)
            inverse = unit in ("s", "cpu-s")  # stored as speed, shown as time
            show = (lambda x: f"{1 / x:.3f}") if inverse else (lambda x: f"{x:.0f}")
            lo, hi = (max(v), min(v)) if inverse else (min(v), max(v))
            ratio = med / statistics.median(base)
            paired = [a / b for a, b in zip(v, base)]
            pr = statistics.median(paired)
            met = "" if m == "off" else ("yes" if ratio >= GOAL else "**no**")
            lines.append(f"| {w} | {m} | {show(med)} {unit} | {show(lo)}-{show(hi)} | {ratio:.3f} | "
                         f"{pr:.3f} ({min(paired):.3f}-{max(paired):.3f}) | {met} |")
    report = "\n".join(lines)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-report.md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
