"""docs/metrics/postgres_exporter.yaml: every query runs against a cluster
with the extension, as a pg_monitor member (the exporter's role), and
returns exactly the columns it names, with numbers where the exporter
expects metrics; the last-scan summary follows the scans."""

import csv
import io
import json
import subprocess

import pytest

from cluster import PG_BIN, ROOT, Cluster, SqlError, _as_pg
from tools import python_with

QUERIES = ROOT / "docs" / "metrics" / "postgres_exporter.yaml"


def load_queries() -> dict:
    exe = python_with("yaml")
    if exe is None:
        pytest.fail("needs a python3 with PyYAML (apt-get install python3-yaml; scripts/setup.sh installs it)")
    out = subprocess.run([exe, "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                          str(QUERIES)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run_as(c: Cluster, role: str, query: str) -> list[dict]:
    """Rows as dicts (header included) of `query` run as `role`."""
    cmd = _as_pg([str(PG_BIN / "psql"), "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", "-h", str(c.dir),
                  "-p", str(c.port), "-U", role, "-d", "postgres"])
    r = subprocess.run(cmd, input=query, text=True, capture_output=True, timeout=120)
    if r.returncode != 0:
        raise SqlError(r.stderr)
    reader = csv.reader(io.StringIO(r.stdout))
    rows = list(reader)
    header, body = rows[0], rows[1:]
    return [dict(zip(header, row)) | {"__columns__": header} for row in body] or [{"__columns__": header}]


def metric_names(spec: dict) -> list[tuple[str, str]]:
    return [(name, m["usage"]) for item in spec["metrics"] for name, m in item.items()]


def test_every_query_returns_the_columns_it_names():
    spec = load_queries()
    assert set(spec) == {"pg_ephcrypt_status", "pg_ephcrypt_stats", "pg_ephcrypt_last_scan", "pg_ephcrypt_scan",
                         "pg_ephcrypt_anchor"}
    c = Cluster("metrics").init().start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt; CREATE ROLE exporter LOGIN IN ROLE pg_monitor")
        # A spill, so that the counters move.
        c.sql("SET work_mem = '64kB'; SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 30000) g "
              "ORDER BY 1) s")
        for ns, q in spec.items():
            assert q.get("master") is True, ns
            names = metric_names(q)
            for name, usage in names:
                assert usage in ("LABEL", "GAUGE", "COUNTER"), (ns, name, usage)
            for item in q["metrics"]:
                for name, m in item.items():
                    assert m.get("description"), (ns, name)
            rows = run_as(c, "exporter", q["query"])
            assert rows[0]["__columns__"] == [n for n, _ in names], ns
            # One row per class: temp_files, temp_relations, logical_spill, wal.
            want_rows = 4 if ns == "pg_ephcrypt_stats" else 1
            body = [r for r in rows if len(r) > 1]
            assert len(body) == want_rows, (ns, rows)
            for r in body:
                for name, usage in names:
                    if usage != "LABEL" and r[name] != "":
                        float(r[name])  # a number the exporter can parse
        # Values a dashboard relies on.
        st = run_as(c, "exporter", spec["pg_ephcrypt_status"]["query"])[0]
        assert st["restarts"] == "0" and st["refused_configurations"] == "0"
        assert st["classes_encrypted"] == "3" and int(st["interposed_symbols"]) > 0
        assert 0 <= float(st["epoch_age_seconds"]) < 3600
        stats = {r["class"]: r for r in run_as(c, "exporter", spec["pg_ephcrypt_stats"]["query"])}
        assert int(stats["temp_files"]["bytes_sealed"]) > 0 and stats["temp_files"]["auth_failures"] == "0"
        assert run_as(c, "exporter", spec["pg_ephcrypt_anchor"]["query"])[0]["anchored"] == "0"
        # Control: a role outside pg_monitor may not read them.
        c.sql("CREATE ROLE outsider LOGIN")
        with pytest.raises(SqlError):
            run_as(c, "outsider", spec["pg_ephcrypt_status"]["query"])
    finally:
        c.stop()


def test_last_scan_summary_follows_the_scans():
    spec = load_queries()
    last = spec["pg_ephcrypt_last_scan"]["query"]
    c = Cluster("metrics_scan").init().start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        r = run_as(c, "postgres", last)[0]
        assert r["has_scanned"] == "0" and r["plaintext"] == "" and r["scans"] == "0", r
        planted = c.data / "base" / "pgsql_tmp" / "pgsql_tmp424242.0"
        planted.parent.mkdir(exist_ok=True)
        planted.write_bytes(b"TENANT ROW in the clear")
        # The exporter's own scan query refreshes the summary.
        scan = run_as(c, "postgres", spec["pg_ephcrypt_scan"]["query"])[0]
        assert scan["plaintext"] == "1"
        r = run_as(c, "postgres", last)[0]
        assert (r["has_scanned"], r["plaintext"], r["files"], r["scans"]) == ("1", "1", "1", "1"), r
        assert 0 <= float(r["age_seconds"]) < 60
        # An attestation scans too; control: the file removed, 0 again.
        planted.unlink()
        c.sql("SELECT pg_ephcrypt_attest('\\x0011223344556677'::bytea)")
        r = run_as(c, "postgres", last)[0]
        assert (r["plaintext"], r["files"], r["scans"]) == ("0", "0", "2"), r
    finally:
        c.stop()
