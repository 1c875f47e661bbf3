"""Version-specific behaviour (issue #12), on whichever server build the run
targets (PG_CONFIG): PostgreSQL 18's io_uring is refused where the build
links liburing, io_method = worker and sync keep every covered file sealed,
debug_io_direct = data (16+) works on sealed temporary relations, and status
reports the server's own version."""

from __future__ import annotations

import re
import subprocess

import pytest

from cluster import PG_BIN, Cluster, SqlError
from ondisk import Poller

MARKER = b"MAJORMARK-"


def server_version_num() -> int:
    """The server build's major * 10000 + minor, from `postgres --version`
    ("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)")."""
    out = subprocess.check_output([str(PG_BIN / "postgres"), "--version"], text=True)
    m = re.search(r"\(PostgreSQL\) (\d+)\.(\d+)", out)
    assert m, out
    return int(m.group(1)) * 10000 + int(m.group(2))


def links_liburing() -> bool:
    out = subprocess.run(["ldd", str(PG_BIN / "postgres")], capture_output=True, text=True).stdout
    return "liburing" in out


needs_18 = pytest.mark.skipif(server_version_num() < 180000, reason="io_method is new in PostgreSQL 18")
needs_uring = pytest.mark.skipif(not links_liburing(), reason="this build does not link liburing")
needs_16 = pytest.mark.skipif(server_version_num() < 160000, reason="debug_io_direct is new in PostgreSQL 16")

TEMP_WORKLOAD = """
SET temp_buffers = '800kB';
CREATE TEMP TABLE big AS SELECT g, 'MAJORMARK-' || md5(g::text) AS m FROM generate_series(1, 60000) g;
SELECT count(*), md5(string_agg(m, ',' ORDER BY g)) FROM big;
"""


def temp_workload_sealed_against_control(name: str, conf: dict) -> dict:
    """TEMP_WORKLOAD on a preloaded cluster and a plain control with `conf`:
    the temp relation reaches the disk in both, sealed (no marker, valid
    headers) with the extension, marker in clear without. Returns each
    run's first result line by `preload`."""
    results = {}
    for preload in (True, False):
        c = Cluster(f"{name}_{int(preload)}", preload=preload, conf=conf).init().start()
        try:
            # The session sleeps at the end so that the poller sees its files.
            with Poller(c.data, MARKER) as p:
                out = c.sql(TEMP_WORKLOAD + "SELECT pg_sleep(1);")
            results[preload] = out.splitlines()[0]
            rels = {f for f in p.result.files_with_data if "/t" in f}
            assert rels, "the temp relation reached the disk"
            if preload:
                assert not p.result.marker_hits, sorted(p.result.marker_hits)
                assert not p.result.bad_headers, sorted(p.result.bad_headers)
            else:
                assert p.result.marker_hits, "control: plain PostgreSQL writes the marker"
        finally:
            c.stop()
    return results


def test_status_reports_the_running_server_version():
    c = Cluster("major_version").init().start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        num = int(c.sql("SELECT server_version_num FROM pg_ephcrypt_status()"))
        assert num == int(c.sql("SHOW server_version_num"))
        assert num // 10000 == server_version_num() // 10000
        doc_num = c.sql("SELECT (pg_ephcrypt_attest('\\x0011223344556677'::bytea)->>'server_version_num')::int")
        assert int(doc_num) == num
    finally:
        c.stop()


@needs_18
@needs_uring
def test_io_uring_is_refused_with_a_hint():
    c = Cluster("major_uring", conf={"io_method": "io_uring"}).init()
    with pytest.raises(subprocess.CalledProcessError):
        c.start()
    log = c.log_text()
    assert "FATAL" in log and "io_uring" in log, log[-2000:]
    assert "HINT" in log, log[-2000:]
    # Control: the same build starts with io_method = worker.
    c.append_conf({"io_method": "worker"})
    c.start()
    c.stop()


@needs_18
@needs_uring
def test_io_uring_under_warn_starts_without_encryption():
    c = Cluster("major_uring_warn", conf={"io_method": "io_uring", "pg_ephcrypt.on_unsupported": "warn"}).init()
    c.start()
    try:
        assert "WARNING" in c.log_text() and "io_uring" in c.log_text()
        c.sql("CREATE EXTENSION pg_ephcrypt")
        assert c.sql("SELECT classes FROM pg_ephcrypt_status()") == "{}"
        assert int(c.sql("SELECT refused_configurations FROM pg_ephcrypt_status()")) >= 1
    finally:
        c.stop()


@needs_18
@pytest.mark.parametrize("method", ["worker", "sync"])
def test_io_methods_keep_temp_relations_sealed(method):
    results = temp_workload_sealed_against_control(f"major_io_{method}", {"io_method": method})
    assert results[True] == results[False]


@needs_16
def test_debug_io_direct_data_on_sealed_temp_relations():
    """debug_io_direct = data makes PostgreSQL open relation files O_DIRECT;
    for covered files the shim strips it (docs/DECISIONS.md #9): the results
    equal a plain run and the temp relation is sealed."""
    results = temp_workload_sealed_against_control("major_direct", {"debug_io_direct": "data"})
    assert results[True] == results[False]
    assert results[True].split("\t")[0] == "60000"
