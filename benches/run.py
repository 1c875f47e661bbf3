#!/usr/bin/env python3
"""Encrypted / plain / interposition-only benchmarks of pg_ephcrypt.

Starts three clusters with the same configuration:

  enc    shared_preload_libraries = 'pg_ephcrypt' (every class encrypted)
  plain  no extension
  off    preloaded with pg_ephcrypt.classes = '' (GOT patched, every class
         passed through: the pure interposition cost)

loads the same data into each, runs every workload alternately on the three
(the order rotates each round), and prints medians and ratios as a markdown
table. Raw samples and the summary go to build/bench/<timestamp>-*.csv.

Every sample also returns a cheap checksum of its result, compared across the
modes; an untimed warm-up pass first compares a full digest of every result
and checks (through pg_ephcrypt_stats) that `enc` really sealed bytes of the
expected class and `off` sealed none. A broken mode cannot produce a
fast-but-wrong number.

Python 3.11 standard library only. Run it through ./scripts/bench.sh.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from cluster import BUILD, PG_BIN, Cluster, SqlError, _as_pg  # noqa: E402

OUT_DIR = BUILD / "bench"
MODES = ("enc", "plain", "off")

# Same for every mode.
COMMON_CONF = {
    "shared_buffers": "'128MB'",
    "work_mem": "'4MB'",
    "max_parallel_workers_per_gather": "2",
    "max_worker_processes": "8",
    "max_parallel_workers": "4",
    "jit": "off",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "logical",
    "max_replication_slots": "4",
    "max_wal_senders": "4",
    "logical_decoding_work_mem": "'64kB'",
    "autovacuum": "off",
    "checkpoint_timeout": "'30min'",
    "max_wal_size": "'2GB'",
    "temp_buffers": "'8MB'",
}

MODE_CONF = {
    "enc": (True, {}),
    "plain": (False, {}),
    "off": (True, {"pg_ephcrypt.classes": "''"}),
}

SPILL_GOAL = ("<=", 1.05)
LOGICAL_GOAL = ("<=", 1.10)
TPS_GOAL = (">=", 0.99)


@dataclass
class Sizes:
    rows: int  # rows in t1 and in t2
    temp_rows: int  # rows of the temporary table
    decode_rows: int  # rows inserted in the decoded transaction
    pgbench_scale: int
    pgbench_secs: int


SIZES = {
    "default": Sizes(rows=600_000, temp_rows=800_000, decode_rows=200_000, pgbench_scale=10, pgbench_secs=10),
    "quick": Sizes(rows=300_000, temp_rows=400_000, decode_rows=100_000, pgbench_scale=10, pgbench_secs=5),
}


# ---------------------------------------------------------------------------
# Clusters


class BenchCluster(Cluster):
    """A tests/e2e Cluster living under build/bench/clusters/<name>."""

    def __init__(self, name: str, preload: bool, conf: dict):
        super().__init__("bench_" + name, preload=preload, conf=conf)
        self.mode = name
        self.dir = OUT_DIR / "clusters" / name
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"

    def init(self) -> "BenchCluster":
        # Cluster.init() makes build/e2e world-readable: it must exist.
        (BUILD / "e2e").mkdir(parents=True, exist_ok=True)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "clusters").mkdir(exist_ok=True)
        for d in (OUT_DIR, OUT_DIR / "clusters"):
            d.chmod(0o755)
        super().init()
        return self

    def timed(self, script: str, timeout: float = 900) -> tuple[list[list[str]], list[float]]:
        """Run a psql script in one fresh session. `\\timing on` inside it
        switches on psql's client-side timing; returns the result rows and
        every "Time:" in seconds, in order."""
        r = subprocess.run(self._psql("postgres"), input=script, text=True, capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise SqlError(r.stderr)
        rows, times = [], []
        for line in r.stdout.splitlines():
            m = re.match(r"^Time: ([0-9.]+) ms", line)
            if m:
                times.append(float(m.group(1)) / 1000.0)
            elif line:
                rows.append(line.split("\t"))
        return rows, times


def library_info() -> dict[str, str]:
    """Identity of the installed library (a debug build would make `enc` and
    `off` look slow for the wrong reason)."""
    libdir = Path(subprocess.check_output([str(PG_BIN / "pg_config"), "--pkglibdir"], text=True).strip())
    so = libdir / "pg_ephcrypt.so"
    data = so.read_bytes()
    st = so.stat()
    return {
        "library": str(so),
        "library_sha256": hashlib.sha256(data).hexdigest()[:16],
        "library_inode": str(st.st_ino),
        "library_size": str(st.st_size),
        "library_mtime": dt.datetime.fromtimestamp(st.st_mtime).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "library_debug_info": "yes" if ".debug_info" in elf_section_names(data) else "no",
    }


def elf_section_names(data: bytes) -> set[str]:
    """Section names of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return set()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def sh(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name, = struct.unpack_from("<I", data, base)
        off, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, off, size
    _, str_off, str_size = sh(shstrndx)
    strtab = data[str_off:str_off + str_size]
    names = set()
    for i in range(shnum):
        n = sh(i)[0]
        names.add(strtab[n:strtab.index(b"\0", n)].decode(errors="replace"))
    return names


def mapped_library_inode(c: BenchCluster) -> str | None:
    """The inode of pg_ephcrypt.so as mapped by the cluster's postmaster."""
    for line in Path(f"/proc/{c.postmaster_pid()}/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5].endswith("/pg_ephcrypt.so"):
            return parts[4]
    return None


def start_clusters() -> dict[str, BenchCluster]:
    clusters = {}
    for mode in MODES:
        preload, extra = MODE_CONF[mode]
        c = BenchCluster(mode, preload, {**COMMON_CONF, **extra}).init().start()
        clusters[mode] = c
    for mode in ("enc", "off"):
        c = clusters[mode]
        c.sql("CREATE EXTENSION pg_ephcrypt")
        classes = c.sql("SELECT classes FROM pg_ephcrypt_status()")
        want = "{}" if mode == "off" else "{temp_files,temp_relations,logical_spill}"
        if classes != want:
            raise SystemExit(f"{mode}: pg_ephcrypt_status().classes = {classes}, expected {want}")
    if clusters["plain"].sql("SHOW shared_preload_libraries") != "":
        raise SystemExit("plain: shared_preload_libraries is not empty")
    return clusters


# ---------------------------------------------------------------------------
# Data


def setup_sql(s: Sizes) -> str:
    n = s.rows
    return f"""
CREATE TABLE t1 AS
  SELECT g, md5(g::text) || md5((g + 1)::text) AS s, g % 1000 AS k
  FROM generate_series(1, {n}) g;
CREATE TABLE t2 AS
  SELECT g, md5((g * 7)::text) || md5((g * 7 + 1)::text) AS s, g % 1000 AS k
  FROM generate_series(1, {n}) g;
CREATE TABLE ld (g int, s text);
VACUUM (FREEZE, ANALYZE) t1, t2, ld;
CHECKPOINT;
"""


def load(clusters: dict[str, BenchCluster], s: Sizes) -> None:
    for mode in MODES:
        c = clusters[mode]
        t0 = time.monotonic()
        c.sql(setup_sql(s), timeout=1800)
        pgbench(c, ["-i", "-q", "-s", str(s.pgbench_scale)], timeout=1800)
        c.sql("VACUUM ANALYZE; CHECKPOINT;", timeout=1800)
        log(f"loaded {mode} in {time.monotonic() - t0:.1f} s "
            f"(db size {c.sql('SELECT pg_size_pretty(pg_database_size(current_database()))')})")


def pgbench(c: BenchCluster, args: list[str], timeout: float = 600) -> str:
    cmd = _as_pg([str(PG_BIN / "pgbench"), "-h", str(c.dir), "-p", str(c.port), "-U", "postgres", *args, "postgres"])
    r = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed on {c.mode}:\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


# ---------------------------------------------------------------------------
# Workloads


@dataclass
class Sample:
    """One measurement: one or more named values, and a checksum of the
    result that must be equal across modes."""

    values: dict[str, float]
    check: str


@dataclass
class Workload:
    name: str
    run: Callable[[BenchCluster], Sample]
    # Untimed: a digest of the complete result (compared across modes),
    # or None when `run`'s checksum is already complete.
    verify: Callable[[BenchCluster], str] | None = None
    # Which pg_ephcrypt class must have sealed bytes in `enc`.
    klass: str | None = None
    # Rows of the report produced by this workload: name -> (unit, goal).
    rows: dict[str, tuple[str, tuple[str, float]]] = field(default_factory=dict)


SERIAL = "SET max_parallel_workers_per_gather = 0;"
NO_MERGE_NL = "SET enable_mergejoin = off; SET enable_nestloop = off;"
PARALLEL = (
    "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
    "SET min_parallel_table_scan_size = 0; SET enable_parallel_hash = on;" + NO_MERGE_NL
)

# name -> (settings, query, cheap checksum of the rows of q, ordered?). The
# checksum references every output column, so that the planner cannot drop
# one (and the work behind it) from the subquery.
SQL_WORKLOADS = {
    "external_sort": (
        SERIAL,
        "SELECT g, s FROM t1 ORDER BY s DESC",
        "sum(g::bigint), sum(octet_length(s))",
        True,
    ),
    "hash_join_spill": (
        SERIAL + NO_MERGE_NL,
        "SELECT t1.g, t2.s FROM t1 JOIN t2 ON t1.s = t2.s",
        "sum(g::bigint), sum(octet_length(s))",
        False,
    ),
    "hash_agg_spill": (
        SERIAL + "SET enable_sort = off;",
        "SELECT s, count(*) AS n FROM (SELECT s FROM t1 UNION ALL SELECT s FROM t2) u GROUP BY s",
        "sum(n), sum(octet_length(s))",
        False,
    ),
    "materialized_cte": (
        SERIAL + "SET enable_hashjoin = off; SET enable_nestloop = off;",
        "WITH c AS MATERIALIZED (SELECT g, s FROM t1) SELECT a.g, b.s FROM c a JOIN c b ON a.g = b.g + 1",
        "sum(g::bigint), sum(octet_length(s))",
        False,
    ),
    "window_spill": (
        SERIAL,
        "SELECT g, s, count(*) OVER () AS n, lag(s) OVER (ORDER BY g) AS prev FROM t1",
        "sum(g::bigint + n), sum(octet_length(s) + coalesce(octet_length(prev), 0))",
        False,
    ),
    "parallel_hash_join": (
        PARALLEL,
        "SELECT t1.g, t2.s FROM t1 JOIN t2 ON t1.s = t2.s",
        "sum(g::bigint), sum(octet_length(s))",
        False,
    ),
}


# A tiny spill (a few temp file blocks), output discarded. Its time is
# dominated by per-process set-up: the session_first_spill row measures it.
TINY_SPILL = ("SET work_mem = '64kB';\n"
              "SELECT count(*), sum(g) FROM (SELECT g FROM generate_series(1, 20000) g ORDER BY g DESC) s;\n"
              "RESET work_mem;\n")
# --warm-session: run TINY_SPILL untimed at the start of every timed session,
# so that one-time per-process costs (in enc: the first use of the random
# number generator) stay out of the timed query. Parallel workers are new
# processes all the same.
WARM_PRELUDE = "\\o /dev/null\n" + TINY_SPILL + "\\o\n"


def sql_workload(name: str, prelude: str) -> Workload:
    settings, query, checksum, ordered = SQL_WORKLOADS[name]
    timed = f"SELECT count(*), {checksum} FROM ({query}) q;"

    def run(c: BenchCluster) -> Sample:
        rows, times = c.timed(f"{prelude}{settings}\n\\timing on\n{timed}\n")
        assert len(times) == 1 and len(rows) == 1, (rows, times)
        if int(rows[0][0]) <= 0:
            raise RuntimeError(f"{name} on {c.mode}: empty result")
        return Sample({name: times[0]}, "/".join(rows[0]))

    def verify(c: BenchCluster) -> str:
        # A content digest of every row; in output order where the query has one.
        agg = "md5(string_agg(q::text, '|'))" if ordered else "sum(hashtext(q::text)::bigint)"
        return c.sql(f"{settings}\nSELECT count(*), {agg} FROM ({query}) q;", timeout=1800)

    return Workload(name, run, verify, "temp_files", {name: ("s", SPILL_GOAL)})


def temp_table_workload(s: Sizes, prelude: str) -> Workload:
    # A fresh session each time: temp_buffers can only be set before the
    # session's first use of a temporary table.
    script = prelude + f"""
SET temp_buffers = '1MB';
\\timing on
CREATE TEMP TABLE tt AS SELECT g, md5(g::text) || md5((g + 1)::text) AS s FROM generate_series(1, {s.temp_rows}) g;
SELECT count(*), sum(g::bigint), sum(octet_length(s)), pg_relation_size('tt') FROM tt;
"""

    def run(c: BenchCluster) -> Sample:
        rows, times = c.timed(script)
        assert len(times) == 2 and len(rows) == 1, (rows, times)
        if int(rows[0][0]) != s.temp_rows:
            raise RuntimeError(f"temp table on {c.mode}: {rows[0][0]} rows, expected {s.temp_rows}")
        return Sample({"temp_table_insert": times[0], "temp_table_scan": times[1]}, "/".join(rows[0]))

    def verify(c: BenchCluster) -> str:
        return c.sql(
            "SET temp_buffers = '1MB';\n"
            f"CREATE TEMP TABLE tt AS SELECT g, md5(g::text) || md5((g + 1)::text) AS s "
            f"FROM generate_series(1, {s.temp_rows}) g;\n"
            "SELECT count(*), sum(hashtext(tt::text)::bigint) FROM tt;"
        )

    return Workload("temp_table", run, verify, "temp_relations", {
        "temp_table_insert": ("s", SPILL_GOAL),
        "temp_table_scan": ("s", SPILL_GOAL),
    })


def logical_workload(s: Sizes, prelude: str) -> Workload:
    prepare = f"""
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'bench';
TRUNCATE ld;
SELECT 'slot' FROM pg_create_logical_replication_slot('bench', 'test_decoding');
BEGIN;
INSERT INTO ld SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, {s.decode_rows}) g;
COMMIT;
CHECKPOINT;
"""
    decode = (
        "SELECT count(*), sum(octet_length(data)) FROM pg_logical_slot_get_changes("
        "'bench', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1')"
    )

    def run(c: BenchCluster) -> Sample:
        c.sql(prepare, timeout=900)
        rows, times = c.timed(f"{prelude}\\timing on\n{decode};\n")
        c.sql("SELECT pg_drop_replication_slot('bench')")
        assert len(times) == 1 and len(rows) == 1, (rows, times)
        # BEGIN + one change per row + COMMIT
        if int(rows[0][0]) != s.decode_rows + 2:
            raise RuntimeError(f"logical decoding on {c.mode}: {rows[0][0]} changes, expected {s.decode_rows + 2}")
        return Sample({"logical_decoding": times[0]}, "/".join(rows[0]))

    def verify(c: BenchCluster) -> str:
        c.sql(prepare, timeout=900)
        out = c.sql(
            "SELECT count(*), md5(string_agg(data, E'\\n')) FROM pg_logical_slot_get_changes("
            "'bench', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1')"
        )
        c.sql("SELECT pg_drop_replication_slot('bench')")
        return out

    return Workload("logical_decoding", run, verify, "logical_spill", {"logical_decoding": ("s", LOGICAL_GOAL)})


def pgbench_workload(s: Sizes) -> Workload:
    def run(c: BenchCluster) -> Sample:
        c.sql("CHECKPOINT")
        out = pgbench(c, ["-T", str(s.pgbench_secs), "-c", "2", "-j", "2"], timeout=s.pgbench_secs + 300)
        tps = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", out, re.M)
        failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
        done = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
        if not tps or not done:
            raise RuntimeError(f"pgbench output not understood on {c.mode}:\n{out}")
        if failed and int(failed.group(1)) != 0:
            raise RuntimeError(f"pgbench on {c.mode}: {failed.group(1)} failed transactions")
        # The TPC-B invariant holds after every run (balances move in step).
        bal = c.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches)"
                    " AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers)")
        if bal != "t":
            raise RuntimeError(f"pgbench on {c.mode}: TPC-B balances disagree")
        # pgbench truncates pgbench_history before each run.
        hist = int(c.sql("SELECT count(*) FROM pgbench_history"))
        if hist != int(done.group(1)):
            raise RuntimeError(f"pgbench on {c.mode}: {hist} history rows, {done.group(1)} transactions")
        # Throughput differs between modes by nature: no cross-mode checksum.
        return Sample({"pgbench_tps": float(tps.group(1))}, "")

    def warm_up(c: BenchCluster) -> str:
        pgbench(c, ["-T", "2", "-c", "2", "-j", "2"])
        return "ok"

    return Workload("pgbench_tps", run, warm_up, None, {"pgbench_tps": ("tps", TPS_GOAL)})


def first_spill_workload() -> Workload:
    """Diagnostic, no goal: the same tiny spill twice in a fresh session.
    The first pays every per-process set-up; the difference between the two
    is that one-time cost."""
    script = "SET work_mem = '64kB';\n\\timing on\n" + TINY_SPILL.split("\n")[1] + "\n" + TINY_SPILL.split("\n")[1]

    def run(c: BenchCluster) -> Sample:
        rows, times = c.timed(script)
        assert len(times) == 2 and len(rows) == 2 and rows[0] == rows[1], (rows, times)
        return Sample({"session_first_spill": times[0] * 1000, "session_next_spill": times[1] * 1000},
                      "/".join(rows[0]))

    def verify(c: BenchCluster) -> str:
        return run(c).check

    return Workload("session_first_spill", run, verify, "temp_files", {
        "session_first_spill": ("ms", None),
        "session_next_spill": ("ms", None),
    })


def workloads(s: Sizes, warm_session: bool = False) -> list[Workload]:
    prelude = WARM_PRELUDE if warm_session else ""
    return [sql_workload(n, prelude) for n in SQL_WORKLOADS] + [
        temp_table_workload(s, prelude),
        logical_workload(s, prelude),
        pgbench_workload(s),
        first_spill_workload(),
    ]


# ---------------------------------------------------------------------------
# Checks


def sealed_bytes(c: BenchCluster) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in c.rows("SELECT class, bytes_sealed FROM pg_ephcrypt_stats")}


def class_check(clusters: dict[str, BenchCluster], w: Workload, before: dict[str, dict[str, int]]) -> None:
    """`enc` sealed bytes of w.klass during w's warm-up; `off` sealed none."""
    if not w.klass:
        return
    # Counters are folded at close and at backend exit, which may lag the
    # client's disconnect by a moment.
    deadline = time.monotonic() + 10
    while True:
        after = {m: sealed_bytes(clusters[m]) for m in ("enc", "off")}
        grown = after["enc"].get(w.klass, 0) - before["enc"].get(w.klass, 0)
        if grown > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if grown <= 0:
        raise SystemExit(f"{w.name}: enc sealed no {w.klass} bytes: the workload did not spill, or enc is broken")
    if any(after["off"].values()):
        raise SystemExit(f"{w.name}: off sealed bytes {after['off']}; classes = '' should seal nothing")
    log(f"  {w.name}: enc sealed {grown / 2**20:.1f} MiB of {w.klass}")


def warm_up_and_verify(clusters: dict[str, BenchCluster], ws: list[Workload]) -> None:
    for w in ws:
        before = {m: sealed_bytes(clusters[m]) for m in ("enc", "off")}
        if w.verify is None:
            continue
        digests = {m: w.verify(clusters[m]) for m in MODES}
        if len(set(digests.values())) != 1:
            raise SystemExit(f"{w.name}: results differ between modes: {digests}")
        class_check(clusters, w, before)


# ---------------------------------------------------------------------------
# Reporting


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = subprocess.check_output([str(PG_BIN / "postgres"), "--version"], text=True).strip()
    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "postgres": pg,
        "load_avg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "commit": git_describe(),
    }


def git_describe() -> str:
    try:
        return subprocess.check_output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt(v: float, unit: str) -> str:
    if unit == "tps":
        return f"{v:.0f} tps"
    if unit == "ms":
        return f"{v:.1f} ms"
    return f"{v:.3f} s"


def summarize(samples: list[dict], ws: list[Workload]) -> list[dict]:
    out = []
    for w in ws:
        for row, (unit, goal_spec) in w.rows.items():
            by_mode = {m: {x["round"]: x["value"] for x in samples if x["metric"] == row and x["mode"] == m}
                       for m in MODES}
            if not all(by_mode.values()):
                continue
            med = {m: statistics.median(v.values()) for m, v in by_mode.items()}
            lo = {m: min(v.values()) for m, v in by_mode.items()}
            hi = {m: max(v.values()) for m, v in by_mode.items()}
            # Paired: the ratio within each round (the three modes ran
            # back to back), then the median over the rounds.
            paired = {m: statistics.median(by_mode[m][r] / by_mode["plain"][r] for r in by_mode["plain"])
                      for m in ("enc", "off")}
            r_enc = med["enc"] / med["plain"]
            r_off = med["off"] / med["plain"]
            if goal_spec is None:
                goal, met = "(diagnostic)", None
            else:
                op, limit = goal_spec
                goal, met = f"{op} {limit:.2f}", (r_enc <= limit if op == "<=" else r_enc >= limit)
            out.append({
                "workload": row, "unit": unit, "rounds": len(by_mode["plain"]),
                "median_plain": med["plain"], "median_enc": med["enc"], "median_off": med["off"],
                "min_plain": lo["plain"], "max_plain": hi["plain"],
                "min_enc": lo["enc"], "max_enc": hi["enc"],
                "min_off": lo["off"], "max_off": hi["off"],
                "enc_plain": r_enc, "off_plain": r_off,
                "paired_enc_plain": paired["enc"], "paired_off_plain": paired["off"],
                # tps: more is better, so the best sample is the max.
                "best_enc_plain": (hi["enc"] / hi["plain"]) if unit == "tps" else (lo["enc"] / lo["plain"]),
                "best_off_plain": (hi["off"] / hi["plain"]) if unit == "tps" else (lo["off"] / lo["plain"]),
                "goal": goal, "met": met,
            })
    return out


def markdown(summary: list[dict]) -> str:
    lines = [
        "| workload | median plain | median enc | median off | enc/plain | off/plain | goal | met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in summary:
        u = r["unit"]
        lines.append(
            f"| {r['workload']} | {fmt(r['median_plain'], u)} | {fmt(r['median_enc'], u)} | "
            f"{fmt(r['median_off'], u)} | {r['enc_plain']:.3f} | {r['off_plain']:.3f} | "
            f"{r['goal']} | {'—' if r['met'] is None else 'yes' if r['met'] else '**no**'} |"
        )
    return "\n".join(lines)


def spread_markdown(summary: list[dict]) -> str:
    lines = [
        "| workload | plain min..max | enc min..max | off min..max | enc/plain paired | off/plain paired "
        "| enc/plain best | off/plain best |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        u = r["unit"]
        cells = [f"{fmt(r['min_' + m], u)}..{fmt(r['max_' + m], u)}" for m in ("plain", "enc", "off")]
        cells += [f"{r[k]:.3f}" for k in ("paired_enc_plain", "paired_off_plain", "best_enc_plain", "best_off_plain")]
        lines.append(f"| {r['workload']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        wr.writeheader()
        wr.writerows(rows)


# ---------------------------------------------------------------------------


def _terminate(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception, so that `finally` stops the clusters.
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=None, help="rounds per workload and mode (default 5; --quick: 3)")
    ap.add_argument("--quick", action="store_true", help="half the data, 5 s pgbench runs, 3 rounds (< 3 minutes)")
    ap.add_argument("--only", default="", help="comma-separated workload names (default: all)")
    ap.add_argument("--pgbench-secs", type=int, default=None, help="seconds per pgbench run")
    ap.add_argument("--keep", action="store_true", help="keep the clusters' data directories afterwards")
    ap.add_argument("--warm-session", action="store_true",
                    help="run a tiny untimed spill first in every timed session, to keep one-time "
                         "per-process costs out of the timings (default: cold sessions)")
    args = ap.parse_args()

    sizes = SIZES["quick" if args.quick else "default"]
    if args.pgbench_secs:
        sizes.pgbench_secs = args.pgbench_secs
    rounds = args.rounds or (3 if args.quick else 5)
    ws = workloads(sizes, args.warm_session)
    if args.only:
        want = set(args.only.split(","))
        unknown = want - {w.name for w in ws}
        if unknown:
            ap.error(f"unknown workloads {sorted(unknown)}; known: {[w.name for w in ws]}")
        ws = [w for w in ws if w.name in want]

    info = machine()
    info.update(library_info())
    if info["library_debug_info"] == "yes":
        log("warning: the installed pg_ephcrypt.so has debug info: a debug build? "
            "(./scripts/bench.sh installs a release build)")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    log(f"bench: {rounds} rounds, sizes {sizes}, workloads {[w.name for w in ws]}")

    samples: list[dict] = []
    clusters: dict[str, BenchCluster] = {}
    try:
        clusters = start_clusters()
        for m in ("enc", "off"):
            ino = mapped_library_inode(clusters[m])
            if ino != info["library_inode"]:
                raise SystemExit(f"{m}: postmaster maps pg_ephcrypt.so inode {ino}, installed is "
                                 f"{info['library_inode']}: the library changed under us")
        log(f"[{time.monotonic() - t_start:.0f} s] clusters started; loading")
        load(clusters, sizes)
        log(f"[{time.monotonic() - t_start:.0f} s] warm-up and correctness pass (untimed)")
        warm_up_and_verify(clusters, ws)
        log(f"[{time.monotonic() - t_start:.0f} s] timed rounds")
        for rnd in range(rounds):
            order = MODES[rnd % 3:] + MODES[:rnd % 3]
            for w in ws:
                checks = {}
                for m in order:
                    smp = w.run(clusters[m])
                    checks[m] = smp.check
                    for metric, value in smp.values.items():
                        samples.append({"round": rnd + 1, "workload": w.name, "metric": metric, "mode": m,
                                        "value": value, "check": smp.check})
                if len(set(checks.values())) != 1:
                    raise SystemExit(f"{w.name} round {rnd + 1}: results differ between modes: {checks}")
                for metric in w.rows:
                    last = {x["mode"]: x["value"] for x in samples[-len(MODES) * len(w.rows):]
                            if x["metric"] == metric}
                    log(f"round {rnd + 1}/{rounds} {metric:20s} " + "  ".join(
                        f"{m} {last[m]:.3f}" for m in MODES))
        for m in ("enc", "off"):
            if mapped_library_inode(clusters[m]) != info["library_inode"]:
                log(f"warning: {m} no longer maps inode {info['library_inode']} (restarted?)")
        for m in MODES:
            errs = [ln for ln in clusters[m].log_text().splitlines() if re.search(r"\b(PANIC|FATAL|ERROR):", ln)]
            if errs:
                log(f"warning: {m} server log has {len(errs)} ERROR/FATAL/PANIC lines, first: {errs[0]}")
    finally:
        for c in clusters.values():
            c.stop(quiet=True)
            if not args.keep and c.data.exists():
                shutil.rmtree(c.data)  # ~0.5 GB each; server.log stays

    summary = summarize(samples, ws)
    elapsed = time.monotonic() - t_start
    write_csv(OUT_DIR / f"{stamp}-samples.csv", samples)
    write_csv(OUT_DIR / f"{stamp}-summary.csv", summary)
    table = markdown(summary)
    header = "\n".join(f"- {k}: {v}" for k, v in info.items())
    report = (
        f"## pg_ephcrypt benchmark {info['date']}\n\n{header}\n- rounds: {rounds} "
        f"({'quick' if args.quick else 'default'} sizes: {sizes.rows} rows per table, temp table {sizes.temp_rows} "
        f"rows, decoded transaction {sizes.decode_rows} rows, pgbench -s {sizes.pgbench_scale} "
        f"-T {sizes.pgbench_secs} -c 2 -j 2)\n- sessions: "
        f"{'warm (a tiny untimed spill first in every timed session)' if args.warm_session else 'cold (a fresh session per sample)'}"
        f"\n- total run time: {elapsed:.0f} s\n\n"
        f"Medians over {rounds} rounds (enc/plain, off/plain: ratios of the medians; for pgbench_tps "
        f"the ratio of TPS, higher is better):\n\n{table}\n\n"
        f"Spread and two noise-resistant views of the same samples: *paired* = median over the rounds of "
        f"the ratio within a round (the modes ran back to back); *best* = ratio of the best samples "
        f"(fastest time, highest TPS):\n\n"
        f"{spread_markdown(summary)}\n"
    )
    (OUT_DIR / f"{stamp}-report.md").write_text(report)
    print(report)
    log(f"raw samples: {OUT_DIR / (stamp + '-samples.csv')}")
    log(f"summary:     {OUT_DIR / (stamp + '-summary.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
