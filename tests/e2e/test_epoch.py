"""Epoch key life cycle, seen from outside a real server."""

import subprocess
import time

import pytest

from cluster import Cluster, SqlError, crash_a_backend


@pytest.fixture(scope="module")
def preloaded():
    c = Cluster("epoch").init().start()
    c.sql("CREATE EXTENSION pg_ephcrypt")
    yield c
    c.stop()


def status(c: Cluster) -> dict:
    rows = c.rows("SELECT epoch_id, fingerprint, memory_protection, postmaster_pid, restarts FROM pg_ephcrypt_status()")
    assert len(rows) == 1
    epoch_id, fingerprint, protection, pm_pid, restarts = rows[0]
    return {"epoch_id": epoch_id, "fingerprint": fingerprint, "protection": protection,
            "postmaster_pid": int(pm_pid), "restarts": int(restarts)}


def test_two_backends_see_one_epoch(preloaded):
    # Two concurrent sessions (two backend processes) at once.
    a = preloaded.session()
    b = preloaded.session()
    out_a, _ = a.communicate("SELECT pg_backend_pid(), fingerprint, epoch_id FROM pg_ephcrypt_status(); SELECT pg_sleep(0.5);")
    out_b, _ = b.communicate("SELECT pg_backend_pid(), fingerprint, epoch_id FROM pg_ephcrypt_status();")
    row_a = out_a.splitlines()[0].split("\t")
    row_b = out_b.splitlines()[0].split("\t")
    assert row_a[0] != row_b[0], "two different backends"
    assert row_a[1:] == row_b[1:]
    assert len(row_a[1]) == 64


def test_status_reports_protection_and_postmaster(preloaded):
    s = status(preloaded)
    assert s["protection"] in ("memfd_secret", "mlock+dontdump")
    assert s["postmaster_pid"] == preloaded.postmaster_pid()
    assert len(s["epoch_id"]) == 32 and s["epoch_id"] != "0" * 32


def test_backend_crash_rotates_the_key(preloaded):
    before = status(preloaded)
    crash_a_backend(preloaded)
    # The postmaster kills every child, re-initializes shared memory, and
    # must rotate the key there.
    time.sleep(1)
    preloaded.wait_ready()
    after = status(preloaded)
    assert after["postmaster_pid"] == before["postmaster_pid"], "same postmaster (crash-restart, not a new server)"
    assert after["restarts"] == before["restarts"] + 1
    assert after["epoch_id"] != before["epoch_id"]
    assert after["fingerprint"] != before["fingerprint"]
    assert "terminated by signal 9" in preloaded.log_text()


def test_clean_restart_creates_a_new_epoch(preloaded):
    before = status(preloaded)
    preloaded.stop()
    preloaded.start()
    after = status(preloaded)
    assert after["epoch_id"] != before["epoch_id"]
    assert after["fingerprint"] != before["fingerprint"]
    assert after["restarts"] == 0


def test_not_preloaded_refuses_create_extension():
    c = Cluster("no_preload", preload=False).init().start()
    try:
        # A plain LOAD is harmless: no key, no hooks, no error.
        c.sql("LOAD 'pg_ephcrypt'; SELECT 1")
        with pytest.raises(SqlError) as err:
            c.sql("CREATE EXTENSION pg_ephcrypt")
        assert err.value.sqlstate == "55000", err.value.stderr
        assert "shared_preload_libraries" in err.value.stderr
        assert "HINT" in err.value.stderr
        # Nothing was installed.
        assert c.sql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_ephcrypt'") == "0"
        # The server is still healthy.
        assert c.sql("SELECT 41 + 1") == "42"
    finally:
        c.stop()


def test_key_status_functions_need_privileges(preloaded):
    preloaded.sql("DROP ROLE IF EXISTS plain_user; CREATE ROLE plain_user LOGIN")
    with pytest.raises(SqlError) as err:
        preloaded.sql("SET ROLE plain_user; SELECT * FROM pg_ephcrypt_status()")
    assert err.value.sqlstate == "42501", err.value.stderr
    preloaded.sql("GRANT pg_monitor TO plain_user")
    out = preloaded.sql("SET ROLE plain_user; SELECT count(*) FROM pg_ephcrypt_status()")
    assert out == "1"


def test_logger_and_clean_shutdown_with_logging_collector():
    # The logger detaches shared memory, and the postmaster unmaps it on its
    # way out: neither may be touched by pg_ephcrypt (a prototype crashed
    # the logger in a loop and the postmaster at shutdown that way).
    c = Cluster("logger", conf={"logging_collector": "on", "log_directory": "'log'"}).init().start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        assert len(c.rows("SELECT * FROM pg_ephcrypt_status()")) == 1
        c.sql("SELECT count(*) FROM generate_series(1, 100000) g")
    finally:
        c.stop()  # check=True: pg_ctl must report a clean stop
    assert not (c.data / "postmaster.pid").exists(), "stale postmaster.pid after shutdown"
    logs = "".join(p.read_text(errors="replace") for p in (c.data / "log").glob("*"))
    assert "database system is shut down" in logs
    assert "terminated by signal" not in logs
    assert "was terminated" not in logs


def test_extension_updates_from_0_1_0():
    """ALTER EXTENSION pg_ephcrypt UPDATE from the 0.1.0 install script
    (sql/released/) to the current version; control: no path to a version
    that does not exist."""
    c = Cluster("upgrade").init().start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt VERSION '0.1.0'")
        assert c.sql("SELECT extversion FROM pg_extension WHERE extname = 'pg_ephcrypt'") == "0.1.0"
        c.sql("ALTER EXTENSION pg_ephcrypt UPDATE")
        assert c.sql("SELECT extversion FROM pg_extension WHERE extname = 'pg_ephcrypt'") == "0.2.0"
        assert c.sql("SELECT version FROM pg_ephcrypt_status()") == "0.2.0"
        # The updated status has the 0.2.0 columns, and its grants.
        assert c.sql("SELECT server_version_num > 0 FROM pg_ephcrypt_status()") == "t"
        assert c.sql("SELECT memory_hygiene FROM pg_ephcrypt_status()") == "dontdump"
        assert c.sql("SELECT has_function_privilege('pg_monitor', 'pg_ephcrypt_status()', 'EXECUTE')") == "t"
        assert c.sql("SELECT has_function_privilege('public', 'pg_ephcrypt_status()', 'EXECUTE')") == "f"
        assert int(c.sql("SELECT count(*) FROM pg_ephcrypt_stats")) == 4  # wal is a class (off by default)
        # The objects added in 0.2.0, with the grants of a fresh install.
        assert c.sql("SELECT anchored FROM pg_ephcrypt_anchor_status()") == "f"
        assert c.sql("SELECT scans FROM pg_ephcrypt_last_scan()") == "0"
        acl = ("SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), "
               "p.prosrc, p.provolatile, p.proparallel, p.proisstrict, p.proacl::text FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid "
               "JOIN pg_extension e ON e.oid = d.refobjid WHERE e.extname = 'pg_ephcrypt' ORDER BY 1")
        upgraded = c.rows(acl)
        c.sql("DROP EXTENSION pg_ephcrypt; CREATE EXTENSION pg_ephcrypt")
        assert c.rows(acl) == upgraded, "the upgrade gives the same functions and grants as a fresh install"
        with pytest.raises(SqlError) as err:
            c.sql("ALTER EXTENSION pg_ephcrypt UPDATE TO '9.9.9'")
        assert err.value.sqlstate == "22023", err.value.stderr
    finally:
        c.stop()
