#!/usr/bin/env python3
"""Encrypted / plain / interposition-only benchmarks of pg_ephcrypt.

Starts three clusters with the same configuration:

  enc    shared_preload_libraries = 'pg_ephcrypt' (every class encrypted)
  plain  no extension
  off    preloaded with pg_ephcrypt.classes = '' (GOT patched, every class
         passed through: the pure interposition cost)

loads the same data into each and opens one long-lived psql session per
mode (warmed up first). Each round runs every workload once per mode,
statement by statement, in those sessions; the order of the modes cycles
through all six permutations. Each statement is timed by psql's `\\timing`
(wall) and by the backend's CPU time (utime + stime from /proc/<pid>/stat,
read before and after it).

Statistics: per round the paired ratios enc/plain and off/plain; reported is
their median over the rounds with a 95 % percentile-bootstrap interval
(fixed seed), next to the goal. `off` does no extra work on these paths, so
its interval must contain 1.00: when it does not, the run says it is too
noisy and extends itself by more rounds of that workload (bounded by
--max-rounds); a row still noisy then is reported as too noisy to decide.
Rows whose enc/plain interval contains the goal (undecided) are extended the
same way.

Every sample also returns a cheap checksum of its result, compared across the
modes; an untimed warm-up pass first compares a full digest of every result
(fresh sessions) and checks through pg_ephcrypt_stats that `enc` really
sealed bytes of the expected class and `off` sealed none. A broken mode
cannot produce a fast-but-wrong number.

Python 3.11 standard library only. Run it through ./scripts/bench.sh.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import itertools
import os
import platform
import random
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
# Round r runs the modes in ORDERS[r % 6]: every mode in every position and
# after every other mode equally often.
ORDERS = list(itertools.permutations(MODES))

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

# Issue #11 item 7.
SPILL_GOAL = ("<=", 1.03)
LOGICAL_GOAL = ("<=", 1.05)
TPS_GOAL = (">=", 0.99)

BOOTSTRAP = 4000
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
# Long-lived sessions


class Session:
    """One psql process (and so one backend) kept open for the whole run.
    Scripts are sent on stdin, each followed by an `\\echo` marker; the reply
    is read up to the marker. psql stops at the first error
    (ON_ERROR_STOP), which shows here as the end of its output."""

    def __init__(self, c: BenchCluster):
        self.c = c
        self.err_path = c.dir / "session.stderr"
        self.err = self.err_path.open("w")
        self.p = subprocess.Popen(c._psql("postgres"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, bufsize=1)
        self.seq = 0
        # temp_buffers can only be set before the session's first use of a
        # temporary table: once, first.
        self.run("SET client_min_messages = warning;\nSET temp_buffers = '1MB';")
        self.pid = int(self.run("SELECT pg_backend_pid();")[0][0][0])

    def run(self, script: str, timeout: float = 1800) -> tuple[list[list[str]], list[float]]:
        """Rows printed and every psql "Time:" (seconds) of `script`."""
        self.seq += 1
        marker = f"__pg_ephcrypt_bench_{self.seq}__"
        try:
            self.p.stdin.write(f"{script}\n\\echo {marker}\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            raise SqlError(self.stderr()) from None
        rows, times = [], []
        deadline = time.monotonic() + timeout
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SqlError(f"{self.c.mode} session ended: {self.stderr()}")
            line = line.rstrip("\n")
            if line == marker:
                return rows, times
            m = re.match(r"^Time: ([0-9.]+) ms", line)
            if m:
                times.append(float(m.group(1)) / 1000.0)
            elif line:
                rows.append(line.split("\t"))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.c.mode} session: no reply within {timeout} s")

    def cpu(self) -> float:
        """The backend's CPU time so far (utime + stime), seconds."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def timed(self, statement: str) -> tuple[list[list[str]], float, float]:
        """Rows, wall seconds (psql's \\timing) and backend CPU seconds of
        one statement."""
        c0 = self.cpu()
        rows, times = self.run(f"\\timing on\n{statement}\n\\timing off")
        c1 = self.cpu()
        assert len(times) == 1, (statement, times)
        return rows, times[0], c1 - c0

    def stderr(self) -> str:
        self.err.flush()
        try:
            return self.err_path.read_text()[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        try:
            self.p.stdin.write("\\q\n")
            self.p.stdin.close()
            self.p.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
        self.err.close()


# ---------------------------------------------------------------------------
# Workloads


@dataclass
class Sample:
    """One measurement: metric -> (value, backend CPU seconds or None), and
    a checksum of the result that must be equal across modes."""

    values: dict[str, tuple[float, float | None]]
    check: str


@dataclass
class Workload:
    name: str
    # One sample in the mode's long-lived session.
    run: Callable[[BenchCluster, Session], Sample]
    # Untimed, fresh session: a digest of the complete result (compared
    # across modes), or None when `run`'s checksum is already complete.
    verify: Callable[[BenchCluster], str] | None = None
    # Which pg_ephcrypt class must have sealed bytes in `enc`.
    klass: str | None = None
    # Rows of the report produced by this workload: name -> (unit, goal).
    rows: dict[str, tuple[str, tuple[str, float] | None]] = field(default_factory=dict)


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


def local(settings: str) -> str:
    """The workload's SETs for one transaction only (SET LOCAL), so that
    they do not leak into the next workload of the long-lived session."""
    return re.sub(r"\bSET ", "SET LOCAL ", settings)


# A tiny spill (a few temp file blocks), output discarded. Its time is
# dominated by per-process set-up: the session_first_spill row measures it.
TINY_SPILL = ("SET work_mem = '64kB';\n"
              "SELECT count(*), sum(g) FROM (SELECT g FROM generate_series(1, 20000) g ORDER BY g DESC) s;\n"
              "RESET work_mem;\n")


def sql_workload(name: str) -> Workload:
    settings, query, checksum, ordered = SQL_WORKLOADS[name]
    timed = f"SELECT count(*), {checksum} FROM ({query}) q;"

    def run(c: BenchCluster, s: Session) -> Sample:
        s.run("BEGIN;\n" + local(settings))
        rows, wall, cpu = s.timed(timed)
        s.run("COMMIT;")
        assert len(rows) == 1, rows
        if int(rows[0][0]) <= 0:
            raise RuntimeError(f"{name} on {c.mode}: empty result")
        return Sample({name: (wall, cpu)}, "/".join(rows[0]))

    def verify(c: BenchCluster) -> str:
        # A content digest of every row; in output order where the query has one.
        agg = "md5(string_agg(q::text, '|'))" if ordered else "sum(hashtext(q::text)::bigint)"
        return c.sql(f"{settings}\nSELECT count(*), {agg} FROM ({query}) q;", timeout=1800)

    return Workload(name, run, verify, "temp_files", {name: ("s", SPILL_GOAL)})


def temp_table_workload(s: Sizes) -> Workload:
    create = (f"CREATE TEMP TABLE tt AS SELECT g, md5(g::text) || md5((g + 1)::text) AS s "
              f"FROM generate_series(1, {s.temp_rows}) g;")
    scan = "SELECT count(*), sum(g::bigint), sum(octet_length(s)), pg_relation_size('tt') FROM tt;"

    def run(c: BenchCluster, sess: Session) -> Sample:
        # The session has temp_buffers = 1MB (set before its first temporary
        # table): the table is evicted to its files while it is written, and
        # the first scan reads every page back and writes it again (hint bits).
        sess.run("DROP TABLE IF EXISTS tt;")
        _, w_ins, c_ins = sess.timed(create)
        rows, w_scan, c_scan = sess.timed(scan)
        sess.run("DROP TABLE tt;")
        assert len(rows) == 1, rows
        if int(rows[0][0]) != s.temp_rows:
            raise RuntimeError(f"temp table on {c.mode}: {rows[0][0]} rows, expected {s.temp_rows}")
        return Sample({"temp_table_insert": (w_ins, c_ins), "temp_table_scan": (w_scan, c_scan)},
                      "/".join(rows[0]))

    def verify(c: BenchCluster) -> str:
        return c.sql(
            "SET temp_buffers = '1MB';\n"
            f"{create}\n"
            "SELECT count(*), sum(hashtext(tt::text)::bigint) FROM tt;"
        )

    return Workload("temp_table", run, verify, "temp_relations", {
        "temp_table_insert": ("s", SPILL_GOAL),
        "temp_table_scan": ("s", SPILL_GOAL),
    })


def logical_workload(s: Sizes) -> Workload:
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

    def run(c: BenchCluster, sess: Session) -> Sample:
        sess.run(prepare, timeout=900)
        rows, wall, cpu = sess.timed(decode + ";")
        sess.run("SELECT pg_drop_replication_slot('bench');")
        assert len(rows) == 1, rows
        # BEGIN + one change per row + COMMIT
        if int(rows[0][0]) != s.decode_rows + 2:
            raise RuntimeError(f"logical decoding on {c.mode}: {rows[0][0]} changes, expected {s.decode_rows + 2}")
        return Sample({"logical_decoding": (wall, cpu)}, "/".join(rows[0]))

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
    def run(c: BenchCluster, _sess: Session) -> Sample:
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
        # pgbench has its own connections: no session CPU time.
        return Sample({"pgbench_tps": (float(tps.group(1)), None)}, "")

    def warm_up(c: BenchCluster) -> str:
        pgbench(c, ["-T", "2", "-c", "2", "-j", "2"])
        return "ok"

    return Workload("pgbench_tps", run, warm_up, None, {"pgbench_tps": ("tps", TPS_GOAL)})


def first_spill_workload() -> Workload:
    """Diagnostic, no goal: the same tiny spill twice in a *fresh* session
    (the only workload that does not use the long-lived sessions). The first
    pays every per-process set-up; the difference is that one-time cost."""
    script = "SET work_mem = '64kB';\n\\timing on\n" + TINY_SPILL.split("\n")[1] + "\n" + TINY_SPILL.split("\n")[1]

    def run(c: BenchCluster, _sess: Session | None = None) -> Sample:
        rows, times = c.timed(script)
        assert len(times) == 2 and len(rows) == 2 and rows[0] == rows[1], (rows, times)
        return Sample({"session_first_spill": (times[0] * 1000, None),
                       "session_next_spill": (times[1] * 1000, None)}, "/".join(rows[0]))

    def verify(c: BenchCluster) -> str:
        return run(c).check

    return Workload("session_first_spill", run, verify, "temp_files", {
        "session_first_spill": ("ms", None),
        "session_next_spill": ("ms", None),
    })


def workloads(s: Sizes) -> list[Workload]:
    return [sql_workload(n) for n in SQL_WORKLOADS] + [
        temp_table_workload(s),
        logical_workload(s),
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
# Statistics


def median_ci(xs: list[float], seed: str) -> tuple[float, float, float]:
    """Median and 95 % percentile-bootstrap interval of the median."""
    rng = random.Random(seed)
    n = len(xs)
    meds = sorted(statistics.median(rng.choices(xs, k=n)) for _ in range(BOOTSTRAP))
    return statistics.median(xs), meds[int(0.025 * BOOTSTRAP)], meds[int(0.975 * BOOTSTRAP) - 1]


def verdict(ci: tuple[float, float, float], goal: tuple[str, float] | None) -> str | None:
    """yes / no / undecided from where the interval lies against the goal."""
    if goal is None:
        return None
    op, limit = goal
    _, lo, hi = ci
    good, bad = (hi <= limit, lo > limit) if op == "<=" else (lo >= limit, hi < limit)
    return "yes" if good else "**no**" if bad else "undecided"


def contains_one(ci: tuple[float, float, float]) -> bool:
    return ci[1] <= 1.0 <= ci[2]


def by_round(samples: list[dict], metric: str, key: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {m: {} for m in MODES}
    for x in samples:
        if x["metric"] == metric and x[key] is not None:
            out[x["mode"]][x["round"]] = x[key]
    return out


def summarize(samples: list[dict], ws: list[Workload], seed: int) -> list[dict]:
    out = []
    for w in ws:
        for row, (unit, goal) in w.rows.items():
            r: dict = {"workload": row, "unit": unit, "goal": "(diagnostic)" if goal is None else
                       f"{goal[0]} {goal[1]:.2f}"}
            for key in ("value", "cpu"):
                v = by_round(samples, row, key)
                rounds = sorted(set(v["plain"]) & set(v["enc"]) & set(v["off"]))
                if len(rounds) < 3 or any(v["plain"][i] <= 0 for i in rounds):
                    continue
                pre = "" if key == "value" else "cpu_"
                r[pre + "rounds"] = len(rounds)
                for m in MODES:
                    xs = [v[m][i] for i in rounds]
                    r[f"{pre}median_{m}"] = statistics.median(xs)
                    r[f"{pre}min_{m}"] = min(xs)
                    r[f"{pre}max_{m}"] = max(xs)
                for m in ("enc", "off"):
                    ratios = [v[m][i] / v["plain"][i] for i in rounds]
                    med, lo, hi = median_ci(ratios, f"{seed}/{row}/{key}/{m}")
                    r[f"{pre}{m}_plain"], r[f"{pre}{m}_plain_lo"], r[f"{pre}{m}_plain_hi"] = med, lo, hi
                r[pre + "noisy"] = not contains_one((0, r[pre + "off_plain_lo"], r[pre + "off_plain_hi"]))
                r[pre + "met"] = verdict((0, r[pre + "enc_plain_lo"], r[pre + "enc_plain_hi"]), goal)
            if "rounds" in r:
                out.append(r)
    return out


def noisy_workloads(summary: list[dict], ws: list[Workload]) -> list[Workload]:
    """Workloads with a row (with a goal) whose off/plain interval (wall
    time) misses 1.00, or whose enc/plain interval contains the goal: more
    rounds may settle either."""
    rows = {r["workload"] for r in summary
            if r["goal"] != "(diagnostic)" and (r.get("noisy") or r.get("met") == "undecided")}
    return [w for w in ws if rows & set(w.rows)]


def why_more(r: dict) -> str:
    if r["noisy"]:
        return f"{r['workload']}: off/plain {ci_text(r, '', 'off')} does not contain 1.00 (too noisy)"
    return f"{r['workload']}: enc/plain {ci_text(r, '', 'enc')} contains the goal {r['goal']} (undecided)"


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


def ci_text(r: dict, pre: str, m: str) -> str:
    return f"{r[pre + m + '_plain']:.3f} [{r[pre + m + '_plain_lo']:.3f}, {r[pre + m + '_plain_hi']:.3f}]"


def met_text(r: dict, pre: str) -> str:
    met = r[pre + "met"]
    if met is None:
        return "—"
    if r[pre + "noisy"]:
        return f"too noisy to decide ({met})"
    return met


def markdown(summary: list[dict], pre: str = "") -> str:
    """pre = "" (wall time, psql \\timing; TPS for pgbench) or "cpu_"."""
    lines = [
        "| workload | rounds | median plain | median enc | median off | enc/plain [95 %] | off/plain [95 %] "
        "| goal | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in summary:
        if pre + "rounds" not in r:
            continue
        u = r["unit"]
        lines.append(
            f"| {r['workload']} | {r[pre + 'rounds']} | {fmt(r[pre + 'median_plain'], u)} | "
            f"{fmt(r[pre + 'median_enc'], u)} | {fmt(r[pre + 'median_off'], u)} | {ci_text(r, pre, 'enc')} | "
            f"{ci_text(r, pre, 'off')} | {r['goal']} | {met_text(r, pre)} |"
        )
    return "\n".join(lines)


def spread_markdown(summary: list[dict]) -> str:
    lines = [
        "| workload | plain min..max | enc min..max | off min..max |",
        "|---|---:|---:|---:|",
    ]
    for r in summary:
        u = r["unit"]
        cells = [f"{fmt(r['min_' + m], u)}..{fmt(r['max_' + m], u)}" for m in ("plain", "enc", "off")]
        lines.append(f"| {r['workload']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_lines(summary: list[dict]) -> str:
    out = []
    for r in summary:
        if r["goal"] == "(diagnostic)":
            continue
        name, noisy = r["workload"], r["noisy"]
        if noisy:
            out.append(f"- {name}: **too noisy to decide**: off/plain {ci_text(r, '', 'off')} does not contain "
                       f"1.00 after {r['rounds']} rounds (enc/plain {ci_text(r, '', 'enc')}, goal {r['goal']}).")
        elif r["met"] != "yes":
            out.append(f"- {name}: goal {r['goal']} {'missed' if r['met'] == '**no**' else 'not resolved'}: "
                       f"enc/plain {ci_text(r, '', 'enc')}, off/plain {ci_text(r, '', 'off')}.")
    return "\n".join(out) if out else "- every goal met, and every off/plain interval contains 1.00."


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys, restval="")
        wr.writeheader()
        wr.writerows(rows)


# ---------------------------------------------------------------------------


def _terminate(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception, so that `finally` stops the clusters.
    raise SystemExit(128 + signum)


def run_round(rnd: int, ws: list[Workload], clusters: dict[str, BenchCluster], sessions: dict[str, Session],
              samples: list[dict] | None, label: str) -> None:
    """Every workload of `ws` once per mode, in the order ORDERS[rnd % 6];
    samples are appended unless None (warm-up)."""
    order = ORDERS[rnd % len(ORDERS)]
    for w in ws:
        checks, got = {}, {}
        for m in order:
            smp = w.run(clusters[m], sessions[m])
            checks[m] = smp.check
            got[m] = smp.values
            if samples is not None:
                for metric, (value, cpu) in smp.values.items():
                    samples.append({"round": rnd, "workload": w.name, "metric": metric, "mode": m,
                                    "value": value, "cpu": cpu, "check": smp.check})
        if len(set(checks.values())) != 1:
            raise SystemExit(f"{w.name} round {rnd}: results differ between modes: {checks}")
        for metric in w.rows:
            v = {m: got[m][metric][0] for m in MODES}
            cpu = {m: got[m][metric][1] for m in MODES}
            cpu_txt = "" if cpu["plain"] is None else "  cpu " + "  ".join(f"{m} {cpu[m]:.2f}" for m in MODES)
            log(f"{label} {metric:20s} " + "  ".join(f"{m} {v[m]:.3f}" for m in MODES)
                + f"  enc/plain {v['enc'] / v['plain']:.3f} off/plain {v['off'] / v['plain']:.3f}{cpu_txt}")


def rounds_done(samples: list[dict], w: Workload) -> int:
    metric = next(iter(w.rows))
    return len({x["round"] for x in samples if x["metric"] == metric and x["mode"] == "plain"})


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=11, help="rounds per workload and mode (default 11)")
    ap.add_argument("--max-rounds", type=int, default=None,
                    help="bound for the extension of noisy workloads (default: 2 x rounds + 5)")
    ap.add_argument("--extend", type=int, default=6, help="rounds added per extension step (default 6)")
    ap.add_argument("--quick", action="store_true", help="half the data, 5 s pgbench runs (same rounds)")
    ap.add_argument("--only", default="", help="comma-separated workload names (default: all)")
    ap.add_argument("--pgbench-secs", type=int, default=None, help="seconds per pgbench run")
    ap.add_argument("--seed", type=int, default=20261201, help="bootstrap seed (default 20261201)")
    ap.add_argument("--keep", action="store_true", help="keep the clusters' data directories afterwards")
    args = ap.parse_args()

    sizes = SIZES["quick" if args.quick else "default"]
    if args.pgbench_secs:
        sizes.pgbench_secs = args.pgbench_secs
    rounds = args.rounds
    if rounds < 3:
        ap.error("--rounds must be at least 3 (11 or more to resolve a few per cent)")
    max_rounds = args.max_rounds or 2 * rounds + 5
    ws = workloads(sizes)
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
    log(f"bench: {rounds} rounds (noisy workloads extended by {args.extend} up to {max_rounds}), "
        f"sizes {sizes}, workloads {[w.name for w in ws]}")

    samples: list[dict] = []
    clusters: dict[str, BenchCluster] = {}
    sessions: dict[str, Session] = {}
    extensions: list[str] = []
    try:
        clusters = start_clusters()
        for m in ("enc", "off"):
            ino = mapped_library_inode(clusters[m])
            if ino != info["library_inode"]:
                raise SystemExit(f"{m}: postmaster maps pg_ephcrypt.so inode {ino}, installed is "
                                 f"{info['library_inode']}: the library changed under us")
        log(f"[{time.monotonic() - t_start:.0f} s] clusters started; loading")
        load(clusters, sizes)
        log(f"[{time.monotonic() - t_start:.0f} s] correctness pass (untimed, fresh sessions)")
        warm_up_and_verify(clusters, ws)
        sealed_before = {m: sealed_bytes(clusters[m]) for m in ("enc", "off")}
        sessions = {m: Session(clusters[m]) for m in MODES}
        log(f"[{time.monotonic() - t_start:.0f} s] warm-up round in the long-lived sessions "
            f"(backends {', '.join(f'{m} {s.pid}' for m, s in sessions.items())})")
        run_round(0, ws, clusters, sessions, None, "warm-up")
        log(f"[{time.monotonic() - t_start:.0f} s] timed rounds")
        rnd = 0
        for _ in range(rounds):
            rnd += 1
            run_round(rnd, ws, clusters, sessions, samples, f"round {rnd}/{rounds}")
        summary = summarize(samples, ws, args.seed)
        while True:
            noisy = [w for w in noisy_workloads(summary, ws) if rounds_done(samples, w) < max_rounds]
            if not noisy:
                break
            rows = [r for r in summary if r["goal"] != "(diagnostic)" and (r["noisy"] or r["met"] == "undecided")
                    and any(r["workload"] in w.rows for w in noisy)]
            msg = ("; ".join(why_more(r) for r in rows)
                   + f": {args.extend} more rounds of " + ", ".join(w.name for w in noisy))
            log(msg)
            extensions.append(msg)
            for _ in range(args.extend):
                todo = [w for w in noisy if rounds_done(samples, w) < max_rounds]
                if not todo:
                    break
                rnd += 1
                run_round(rnd, todo, clusters, sessions, samples, f"extra round {rnd}")
            summary = summarize(samples, ws, args.seed)
        for m in ("enc", "off"):
            if mapped_library_inode(clusters[m]) != info["library_inode"]:
                log(f"warning: {m} no longer maps inode {info['library_inode']} (restarted?)")
        for s in sessions.values():
            s.close()
        sessions = {}
        time.sleep(0.5)
        sealed_after = {m: sealed_bytes(clusters[m]) for m in ("enc", "off")}
        if any(sealed_after["off"].values()):
            raise SystemExit(f"off sealed bytes {sealed_after['off']}; classes = '' should seal nothing")
        grown = {k: v - sealed_before["enc"].get(k, 0) for k, v in sealed_after["enc"].items()}
        klasses = {w.klass for w in ws if w.klass}
        if any(grown.get(k, 0) <= 0 for k in klasses):
            raise SystemExit(f"enc sealed nothing of some class during the timed rounds: {grown}")
        log("timed rounds: enc sealed " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in grown.items())
            + "; off sealed none")
        for m in MODES:
            errs = [ln for ln in clusters[m].log_text().splitlines() if re.search(r"\b(PANIC|FATAL|ERROR):", ln)]
            if errs:
                log(f"warning: {m} server log has {len(errs)} ERROR/FATAL/PANIC lines, first: {errs[0]}")
    finally:
        for s in sessions.values():
            s.close()
        for c in clusters.values():
            c.stop(quiet=True)
            if not args.keep and c.data.exists():
                shutil.rmtree(c.data)  # ~0.5 GB each; server.log stays

    elapsed = time.monotonic() - t_start
    write_csv(OUT_DIR / f"{stamp}-samples.csv", samples)
    write_csv(OUT_DIR / f"{stamp}-summary.csv", summary)
    header = "\n".join(f"- {k}: {v}" for k, v in info.items())
    ext = "\n".join(f"- {e}" for e in extensions) or "- none needed"
    report = (
        f"## pg_ephcrypt benchmark {info['date']}\n\n{header}\n- rounds: {rounds} "
        f"(noisy workloads extended by {args.extend} up to {max_rounds}; "
        f"{'quick' if args.quick else 'default'} sizes: {sizes.rows} rows per table, temp table {sizes.temp_rows} "
        f"rows, decoded transaction {sizes.decode_rows} rows, pgbench -s {sizes.pgbench_scale} "
        f"-T {sizes.pgbench_secs} -c 2 -j 2)\n"
        f"- sessions: one long-lived psql session per mode, warmed up by one untimed round; modes interleaved "
        f"statement by statement, order cycling through the 6 permutations\n"
        f"- bootstrap: {BOOTSTRAP} resamples, seed {args.seed}\n"
        f"- total run time: {elapsed:.0f} s\n\n"
        f"**Wall time** (psql `\\timing`; pgbench: TPS, higher is better). Ratios: median over the rounds of "
        f"the per-round paired ratio, [95 % bootstrap interval]. `off` does no extra work: its interval "
        f"must contain 1.00, else the row is too noisy to decide.\n\n{markdown(summary)}\n\n"
        f"**Backend CPU time** (utime + stime of the session's backend from /proc/<pid>/stat, "
        f"{1000 // CLK_TCK} ms ticks; parallel workers not included):\n\n{markdown(summary, 'cpu_')}\n\n"
        f"Verdicts (wall time):\n\n{verdict_lines(summary)}\n\n"
        f"Extensions:\n\n{ext}\n\n"
        f"Spread (wall time):\n\n{spread_markdown(summary)}\n"
    )
    (OUT_DIR / f"{stamp}-report.md").write_text(report)
    print(report)
    log(f"raw samples: {OUT_DIR / (stamp + '-samples.csv')}")
    log(f"summary:     {OUT_DIR / (stamp + '-summary.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
