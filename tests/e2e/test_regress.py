"""SQL regression tests (tests/regress/sql, expected/) run by pg_regress
against a preloaded cluster."""

import subprocess
from pathlib import Path

from cluster import E2E, PG_BIN, PG_CONFIG, ROOT, Cluster

REGRESS_DIR = ROOT / "tests" / "regress"


def pg_regress() -> Path:
    pgxs = Path(subprocess.check_output([PG_CONFIG, "--pgxs"], text=True).strip())
    return pgxs.parent.parent / "test" / "regress" / "pg_regress"


def test_sql_regression_suite():
    c = Cluster("regress").init().start()
    out = E2E / "regress-out"
    out.mkdir(parents=True, exist_ok=True)
    try:
        c.sql("CREATE DATABASE ephcrypt_regress")
        tests = sorted(p.stem for p in (REGRESS_DIR / "sql").glob("*.sql"))
        assert tests
        r = subprocess.run(
            # --bindir: the wheels' pg_regress would look for psql in their
            # build prefix (/opt/postgresql/bin) and exit 127.
            [str(pg_regress()), "--use-existing", f"--bindir={PG_BIN}", f"--host={c.dir}", f"--port={c.port}",
             "--user=postgres",
             f"--inputdir={REGRESS_DIR}", f"--outputdir={out}", "--dbname=ephcrypt_regress", *tests],
            capture_output=True, text=True,
        )
        diffs = out / "regression.diffs"
        detail = diffs.read_text() if diffs.exists() else ""
        assert r.returncode == 0, r.stdout + r.stderr + detail
    finally:
        c.stop()
