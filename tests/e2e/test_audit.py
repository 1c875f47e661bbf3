"""ephcrypt-audit on copies (cp -a) of a running cluster's data directory:
while spills and a temporary table are held open, in the default tablespace
and in one outside the data directory; with a planted plaintext file and a
planted FIFO; a clean copy; and a plain-PostgreSQL control whose held spill
files the audit must report as plaintext."""

import os
import shutil

from cluster import Cluster, PG_USER
from tools import audit, copy_tree, copy_volume, hold_spill, release


def _tablespace(c: Cluster, name: str) -> str:
    loc = c.dir / name
    loc.mkdir()
    shutil.chown(loc, PG_USER)
    c.sql(f"CREATE TABLESPACE {name} LOCATION '{loc}'")
    return c.sql(f"SELECT oid FROM pg_tablespace WHERE spcname = '{name}'")


def _by_path(report: dict) -> dict:
    return {e["path"]: e for e in report["entries"]}


def test_copy_of_a_running_cluster_holding_spills():
    c = Cluster("audit").init()
    c.append_conf({"temp_buffers": "'800kB'"})
    c.start()
    held = []
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        ts_oid = _tablespace(c, "ts_audit")
        epoch = c.sql("SELECT epoch_id FROM pg_ephcrypt_status()")
        # A sort spilling into base/pgsql_tmp, and one spilling into the
        # tablespace together with a temporary table larger than
        # temp_buffers (temporary relation files).
        held.append(hold_spill(c))
        held.append(hold_spill(c, "SET temp_tablespaces = 'ts_audit';\n"
                                  "CREATE TEMP TABLE big AS SELECT g, repeat('x', 300) AS pad "
                                  "FROM generate_series(1, 20000) g;"))
        live = c.rows("SELECT path, class, status FROM pg_ephcrypt_scan()")
        assert {r[2] for r in live} <= {"encrypted_current", "empty"}, live
        assert {r[1] for r in live} >= {"temp_files", "temp_relations"}, live

        # 1. cp -a of the data directory alone: the tablespace link names the
        #    original location, outside the copy: not followed, a finding.
        copy = c.dir / "copy"
        copy_tree(c.data, copy)
        rc, rep, err = audit(copy)
        assert rc == 1, err
        assert rep["tablespaces"] == [
            {"link": f"pg_tblspc/{ts_oid}", "target": str(c.dir / "ts_audit"), "audited_at": None}]
        assert rep["findings"] == 1 and rep["summary"]["tablespaces_not_audited"] == 1
        base = [e for e in rep["entries"] if e["path"].startswith("base/")]
        assert base and all(e["status"] in ("sealed", "empty") for e in base), base
        assert any(e["status"] == "sealed" and e["class"] == "temp_files" for e in base), base

        # 2. A copy of the volume (data directory and tablespace at their
        #    original paths below a root): everything audited, all sealed
        #    under the live epoch, the same files as the live scan.
        snap = copy_volume(c.dir / "snap", c.data, c.dir / "ts_audit")
        snap_data = snap / str(c.data).lstrip("/")
        rc, rep, err = audit(snap_data, "--root", str(snap))
        assert rc == 0, (err, rep)
        assert rep["result"] == "clean" and rep["findings"] == 0
        assert rep["tablespaces"][0]["audited_at"] == str(snap / str(c.dir / "ts_audit").lstrip("/"))
        entries = rep["entries"]
        assert {e["status"] for e in entries} <= {"sealed", "empty"}, entries
        sealed = [e for e in entries if e["status"] == "sealed"]
        assert {e["epoch_id"] for e in sealed} == {epoch}
        assert list(rep["epochs"]) == [epoch]
        in_ts = [e for e in sealed if e["path"].startswith(f"pg_tblspc/{ts_oid}/PG_")]
        assert {e["class"] for e in in_ts} == {"temp_files", "temp_relations"}, in_ts
        names = lambda rows: sorted(os.path.basename(p) for p in rows)  # noqa: E731
        live_now = c.rows("SELECT path FROM pg_ephcrypt_scan() WHERE status = 'encrypted_current'")
        assert names(e["path"] for e in sealed) == names(r[0] for r in live_now)
        assert rep["system_identifier"] == c.sql("SELECT system_identifier FROM pg_control_system()")

        # 3. A planted plaintext file at a temp-file name: finding (control:
        #    removed again, clean).
        planted = snap_data / "base" / "pgsql_tmp" / "pgsql_tmp99999.0"
        planted.write_bytes(b"TENANT-SECRET in the clear\n")
        rc, rep, _ = audit(snap_data, "--root", str(snap))
        assert rc == 1
        e = _by_path(rep)["base/pgsql_tmp/pgsql_tmp99999.0"]
        assert (e["status"], e["class"], e["size"]) == ("plaintext", "temp_files", 27)
        planted.unlink()
        assert audit(snap_data, "--root", str(snap))[0] == 0

        # 4. A planted FIFO at a spill-file name: 'unexpected', and the audit
        #    does not hang on it (control: removed, clean).
        slot = snap_data / "pg_replslot" / "planted"
        slot.mkdir()
        fifo = slot / "xid-740-lsn-0-1000000.spill"
        os.mkfifo(fifo)
        rc, rep, _ = audit(snap_data, "--root", str(snap))
        assert rc == 1
        e = _by_path(rep)["pg_replslot/planted/xid-740-lsn-0-1000000.spill"]
        assert (e["status"], e["kind"], e["class"]) == ("unexpected", "fifo", "logical_spill")
        fifo.unlink()
        assert audit(snap_data, "--root", str(snap))[0] == 0
    finally:
        for s in held:
            release(s)
        c.stop()

    # 5. A clean copy: the sessions ended (their files are gone), the server
    #    stopped. A copy of the data directory alone still cannot vouch for
    #    the tablespace outside it (one finding, nothing else); the volume
    #    copy is clean and empty.
    clean = c.dir / "clean"
    copy_tree(c.data, clean)
    rc, rep, err = audit(clean)
    assert rc == 1 and rep["findings"] == 1 and rep["entries"] == [], rep
    snap2 = copy_volume(c.dir / "snap2", c.data, c.dir / "ts_audit")
    rc, rep, err = audit(snap2 / str(c.data).lstrip("/"), "--root", str(snap2))
    assert rc == 0, (err, rep)
    assert rep["entries"] == [] and rep["result"] == "clean"


def test_control_plain_postgresql_copy_shows_plaintext():
    """Without the extension the same held spill is plaintext in the copy:
    the audit's 'sealed' above is not an artefact of how it reads."""
    c = Cluster("audit_plain", preload=False).init().start()
    held = None
    try:
        held = hold_spill(c)
        copy = c.dir / "copy"
        copy_tree(c.data, copy)
        rc, rep, err = audit(copy)
        assert rc == 1, err
        plain = [e for e in rep["entries"] if e["status"] == "plaintext"]
        assert plain and all(e["class"] == "temp_files" for e in plain), rep["entries"]
        assert rep["summary"]["sealed"] == 0
        assert any(b"TENANT-SECRET" in (copy / e["path"]).read_bytes() for e in plain)
    finally:
        if held:
            release(held)
        c.stop()


def test_not_a_data_directory_exits_2(tmp_path):
    rc, rep, err = audit(tmp_path)
    assert rc == 2 and rep is None and "PG_VERSION" in err


def test_live_scan_reports_what_it_cannot_list():
    """pg_ephcrypt_scan() and pg_ephcrypt_last_scan() report a covered
    directory the server cannot list, and a tablespace whose location is
    gone, as unreadable rows (class NULL): files could hide there. Controls:
    the same scan before and after shows none."""
    c = Cluster("scan_unlisted").init()
    c.append_conf({"temp_buffers": "'800kB'"})
    c.start()
    held = None
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        ts_oid = _tablespace(c, "ts_unlisted")
        held = hold_spill(c, "SET temp_tablespaces = 'ts_unlisted';\n"
                             "CREATE TEMP TABLE big AS SELECT g, repeat('x', 300) AS pad "
                             "FROM generate_series(1, 20000) g;")
        q = "SELECT path, coalesce(class, '<null>'), status FROM pg_ephcrypt_scan()"
        unreadable = lambda: [r for r in c.rows(q) if r[2] == "unreadable"]  # noqa: E731
        last_unreadable = lambda: int(c.sql("SELECT unreadable FROM pg_ephcrypt_last_scan()"))  # noqa: E731
        assert unreadable() == [] and last_unreadable() == 0  # control
        dboid = c.sql("SELECT oid FROM pg_database WHERE datname = 'postgres'")
        (pg_dir,) = [d for d in (c.dir / "ts_unlisted").iterdir() if d.name.startswith("PG_")]
        db_dir = pg_dir / dboid
        in_ts = [r for r in c.rows(q) if r[0].startswith(str(db_dir))]
        assert in_ts and {r[1] for r in in_ts} == {"temp_relations"}, in_ts
        os.chmod(db_dir, 0o311)  # traversable, not listable
        try:
            assert unreadable() == [[str(db_dir), "<null>", "unreadable"]]
            assert last_unreadable() == 1
        finally:
            os.chmod(db_dir, 0o700)
        assert unreadable() == [] and last_unreadable() == 0  # control
        release(held)
        held = None
        # The tablespace's location moved away: pg_tblspc/<oid> dangles.
        loc = c.dir / "ts_unlisted"
        os.rename(loc, c.dir / "ts_moved")
        try:
            assert unreadable() == [[f"pg_tblspc/{ts_oid}", "<null>", "unreadable"]]
        finally:
            os.rename(c.dir / "ts_moved", loc)
        assert unreadable() == []  # control
    finally:
        if held:
            release(held)
        c.stop(quiet=True)
