"""Temp files and temporary tables are ciphertext on disk, and results are
unchanged: each workload runs on a preloaded cluster and on a control
cluster without the extension, while a poller reads the raw bytes of every
covered file."""

from __future__ import annotations

import pytest

from cluster import Cluster, SqlError
from ondisk import MAGIC, Poller, covered_files, tamper_blocks

MARKER = b"MARKER-"

COMMON = {
    "work_mem": "'64kB'",
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
}

SETUP = """
CREATE TABLE t1 AS SELECT g, 'MARKER-' || md5(g::text) AS s FROM generate_series(1, 150000) g;
CREATE TABLE t2 AS SELECT g, 'MARKER-' || md5((g * 7)::text) AS s FROM generate_series(1, 150000) g;
ANALYZE t1; ANALYZE t2;
"""

PARALLEL = (
    "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
    "SET min_parallel_table_scan_size = 0; SET enable_parallel_hash = on;"
    "SET enable_mergejoin = off; SET enable_nestloop = off;"
)

# name -> (settings, query whose rows are compared through an ordered digest)
WORKLOADS = {
    "external_sort": ("", "SELECT g, s FROM t1 ORDER BY s DESC"),
    "hash_join_many_batches": (
        "SET enable_mergejoin = off; SET enable_nestloop = off;",
        "SELECT t1.g, t2.s FROM t1 JOIN t2 ON t1.s = t2.s",
    ),
    "hash_aggregate_spill": (
        "SET enable_sort = off;",
        "SELECT s, count(*) FROM (SELECT s FROM t1 UNION ALL SELECT s FROM t2) u GROUP BY s",
    ),
    "materialized_cte": (
        "SET enable_hashjoin = off; SET enable_nestloop = off;",
        "WITH c AS MATERIALIZED (SELECT g, s FROM t1) SELECT a.g, b.s FROM c a JOIN c b ON a.g = b.g + 1",
    ),
    "window_spill": ("", "SELECT g, s, count(*) OVER () AS n, lag(s) OVER (ORDER BY g) AS prev FROM t1"),
    "recursive_cte": (
        "",
        "WITH RECURSIVE r(n, s) AS (SELECT 1, 'MARKER-' || md5('1') UNION ALL "
        "SELECT n + 1, 'MARKER-' || md5((n + 1)::text) FROM r WHERE n < 50000) "
        "SELECT a.n, b.s FROM r a JOIN r b ON a.n = b.n",
    ),
    "parallel_hash_join": (PARALLEL, "SELECT t1.g, t2.s FROM t1 JOIN t2 ON t1.s = t2.s"),
}

CURSORS = {
    "scroll_cursor_fetch_backward": """
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT g, s FROM t1 ORDER BY s;
FETCH 3 FROM c;
FETCH LAST FROM c;
FETCH BACKWARD 3 FROM c;
MOVE ABSOLUTE 100000 FROM c;
FETCH BACKWARD 3 FROM c;
FETCH ABSOLUTE 7 FROM c;
COMMIT;
""",
    "with_hold_cursor": """
BEGIN;
DECLARE h CURSOR WITH HOLD FOR SELECT g, s FROM t1 ORDER BY g DESC;
COMMIT;
FETCH 3 FROM h;
MOVE 100000 FROM h;
FETCH 3 FROM h;
CLOSE h;
""",
}

TEMP_TABLE = """
SET temp_buffers = '800kB';
CREATE TEMP TABLE tt AS SELECT g, 'MARKER-' || md5(g::text) AS s FROM generate_series(1, 120000) g;
CREATE INDEX tt_s_idx ON tt (s);
UPDATE tt SET g = g + 1 WHERE g % 3 = 0;
DELETE FROM tt WHERE g % 10 = 0;
VACUUM tt;
CLUSTER tt USING tt_s_idx;
SELECT count(*), sum(g), md5(string_agg(s, '|' ORDER BY s)) FROM tt;
SET enable_seqscan = off;
SELECT g FROM tt WHERE s = 'MARKER-' || md5('12345');
RESET enable_seqscan;
CREATE TEMP TABLE tt2 AS SELECT * FROM tt;
TRUNCATE tt2;
INSERT INTO tt2 SELECT * FROM tt WHERE g < 5000;
SELECT count(*), sum(g) FROM tt2;
\\echo READY
"""


def digest(query: str) -> str:
    return f"SELECT count(*), md5(string_agg(q::text, '|' ORDER BY q::text)) FROM ({query}) q"


@pytest.fixture(scope="module")
def pair():
    enc = Cluster("tf_enc", preload=True, conf=COMMON).init().start()
    ctl = Cluster("tf_ctl", preload=False, conf=COMMON).init().start()
    enc.sql("CREATE EXTENSION pg_ephcrypt")
    for c in (enc, ctl):
        c.sql(SETUP)
    yield enc, ctl
    enc.stop()
    ctl.stop()


def run_polled(c: Cluster, sql: str):
    with Poller(c.data, MARKER) as p:
        out = c.sql(sql)
    return out, p.result


def assert_encrypted(res, name):
    assert res.files_with_data, f"{name}: no covered file with data was seen; the workload did not spill"
    assert not res.marker_hits, f"{name}: plaintext marker on disk in {sorted(res.marker_hits)}"
    assert not res.bad_headers, f"{name}: files without the format header: {sorted(res.bad_headers)}"


def assert_control_has_plaintext(res, name):
    # The scanner can fail: without the extension it does find markers.
    assert res.marker_hits, f"{name}: scanner found no marker on the control cluster"


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_spilling_workload(pair, name):
    enc, ctl = pair
    settings, query = WORKLOADS[name]
    sql = settings + digest(query)
    out_enc, res_enc = run_polled(enc, sql)
    out_ctl, res_ctl = run_polled(ctl, sql)
    assert out_enc == out_ctl
    assert int(out_enc.split("\t")[0]) > 0
    assert_encrypted(res_enc, name)
    assert_control_has_plaintext(res_ctl, name)
    if name.startswith("parallel"):
        assert any(".fileset" in f for f in res_enc.files_seen), "no shared file set was seen"


@pytest.mark.parametrize("name", sorted(CURSORS))
def test_cursor_workload(pair, name):
    enc, ctl = pair
    out_enc, res_enc = run_polled(enc, CURSORS[name])
    out_ctl, res_ctl = run_polled(ctl, CURSORS[name])
    assert out_enc == out_ctl
    assert out_enc.count("MARKER-") >= 6
    assert_encrypted(res_enc, name)
    assert_control_has_plaintext(res_ctl, name)


def test_parallel_create_index(pair):
    enc, ctl = pair
    sql = (
        "SET max_parallel_maintenance_workers = 2; SET maintenance_work_mem = '1MB';"
        "SET min_parallel_table_scan_size = 0;"
        "CREATE INDEX t1_s_par ON t1 (s);"
        "SET enable_seqscan = off; SET enable_bitmapscan = off;"
        "SELECT count(*), min(s), max(g) FROM t1 WHERE s > 'MARKER-8';"
        "DROP INDEX t1_s_par;"
    )
    out_enc, res_enc = run_polled(enc, sql)
    out_ctl, res_ctl = run_polled(ctl, sql)
    assert out_enc == out_ctl
    assert_encrypted(res_enc, "parallel_create_index")
    assert_control_has_plaintext(res_ctl, "parallel_create_index")


def _run_session_until_ready(c: Cluster, script: str):
    s = c.session()
    s.stdin.write(script)
    s.stdin.flush()
    lines = []
    while True:
        line = s.stdout.readline()
        if not line:
            raise AssertionError(f"session ended early: {s.stderr.read()}")
        if line.strip() == "READY":
            break
        lines.append(line.rstrip("\n"))
    return s, lines


def _finish_session(s, sql: str):
    """Run a last statement in an open session, close it; (stdout lines, stderr)."""
    s.stdin.write(sql + "\n\\echo DONE\n")
    s.stdin.flush()
    out = []
    while True:
        line = s.stdout.readline()
        if not line or line.strip() == "DONE":
            break
        out.append(line.strip())
    s.stdin.close()
    err = s.stderr.read()
    s.wait(timeout=60)
    return out, err


def test_temp_table_larger_than_temp_buffers(pair):
    enc, ctl = pair
    results = {}
    for c in (enc, ctl):
        with Poller(c.data, MARKER) as p:
            s, lines = _run_session_until_ready(c, TEMP_TABLE)
            # The session is still open: its temp relation files exist now.
            files = [f for f in covered_files(c.data) if f.name.startswith("t")]
        s.stdin.close()
        s.wait(timeout=60)
        assert files, "temp relation files exist while the session lives"
        results[c] = (lines, p.result)
    (lines_enc, res_enc), (lines_ctl, res_ctl) = results[enc], results[ctl]
    assert lines_enc == lines_ctl
    assert len(lines_enc) == 3
    assert_encrypted(res_enc, "temp_table")
    assert_control_has_plaintext(res_ctl, "temp_table")
    assert any(f.split("/")[-1].startswith("t") for f in res_enc.files_with_data)


def test_tampered_temp_relation_raises_error(pair):
    enc, _ = pair
    script = """
SET temp_buffers = '800kB';
CREATE TEMP TABLE victim AS SELECT g, 'MARKER-' || md5(g::text) AS s FROM generate_series(1, 100000) g;
SELECT pg_relation_filepath('victim');
\\echo READY
"""
    s, lines = _run_session_until_ready(enc, script)
    try:
        rel = enc.data / lines[-1].strip()
        assert rel.exists()
        assert rel.read_bytes()[:8] == MAGIC
        # Corrupt early blocks: no longer in the 800kB of local buffers.
        assert tamper_blocks(rel, every=3) > 10
        out, err = _finish_session(s, "SELECT count(*) FROM victim;")
        assert "could not read block" in err, err
        assert "100000" not in out, "rows came back from corrupted data"
    finally:
        if s.poll() is None:
            s.kill()


def test_tampered_temp_file_raises_error(pair):
    enc, _ = pair
    script = """
BEGIN;
DECLARE c CURSOR FOR SELECT g, s FROM t1 ORDER BY s;
FETCH 1 FROM c;
\\echo READY
"""
    s, lines = _run_session_until_ready(enc, script)
    try:
        files = [f for f in covered_files(enc.data) if "pgsql_tmp" in str(f) and f.stat().st_size > 64]
        assert files, "the sort holds temp files"
        changed = sum(tamper_blocks(f, every=1) for f in files)
        assert changed > 0
        out, err = _finish_session(s, "FETCH ALL FROM c;")
        assert "could not read" in err or "could not read from" in err, err
        assert len(out) < 1000, "rows came back from corrupted data"
    finally:
        if s.poll() is None:
            s.kill()


def test_classes_off_passes_through(tmp_path_factory):
    # pg_ephcrypt.classes = none: the same build, every call passed through.
    c = Cluster("tf_off", conf={**COMMON, "pg_ephcrypt.classes": "''"}).init().start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        assert c.sql("SELECT classes FROM pg_ephcrypt_status()") == "{}"
        c.sql(SETUP)
        out, res = run_polled(c, digest(WORKLOADS["external_sort"][1]))
        assert res.marker_hits, "with every class off, temp files are plaintext"
    finally:
        c.stop()


def test_invalid_classes_setting_refuses_start():
    c = Cluster("tf_bad", conf={"pg_ephcrypt.classes": "'temp_files,bogus'"}).init()
    with pytest.raises(Exception):
        c.start()
    assert "pg_ephcrypt.classes" in c.log_text()
    c.stop(quiet=True)


def test_alter_system_rejects_an_invalid_classes_setting():
    """ALTER SYSTEM validates pg_ephcrypt.classes (22023, a detail naming the
    class, a hint), so a typo is never persisted for the next start to
    refuse. Control: a valid list is written, and the server restarts with
    it."""
    c = Cluster("tf_alter").init().start()
    try:
        auto = c.data / "postgresql.auto.conf"
        with pytest.raises(SqlError) as e:
            c.sql("ALTER SYSTEM SET pg_ephcrypt.classes = 'temp_files,bogus'")
        msg = str(e.value)
        assert 'invalid value for parameter "pg_ephcrypt.classes"' in msg, msg
        assert "bogus" in msg and "HINT:" in msg and "temp_relations" in msg, msg
        assert "bogus" not in auto.read_text()
        c.sql("ALTER SYSTEM SET pg_ephcrypt.classes = 'temp_files, logical_spill'")  # control
        assert "temp_files, logical_spill" in auto.read_text()
        c.stop()
        c.start()
        assert c.sql("SHOW pg_ephcrypt.classes") == "temp_files, logical_spill"
    finally:
        c.stop(quiet=True)
