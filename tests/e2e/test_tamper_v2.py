"""Format v2 against an attacker with write access to the data directory
(issue #11): live transient files of each kind are cut (to 0 bytes, to the
header page, to a block or group boundary) or replaced by another file of
the same backend, between two reads of the query that owns them. With
pg_ephcrypt the next read is an ERROR; the control cluster (plain
PostgreSQL) shows what the cut means without it: rows silently missing or
wrong.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cluster import Cluster, SqlError, _as_pg
from ondisk import covered_files

PAGE = 8192
GROUP_SPAN = 257 * PAGE


class Session:
    """A psql session driven statement by statement."""

    def __init__(self, c: Cluster):
        self.p = c.session()
        self.n = 0

    def run(self, sql: str, timeout: float = 120) -> tuple[list[str], str]:
        """Run `sql`; return its output lines and any ERROR text."""
        self.n += 1
        marker = f"__done_{self.n}__"
        self.p.stdin.write(f"{sql}\n\\echo {marker}\n")
        self.p.stdin.flush()
        lines = []
        deadline = time.time() + timeout
        while True:
            assert time.time() < deadline, f"timeout running {sql!r}"
            line = self.p.stdout.readline()
            assert line, f"psql exited: {self.p.stderr.read()}"
            line = line.rstrip("\n")
            if line == marker:
                break
            lines.append(line)
        return lines, ""

    def close(self) -> str:
        try:
            _, err = self.p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            err = ""
        return err


def backend_temp_files(c: Cluster, pid: int) -> list[Path]:
    return [f for f in covered_files(c.data) if f"pgsql_tmp{pid}." in str(f) and f.stat().st_size > 0]


def cut(path: Path, how: str) -> None:
    size = path.stat().st_size
    target = {
        "zero": 0,
        "header": PAGE,
        "group": GROUP_SPAN if size > GROUP_SPAN + PAGE else PAGE,
        "block": max(PAGE, (size - 1) // PAGE * PAGE - PAGE),
    }[how]
    subprocess.run(_as_pg(["truncate", "-s", str(target), str(path)]), check=True)


def pid_of(s: Session) -> int:
    lines, _ = s.run("SELECT pg_backend_pid();")
    return int(lines[-1])


def fetch_count(s: Session, sql: str) -> tuple[int | None, str]:
    """Run a FETCH/SELECT; (row count, '') or (None, error text)."""
    lines, _ = s.run(sql)
    # psql prints errors on stderr; ON_ERROR_STOP would end the session, so
    # this runner relies on psql's -v ON_ERROR_STOP=1 being overridden below.
    if lines and lines[-1].isdigit():
        return int(lines[-1]), ""
    return None, "\n".join(lines)


KINDS = ["tuplestore", "sort_tape", "hash_batch", "temp_relation"]
CUTS = ["zero", "header", "block", "group"]


def setup_kind(s: Session, kind: str) -> tuple[str, int]:
    """Create a live transient file of `kind` held by `s`; return the SQL
    that reads the rest of it (printing a row count or a MOVE tag) and the
    count a correct result has."""
    s.run("\\set ON_ERROR_STOP 0")
    s.run("\\set QUIET off")
    s.run("SET work_mem = '64kB'; SET temp_buffers = '800kB'; SET max_parallel_workers_per_gather = 0;")
    if kind == "tuplestore":
        s.run("DECLARE c CURSOR WITH HOLD FOR SELECT g, md5(g::text) AS m FROM generate_series(1, 60000) g;")
        return "MOVE ALL IN c;", 60000
    if kind == "sort_tape":
        s.run("BEGIN; DECLARE c CURSOR FOR SELECT g, md5(g::text) AS m FROM generate_series(1, 200000) g ORDER BY 2;")
        s.run("FETCH 1 FROM c;")
        return "MOVE ALL IN c;", 199999
    if kind == "hash_batch":
        s.run("CREATE TEMP TABLE IF NOT EXISTS hb AS SELECT g, md5(g::text) AS m FROM generate_series(1, 100000) g;")
        s.run("SET enable_mergejoin = off; SET enable_nestloop = off;")
        s.run("BEGIN; DECLARE c CURSOR FOR SELECT a.g, b.m FROM hb a JOIN hb b USING (g);")
        s.run("FETCH 1 FROM c;")
        return "MOVE ALL IN c;", 99999
    if kind == "temp_relation":
        s.run("CREATE TEMP TABLE tr AS SELECT g, md5(g::text) AS m FROM generate_series(1, 100000) g;")
        return "SELECT count(*) FROM tr;", 100000
    raise AssertionError(kind)


def count_in(lines: list[str]) -> int | None:
    """The row count a finishing statement printed (count(*) or MOVE n)."""
    for line in reversed(lines):
        parts = line.split()
        if len(parts) == 2 and parts[0] == "MOVE" and parts[1].isdigit():
            return int(parts[1])
        if line.strip().isdigit():
            return int(line.strip())
    return None


def files_of_kind(c: Cluster, s: Session, pid: int, kind: str) -> list[Path]:
    if kind != "temp_relation":
        return backend_temp_files(c, pid)
    lines, _ = s.run("SELECT pg_relation_filepath('tr');")
    return [c.data / lines[-1]]


@pytest.fixture(scope="module")
def clusters():
    out = {}
    for name, preload in (("tamper2_enc", True), ("tamper2_plain", False)):
        c = Cluster(name, preload=preload).init().start()
        out[preload] = c
    yield out
    for c in out.values():
        c.stop(quiet=True)


OUTCOMES: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("how", CUTS)
@pytest.mark.parametrize("kind", KINDS)
def test_cut_live_file_is_an_error_or_harmless(clusters, kind, how):
    """With pg_ephcrypt a cut live file gives an ERROR, or (when the cut
    removed only data the query had already consumed) the exact result;
    never a wrong count."""
    c = clusters[True]
    s = Session(c)
    try:
        pid = pid_of(s)
        finish, want = setup_kind(s, kind)
        files = files_of_kind(c, s, pid, kind)
        assert files, f"{kind}: no live file on disk"
        for f in files:
            cut(f, how)
        lines, _ = s.run(finish)
        err = s.close()
    finally:
        if s.p.poll() is None:
            s.p.kill()
    got = count_in(lines)
    if "ERROR" in err:
        assert "could not" in err or "Input/output" in err, err
        OUTCOMES[(kind, how)] = "error"
    else:
        assert got == want, f"{kind}/{how}: {got} rows instead of {want}, no ERROR ({lines[-3:]})"
        OUTCOMES[(kind, how)] = "exact"


def test_every_kind_cut_to_nothing_is_an_error():
    """The check above can fail: a file cut to 0 bytes or to its header page
    loses data the query still needs, for every kind."""
    for kind in KINDS:
        for how in ("zero", "header"):
            assert OUTCOMES.get((kind, how)) == "error", (kind, how, OUTCOMES)


def test_controls_show_plain_postgres_returns_rows_from_cut_files(clusters):
    """Plain PostgreSQL over a cut tuplestore and a cut temp relation:
    fewer rows and no error (what the ERROR above protects against)."""
    c = clusters[False]
    s = Session(c)
    s.run("\\set ON_ERROR_STOP 0")
    s.run("SET work_mem = '64kB'; SET temp_buffers = '800kB';")
    pid = pid_of(s)
    s.run("DECLARE c CURSOR WITH HOLD FOR SELECT g, md5(g::text) AS m FROM generate_series(1, 60000) g;")
    for f in backend_temp_files(c, pid):
        cut(f, "block")
    lines, _ = s.run("SELECT count(*) FROM (SELECT 1) x; FETCH ALL FROM c;")
    s.run("CLOSE c;")
    s.run("CREATE TEMP TABLE tr AS SELECT g, md5(g::text) AS m FROM generate_series(1, 100000) g;")
    rel = c.data / s.run("SELECT pg_relation_filepath('tr');")[0][-1]
    s.run("CHECKPOINT;")
    cut(rel, "group")
    lines2, _ = s.run("SELECT count(*) FROM tr;")
    err = s.close()
    fetched = len([l for l in lines if "\t" in l])
    assert 0 < fetched < 60000 or "ERROR" in err, (fetched, err)
    assert lines2 and lines2[-1].isdigit() and int(lines2[-1]) < 100000, (lines2, err)


def test_a_file_moved_under_another_name_does_not_authenticate(clusters):
    """Two WITH HOLD cursors of one backend: the second's tuplestore file is
    replaced by a copy of the first's (same epoch, same backend, another
    name). Reading the second cursor is an ERROR; plain PostgreSQL returns
    the first cursor's rows as the second's."""
    out = {}
    for preload, c in clusters.items():
        s = Session(c)
        s.run("\\set ON_ERROR_STOP 0")
        s.run("SET work_mem = '64kB';")
        pid = pid_of(s)
        s.run("DECLARE a CURSOR WITH HOLD FOR SELECT 'A-' || md5(g::text) FROM generate_series(1, 30000) g;")
        first = set(backend_temp_files(c, pid))
        s.run("DECLARE b CURSOR WITH HOLD FOR SELECT 'B-' || md5(g::text) FROM generate_series(1, 30000) g;")
        second = set(backend_temp_files(c, pid)) - first
        assert first and second
        src, dst = sorted(first)[0], sorted(second)[0]
        subprocess.run(_as_pg(["cp", str(src), str(dst)]), check=True)
        lines, _ = s.run("FETCH 5 FROM b;")
        out[preload] = (lines, s.close())
    enc_lines, enc_err = out[True]
    assert "ERROR" in enc_err and not any(l.startswith("A-") for l in enc_lines), (enc_lines, enc_err)
    plain_lines, _ = out[False]
    assert any(l.startswith("A-") for l in plain_lines), "control: plain PostgreSQL reads the copy"
