"""The opt-in `wal` class on real primaries and standbys (issue #13).

Every cluster listens on a Unix socket in its own throwaway directory. Rows
carry a marker; the raw bytes of pg_wal are searched for it while they
stream. Each claim has a control: the same thing without the class shows
the marker (or works), with the class it does not (or is refused).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from cluster import PG_BIN, PG_USER, Cluster, _as_pg, crash_a_backend
from walcluster import (GROUP, MAGIC, PAGE, SEGMENT, WAL_CLASSES, caught_up, flip_logical, kill_instance, lsn,
                        marker_files, primary, read_quietly, scratch, segments, standby,
                        try_start, wait_until, wal_files)

MARKER = b"WALMARK-q7Zt"
ROWS = 50_000


def insert_marked(c: Cluster, start: int, n: int) -> None:
    c.sql(f"""INSERT INTO t SELECT g, '{MARKER.decode()}' || g || repeat('x', 40)
              FROM generate_series({start}, {start + n - 1}) g""")


def digest(c: Cluster) -> str:
    return c.sql("SELECT count(*) || ' ' || coalesce(md5(string_agg(payload, ',' ORDER BY id)), '-') FROM t")


def wal_status(c: Cluster) -> dict:
    cols = ["enabled", "role", "in_recovery", "wal_durability", "synchronous_replication",
            "key_epoch_id", "key_fingerprint", "removed_at_start", "sealed_at_start", "refused"]
    row = c.rows(f"SELECT {', '.join(cols)} FROM pg_ephcrypt_wal_status()")[0]
    return dict(zip(cols, row))


def wal_stats(c: Cluster) -> dict:
    cols = ["enabled", "files_opened", "files_created", "bytes_sealed", "bytes_opened", "auth_failures", "io_errors"]
    row = c.rows(f"SELECT {', '.join(cols)} FROM pg_ephcrypt_stats WHERE class = 'wal'")[0]
    return dict(zip(cols, row))


def assert_sealed(data) -> None:
    segs = segments(data)
    assert segs, "segments present"
    for s in segs:
        assert read_quietly(s)[:8] == MAGIC, f"{s.name} sealed"


def assert_plain(data) -> None:
    for s in segments(data):
        assert read_quietly(s)[:8] != MAGIC, f"{s.name} plaintext"


@pytest.fixture(scope="module")
def pair():
    """A primary (temp classes only: its own WAL is durable) with a sealed
    standby and a control standby without the class."""
    p = primary("wal_p").start()
    p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int PRIMARY KEY, payload text)")
    s = standby(p, "wal_s", wal=True, slot="wal_s")
    s.sql("SELECT 1")
    control = standby(p, "wal_c", wal=False, slot="wal_c")
    yield p, s, control
    for c in (control, s, p):
        c.stop(quiet=True)


def test_standby_seals_streamed_wal_and_answers_like_the_primary(pair):
    p, s, control = pair
    # The base backup's plaintext segments were sealed at the standby's start.
    st = wal_status(s)
    assert st["enabled"] == "t" and st["role"] == "standby" and st["in_recovery"] == "t"
    assert int(st["sealed_at_start"]) >= 1, st
    seen: set[str] = set()
    insert_marked(p, 1, ROWS // 2)
    # Look at the raw files while rows stream in.
    for _ in range(20):
        seen.update(marker_files(s.data, MARKER))
        time.sleep(0.05)
    insert_marked(p, ROWS // 2 + 1, ROWS // 2)
    caught_up(p, s)
    caught_up(p, control)
    seen.update(marker_files(s.data, MARKER))
    assert seen == set(), f"marker in sealed standby's pg_wal: {sorted(seen)}"
    assert_sealed(s.data)
    # Control: the same stream in a standby without the class, and the
    # primary's own (durable) WAL, hold the marker in clear.
    assert marker_files(control.data, MARKER), "control standby shows the marker"
    assert_plain(control.data)
    assert marker_files(p.data, MARKER), "the primary's WAL is plaintext"
    # Hot standby answers like the primary.
    assert digest(s) == digest(p) == digest(control)
    assert digest(p).startswith(f"{ROWS} ")
    # Counters and the audit cover the class.
    stats = wal_stats(s)
    assert stats["enabled"] == "t" and int(stats["bytes_sealed"]) > ROWS * 50, stats
    assert int(stats["bytes_opened"]) > 0 and stats["auth_failures"] == "0", stats
    scan = s.rows("SELECT status, count(*) FROM pg_ephcrypt_scan() WHERE class = 'wal' GROUP BY 1")
    assert dict(scan).keys() == {"encrypted_current"}, scan
    assert s.sql("SELECT count(*) FROM pg_ephcrypt_scan() WHERE status <> 'encrypted_current'") == "0"
    assert "wal" in s.sql("SELECT classes FROM pg_ephcrypt_status()")
    # The control standby and the primary do not audit pg_wal (the class is off).
    assert control.sql("SELECT count(*) FROM pg_ephcrypt_scan() WHERE class = 'wal'") == "0"
    # The attestation names the class and the role.
    att = s.rows("""SELECT d->'wal'->>'enabled', d->'wal'->>'role', d->'classes' ? 'wal',
                    d->'wal'->>'key_fingerprint' = (SELECT key_fingerprint FROM pg_ephcrypt_wal_status())
                    FROM (SELECT pg_ephcrypt_attest('\\x0011223344556677'::bytea) d) x""")[0]
    assert att == ["true", "standby", "t", "t"], att


def test_offline_audit_of_standby_copies_covers_sealed_wal(pair):
    """ephcrypt-audit of cp -a copies of the running standbys: the sealed
    standby's pg_wal is audited (every WAL file sealed under the WAL key's
    epoch, clean); the control standby's plaintext WAL is durable data, not
    audited. A plaintext segment planted in the sealed copy is a finding."""
    from tools import audit, copy_tree

    p, s, control = pair
    insert_marked(p, ROWS + 1, 2000)
    caught_up(p, s)
    wal_epoch = s.sql("SELECT key_epoch_id FROM pg_ephcrypt_wal_status()")
    copy = s.dir / "audit_copy"
    copy_tree(s.data, copy)
    try:
        rc, rep, err = audit(copy)
        assert rc == 0, (err, rep)
        assert rep["wal"]["audited"] is True and rep["wal"]["files"] >= 1, rep["wal"]
        wal = [e for e in rep["entries"] if e["class"] == "wal"]
        assert len(wal) == rep["wal"]["files"]
        assert all(e["status"] == "sealed" for e in wal), wal
        assert {e["epoch_id"] for e in wal} == {wal_epoch}, (wal_epoch, wal)
        # Planted: a segment in the clear next to the sealed ones.
        planted = copy / "pg_wal" / "0000000100000000000000FE"
        planted.write_bytes(MARKER * 100)
        rc, rep, err = audit(copy)
        assert rc == 1, rep
        found = [e for e in rep["entries"] if e["path"] == "pg_wal/0000000100000000000000FE"]
        assert found and found[0]["status"] == "plaintext" and found[0]["class"] == "wal", found
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    # Control: the standby without the class has plaintext WAL, reported as
    # not sealed and not listed (it is durable data there).
    ccopy = control.dir / "audit_copy"
    copy_tree(control.data, ccopy)
    try:
        rc, rep, err = audit(ccopy)
        assert rc == 0, (err, rep)
        assert rep["wal"]["audited"] is False and rep["wal"]["files"] >= 1, rep["wal"]
        assert not [e for e in rep["entries"] if e["class"] == "wal"]
    finally:
        shutil.rmtree(ccopy, ignore_errors=True)


def test_clean_restart_and_kill9_of_the_standby_stream_again(pair):
    p, s, _control = pair
    before = wal_status(s)
    n_before = len(segments(s.data))
    s.stop()
    insert_marked(p, 100_001, 5_000)  # written while the standby is down
    s.start()
    s.wait_ready()
    after = wal_status(s)
    assert after["key_epoch_id"] != before["key_epoch_id"], "a new postmaster, a new WAL key"
    assert n_before >= 1 and int(after["removed_at_start"]) >= 1, (after, n_before)
    assert "removed" in s.log_text() and "sealed by an ended postmaster" in s.log_text()
    caught_up(p, s)
    assert digest(s) == digest(p)
    assert not marker_files(s.data, MARKER)
    assert_sealed(s.data)
    # kill -9 of the whole standby instance (postmaster and every child).
    insert_marked(p, 200_001, 5_000)
    caught_up(p, s)
    kill_instance(s)
    insert_marked(p, 300_001, 5_000)
    assert try_start(s), s.log_text()[-3000:]
    s.wait_ready()
    again = wal_status(s)
    assert int(again["removed_at_start"]) >= 1, again
    caught_up(p, s)
    assert digest(s) == digest(p)
    assert wal_stats(s)["auth_failures"] == "0"


def test_crash_restart_of_a_standby_backend_keeps_its_wal_readable(pair):
    p, s, _control = pair
    insert_marked(p, 400_001, 5_000)
    caught_up(p, s)
    before = s.rows("SELECT epoch_id, restarts FROM pg_ephcrypt_status()")[0]
    wal_key = wal_status(s)["key_epoch_id"]
    # With the primary down, replay after the crash-restart can only read
    # the WAL this standby sealed before it.
    s.sql("SELECT pg_wal_replay_pause()")
    insert_marked(p, 500_001, 5_000)
    target = lsn(p.sql("SELECT pg_current_wal_flush_lsn()"))
    wait_until(lambda: lsn(s.sql("SELECT pg_last_wal_receive_lsn()")) >= target, what="receive")
    want = digest(p)
    p.stop()
    try:
        crash_a_backend(s)
        time.sleep(1)
        s.wait_ready()
        after = s.rows("SELECT epoch_id, restarts FROM pg_ephcrypt_status()")[0]
        assert after[0] != before[0] and int(after[1]) == int(before[1]) + 1, "epoch rotated"
        assert wal_status(s)["key_epoch_id"] == wal_key, "the WAL key lives on"
        # (The pause did not survive the crash-restart: shared memory is new.)
        wait_until(lambda: digest(s) == want, what="replay of sealed WAL without a primary")
        assert wal_stats(s)["auth_failures"] == "0"
        assert "terminated by signal 9" in s.log_text()
    finally:
        p.start()
        p.wait_ready()
    caught_up(p, s)


def test_a_flipped_byte_in_a_sealed_segment_never_yields_wrong_rows(pair):
    p, s, _control = pair
    caught_up(p, s)
    s.sql("SELECT pg_wal_replay_pause()")
    wait_until(lambda: s.sql("SELECT pg_get_wal_replay_pause_state()") == "paused", what="pause")
    start = lsn(p.sql("SELECT pg_current_wal_flush_lsn()"))
    insert_marked(p, 600_001, 3_000)
    p.sql("UPDATE t SET payload = payload || '-upd' WHERE id BETWEEN 600001 AND 600100")
    end = lsn(p.sql("SELECT pg_current_wal_flush_lsn()"))
    wait_until(lambda: lsn(s.sql("SELECT pg_last_wal_receive_lsn()")) >= end, what="receive")
    # A byte in the middle of the not yet replayed range, in the sealed file.
    mid = (start + end) // 2
    name, off = p.rows(f"SELECT file_name, file_offset FROM pg_walfile_name_offset('{mid >> 32:X}/{mid & 0xFFFFFFFF:X}')")[0]
    seg = s.data / "pg_wal" / name
    assert read_quietly(seg)[:8] == MAGIC
    flip_logical(seg, int(off))
    s.sql("SELECT pg_wal_replay_resume()")
    # The damaged page never replays: the standby refuses it and fetches
    # the range from the primary again, then answers like the primary.
    caught_up(p, s)
    assert digest(s) == digest(p)
    stats = wal_stats(s)
    assert int(stats["auth_failures"]) >= 1, stats


def test_a_sealed_segment_copied_over_another_is_rejected_by_its_page_addresses(pair):
    """The canonical name of every WAL file is the class (renames keep files
    readable); a segment moved or copied under another segment's name
    authenticates, and PostgreSQL's own page header check (xlp_pageaddr)
    rejects its pages: nothing of it is replayed, and the standby fetches
    the real segment again."""
    p, s, _control = pair
    caught_up(p, s)
    s.sql("SELECT pg_wal_replay_pause()")
    wait_until(lambda: s.sql("SELECT pg_get_wal_replay_pause_state()") == "paused", what="pause")
    p.sql("SELECT pg_switch_wal()")
    before = digest(p)
    insert_marked(p, 700_001, 3_000)  # lands in a fresh segment
    end = lsn(p.sql("SELECT pg_current_wal_flush_lsn()"))
    name = p.sql(f"SELECT pg_walfile_name('{end >> 32:X}/{end & 0xFFFFFFFF:X}')")
    wait_until(lambda: lsn(s.sql("SELECT pg_last_wal_receive_lsn()")) >= end, what="receive")
    p.stop()
    try:
        b = s.data / "pg_wal" / name
        prev = f"{name[:16]}{int(name[16:], 16) - 1:08X}"
        a = s.data / "pg_wal" / prev
        assert read_quietly(a)[:8] == MAGIC and read_quietly(b)[:8] == MAGIC
        # The attacker's copy: A's sealed bytes under B's name.
        tmp = b.with_name(name + ".copy")
        shutil.copyfile(a, tmp)
        shutil.chown(tmp, PG_USER)
        os.replace(tmp, b)
        failures = wal_stats(s)["auth_failures"]
        s.sql("SELECT pg_wal_replay_resume()")
        wait_until(lambda: "unexpected pageaddr" in s.log_text(), what="the page address check")
        assert digest(s) == before, "nothing of the copied segment was replayed"
        assert wal_stats(s)["auth_failures"] == failures, "it authenticated: the position check rejected it"
    finally:
        p.start()
        p.wait_ready()
    # PostgreSQL keeps retrying the file it has (with or without the class:
    # a plaintext standby given a copied segment stalls the same way). A
    # restart of the sealed standby removes every sealed segment and
    # streams them again.
    s.stop()
    s.start()
    s.wait_ready()
    caught_up(p, s)
    assert digest(s) == digest(p)


@pytest.mark.parametrize("segsize_mb,init_zero", [(1, "on"), (64, "off")])
def test_non_default_segment_sizes_stream_sealed_and_restart(segsize_mb, init_zero):
    """initdb --wal-segsize (not the 16 MiB every other test uses), with
    wal_init_zero on and off on the standby: segments are sealed at their
    full size (one metadata page per 256 data pages on disk), PostgreSQL
    sees exactly wal_segment_size (pg_ls_waldir goes through stat), hot
    standby answers like the primary, and a restarted standby drops its
    ended-epoch segments and streams them again. Control: the primary's
    own (unsealed) pg_wal holds the marker."""
    seg = segsize_mb * 1024 * 1024
    p = primary(f"walseg{segsize_mb}_p", initdb_args=[f"--wal-segsize={segsize_mb}"]).start()
    s = None
    try:
        p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int PRIMARY KEY, payload text)")
        assert p.sql("SHOW wal_segment_size") == (f"{segsize_mb}MB" if segsize_mb < 1024 else "1GB")
        s = standby(p, f"walseg{segsize_mb}_s", wal=True, slot=f"walseg{segsize_mb}",
                    conf={"wal_init_zero": init_zero})
        # Enough rows for several 1 MiB segments (and part of a 64 MiB one).
        insert_marked(p, 1, 40_000)
        p.sql("SELECT pg_switch_wal()")
        insert_marked(p, 40_001, 20_000)
        caught_up(p, s)
        assert digest(s) == digest(p) and digest(p).startswith("60000 ")
        assert not marker_files(s.data, MARKER), "the standby's pg_wal is sealed"
        assert marker_files(p.data, MARKER), "control: the primary's WAL is plaintext"
        assert_sealed(s.data)
        blocks = seg // PAGE
        physical = seg + -(-blocks // GROUP) * PAGE
        segs = segments(s.data)
        assert len(segs) >= (2 if segsize_mb == 1 else 1), [x.name for x in segs]
        for x in segs:
            assert x.stat().st_size == physical, (x.name, x.stat().st_size, physical)
        sizes = s.rows("SELECT name, size FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'")
        assert sizes and all(int(size) == seg for _name, size in sizes), sizes
        assert wal_stats(s)["auth_failures"] == "0"
        # Restart: a new WAL key; the old segments go and stream again.
        s.stop()
        insert_marked(p, 60_001, 5_000)
        s.start()
        s.wait_ready()
        assert int(wal_status(s)["removed_at_start"]) >= 1
        caught_up(p, s)
        assert digest(s) == digest(p) and digest(p).startswith("65000 ")
        assert not marker_files(s.data, MARKER)
        for x in segments(s.data):
            assert x.stat().st_size == physical, (x.name, x.stat().st_size, physical)
        assert wal_stats(s)["auth_failures"] == "0"
    finally:
        for c in (s, p):
            if c is not None:
                c.stop(quiet=True)


def test_segments_restored_by_restore_command_are_sealed_on_arrival():
    """restore_command (a shell) writes plaintext RECOVERYXLOG; PostgreSQL
    renames it to the segment name, and the rename seals it."""
    arch = scratch("walrc_archive")
    p = primary("walrc_p", conf={"archive_mode": "on", "archive_library": "'basic_archive'",
                                 "basic_archive.archive_directory": f"'{arch}'"}).start()
    s = None
    try:
        p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int PRIMARY KEY, payload text)")
        s = standby(p, "walrc_s", wal=True, start=False,
                    conf={"restore_command": f"'cp {arch}/%f %p'"})
        # Archive only: no streaming.
        auto = s.data / "postgresql.auto.conf"
        auto.write_text("".join(line for line in auto.read_text().splitlines(keepends=True)
                                if not line.startswith("primary_conninfo")))
        s.start()
        s.wait_ready()
        insert_marked(p, 1, 10_000)
        p.sql("SELECT pg_switch_wal()")
        want = digest(p)
        wait_until(lambda: digest(s) == want, timeout=120, what="replay from the archive")
        assert any(MARKER in read_quietly(f) for f in arch.iterdir()), "control: the archive is plaintext"
        assert not marker_files(s.data, MARKER)
        assert_sealed(s.data)
        assert not (s.data / "pg_wal" / "RECOVERYXLOG").exists()
        assert "restored log file" in s.log_text()
        assert int(wal_stats(s)["files_created"]) >= 1
    finally:
        for c in (s, p):
            if c:
                c.stop(quiet=True)


@pytest.fixture(scope="module")
def sealed_primary():
    """A primary with the class (durability external: a synchronous
    standby, itself sealed)."""
    p = primary("walp_p", wal=True).start()
    p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int PRIMARY KEY, payload text)")
    s = standby(p, "walp_s", wal=True, slot="walp_s")
    p.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
    p.sql("SELECT pg_reload_conf()")
    wait_until(lambda: p.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1",
               what="a synchronous standby")
    yield p, s
    s.stop(quiet=True)
    p.stop(quiet=True)


def pgbench(c: Cluster, *args: str) -> str:
    r = subprocess.run(_as_pg([str(PG_BIN / "pgbench"), "-h", str(c.dir), "-p", str(c.port), "-U", "postgres",
                               *args, "postgres"]), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def pgbench_consistent(c: Cluster) -> bool:
    # Every transaction adds delta to one account and logs it in history.
    return c.sql("""SELECT (SELECT sum(abalance) FROM pgbench_accounts)
                         = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)""") == "t"


def test_sealed_primary_pgbench_crash_recovery_and_promotion(sealed_primary):
    p, s = sealed_primary
    st = wal_status(p)
    assert st["enabled"] == "t" and st["role"] == "primary" and st["wal_durability"] == "external"
    assert st["synchronous_replication"] == "t", st
    pgbench(p, "-i", "-s", "2", "-q")
    pgbench(p, "-c", "4", "-T", "8", "-n")
    insert_marked(p, 1, 20_000)
    assert not marker_files(p.data, MARKER), "the primary's WAL is sealed"
    assert_sealed(p.data)
    # The walsender read the tail pages while they were rewritten: no
    # failure reached it. In-process readers (pg_walinspect) get plaintext.
    assert wal_stats(p)["auth_failures"] == "0"
    p.sql("CREATE EXTENSION pg_walinspect")
    n = p.sql("""SELECT count(*) FROM pg_get_wal_records_info(
                   (SELECT redo_lsn FROM pg_control_checkpoint()), pg_current_wal_flush_lsn())""")
    assert int(n) > 1000, n
    # kill -9 of a backend: crash recovery replays sealed WAL.
    epoch = p.sql("SELECT epoch_id FROM pg_ephcrypt_status()")
    crash_a_backend(p)
    time.sleep(1)
    p.wait_ready()
    log = p.log_text()
    assert "redo starts at" in log and "redo done at" in log, log[-3000:]
    assert "could not locate a valid checkpoint record" not in log
    assert p.sql("SELECT epoch_id FROM pg_ephcrypt_status()") != epoch
    assert pgbench_consistent(p)
    assert digest(p).startswith("20000 ")
    wait_until(lambda: p.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1",
               what="the standby to reconnect")
    pgbench(p, "-c", "2", "-T", "3", "-n")
    want_t, want_acc = digest(p), p.sql("SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts")
    caught_up(p, s)
    # Promote the (sealed) standby: it becomes the primary with equal data.
    p.stop()
    subprocess.run(_as_pg([str(PG_BIN / "pg_ctl"), "-D", str(s.data), "-w", "promote"]), check=True,
                   capture_output=True)
    wait_until(lambda: s.sql("SELECT pg_is_in_recovery()") == "f", what="promotion")
    assert digest(s) == want_t
    assert s.sql("SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts") == want_acc
    assert pgbench_consistent(s)
    assert wal_status(s)["in_recovery"] == "f"
    s.sql("INSERT INTO t VALUES (0, 'after promotion')")
    assert_sealed(s.data)
    assert not marker_files(s.data, MARKER)
    # The history file of the new timeline is plaintext (read with stdio).
    hist = [f for f in wal_files(s.data) if f.name.endswith(".history")]
    assert hist and all(read_quietly(h)[:8] != MAGIC for h in hist), hist
    assert b"no recovery target specified" in read_quietly(hist[0]) or read_quietly(hist[0])[:1].isdigit()
    # Restarting the primary in place is refused: its WAL was sealed by a
    # postmaster that has ended. Nothing is deleted.
    before = sorted(x.name for x in segments(p.data))
    assert not try_start(p)
    log = p.log_text()
    assert "sealed by a postmaster that has ended" in log and "HINT" in log and "base backup" in log
    assert sorted(x.name for x in segments(p.data)) == before, "a primary's WAL is never deleted"


def backup_and_start(src: Cluster, name: str, mode: str) -> Cluster:
    """pg_basebackup -X <mode> from `src`; the backup must hold plaintext WAL
    and start (as a server without the wal class)."""
    b = Cluster(name)
    Cluster.created.append(b)
    d = scratch(name)
    subprocess.run(_as_pg([str(PG_BIN / "pg_basebackup"), "-h", str(src.dir), "-p", str(src.port), "-U", "postgres",
                           "-D", str(b.data), "-X", mode, "-c", "fast", "--no-sync"]), check=True, capture_output=True)
    assert d.exists()
    segs = segments(b.data)
    assert segs, "WAL in the backup"
    for seg in segs:
        raw = read_quietly(seg)
        assert raw[:8] != MAGIC, f"{seg.name}: plaintext in the backup"
        assert len(raw) == 16 * 1024 * 1024
    # Plaintext WAL: pg_waldump reads it (it cannot read sealed files).
    r = subprocess.run(_as_pg([str(PG_BIN / "pg_waldump"), "-n", "2", str(segs[0])]),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (b.data / "standby.signal").unlink(missing_ok=True)
    b.append_conf({"port": str(b.port), "unix_socket_directories": f"'{b.dir}'",
                   "pg_ephcrypt.classes": "'temp_files,temp_relations,logical_spill'",
                   "synchronous_standby_names": "''", "archive_mode": "off"})
    b.start()
    b.wait_ready()
    return b


def test_base_backups_of_sealed_servers_are_plaintext_and_start():
    p = primary("walb_p", wal=True).start()
    s = None
    backups = []
    try:
        p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int PRIMARY KEY, payload text)")
        s = standby(p, "walb_s", wal=True, slot="walb_s")
        insert_marked(p, 1, 10_000)
        caught_up(p, s)
        want = digest(p)
        for src, tag in ((p, "p"), (s, "s")):
            for mode in ("stream", "fetch"):
                b = backup_and_start(src, f"walb_{tag}_{mode}", mode)
                backups.append(b)
                assert digest(b) == want, (tag, mode)
                b.stop()
        # Control: the source's own sealed segments are not WAL to pg_waldump.
        r = subprocess.run(_as_pg([str(PG_BIN / "pg_waldump"), "-n", "5", str(segments(s.data)[-1])]),
                           capture_output=True, text=True)
        assert r.returncode != 0
    finally:
        for c in backups + [x for x in (s, p) if x]:
            c.stop(quiet=True)


def test_pg_receivewal_synchronous_from_a_sealed_primary():
    p = primary("walr_p", wal=True).start()
    d = scratch("walr_recv")
    proc = None
    try:
        p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int PRIMARY KEY, payload text)")
        p.sql("SELECT pg_create_physical_replication_slot('walr')")
        proc = subprocess.Popen(_as_pg([str(PG_BIN / "pg_receivewal"), "-D", str(d), "-S", "walr",
                                        "--synchronous", "-n",
                                        "-d", f"host={p.dir} port={p.port} user=postgres application_name=walr"]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: p.sql("SELECT count(*) FROM pg_stat_replication") == "1", what="pg_receivewal")
        p.sql("ALTER SYSTEM SET synchronous_standby_names = 'walr'")
        p.sql("SELECT pg_reload_conf()")
        wait_until(lambda: p.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1",
                   what="pg_receivewal as the synchronous standby")
        insert_marked(p, 1, 10_000)  # commits wait for pg_receivewal's flush
        p.sql("SELECT pg_switch_wal()")
        insert_marked(p, 10_001, 10)
        got = wait_until(lambda: [f for f in d.iterdir() if MARKER in read_quietly(f)], what="received WAL")
        for f in d.iterdir():
            assert read_quietly(f)[:8] != MAGIC, f"{f.name}: plaintext"
        assert got
        assert not marker_files(p.data, MARKER)
    finally:
        if proc:
            proc.kill()
            proc.wait()
        p.stop(quiet=True)


def test_basic_archive_receives_plaintext_segments():
    arch = scratch("wala_archive")
    p = primary("wala_p", wal=True, conf={
        "archive_mode": "on",
        "archive_library": "'basic_archive'",
        "basic_archive.archive_directory": f"'{arch}'",
        "wal_level": "logical",
    }).start()
    try:
        p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int PRIMARY KEY, payload text)")
        assert "basic_archive" in wal_status_archive(p)
        p.sql("SELECT pg_create_logical_replication_slot('wala', 'test_decoding')")
        insert_marked(p, 1, 10_000)
        # Logical decoding reads the sealed WAL in-process.
        n = p.sql(f"SELECT count(*) FROM pg_logical_slot_get_changes('wala', NULL, NULL) "
                  f"WHERE data LIKE '%{MARKER.decode()}%'")
        assert n == "10000", n
        p.sql("SELECT pg_switch_wal()")
        got = wait_until(lambda: [f for f in arch.iterdir() if SEGMENT.match(f.name) and MARKER in read_quietly(f)],
                         what="archived WAL")
        for f in arch.iterdir():
            if f.is_file():
                assert read_quietly(f)[:8] != MAGIC, f"{f.name}: plaintext in the archive"
        assert all(len(read_quietly(f)) == 16 * 1024 * 1024 for f in got)
        assert not marker_files(p.data, MARKER), "pg_wal itself stays sealed"
    finally:
        p.stop(quiet=True)


def test_an_archive_command_set_by_a_reload_is_not_run_while_wal_is_sealed():
    """The start-up refusal cannot see an archive_command set later: the
    archiver's system() is refused (WARNING with a hint, the segment stays
    in pg_wal, pg_stat_archiver counts failures), never handed ciphertext.
    Control: the same reload on a primary without the class archives.
    restore_command (the startup process's system()) still runs with the
    class on: test_segments_restored_by_restore_command_are_sealed_on_arrival."""
    for sealed in (True, False):
        arch = scratch(f"walac_archive_{int(sealed)}")
        p = primary(f"walac_{int(sealed)}", wal=sealed, conf={"archive_mode": "on"}).start()
        try:
            p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int PRIMARY KEY, payload text)")
            p.sql(f"ALTER SYSTEM SET archive_command = 'cp %p {arch}/%f'")
            p.sql("SELECT pg_reload_conf()")
            insert_marked(p, 1, 2_000)
            segment = p.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
            p.sql("SELECT pg_switch_wal()")
            if sealed:
                wait_until(lambda: int(p.sql("SELECT failed_count FROM pg_stat_archiver")) > 0,
                           what="an archive attempt")
                assert not any(arch.iterdir()), "nothing reached the archive"
                log = p.log_text()
                assert "did not run the archive command" in log and "archive_library" in log, log[-3000:]
                assert "archive command failed with exit code 1" in log, log[-3000:]
                assert (p.data / "pg_wal" / "archive_status" / f"{segment}.ready").exists()
                assert p.sql("SELECT refused_configurations > 0 FROM pg_ephcrypt_status()") == "t"
                assert not marker_files(p.data, MARKER), "pg_wal stays sealed"
            else:
                wait_until(lambda: (arch / segment).exists(), what="the control's archive")
                assert "did not run the archive command" not in p.log_text()
        finally:
            p.stop(quiet=True)


def wal_status_archive(c: Cluster) -> str:
    return c.sql("SELECT archive FROM pg_ephcrypt_wal_status()")


@pytest.mark.parametrize("case", ["primary_local", "archive_command", "o_direct"])
def test_refusals_are_fatal_with_a_hint_and_warn_turns_the_class_off(case):
    conf = {
        "primary_local": {"pg_ephcrypt.wal_durability": "'local'"},
        "archive_command": {"archive_mode": "on", "archive_command": "'cp %p /nonexistent/%f'"},
        "o_direct": {"wal_level": "minimal", "max_wal_senders": "0", "wal_sync_method": "open_datasync",
                     "fsync": "on"},
    }[case]
    want = {"primary_local": "wal_durability", "archive_command": "archive_command", "o_direct": "O_DIRECT"}[case]
    c = primary(f"walx_{case}", wal=True, conf=conf)
    try:
        assert not try_start(c), "refused"
        log = c.log_text()
        assert "FATAL" in log and want in log and "HINT" in log, log[-2000:]
        # Control: the same settings without the class start.
        c.append_conf({"pg_ephcrypt.classes": "'temp_files'"})
        assert try_start(c), c.log_text()[-2000:]
        c.stop()
        # on_unsupported = warn: a WARNING, and the class is off.
        c.append_conf({"pg_ephcrypt.classes": f"'{WAL_CLASSES}'", "pg_ephcrypt.on_unsupported": "warn"})
        assert try_start(c), c.log_text()[-2000:]
        c.wait_ready()
        c.sql("CREATE EXTENSION pg_ephcrypt")
        assert "WARNING" in c.log_text()
        st = c.rows("SELECT enabled, refused IS NOT NULL, 'wal' = ANY(classes) FROM pg_ephcrypt_wal_status(), pg_ephcrypt_status()")[0]
        assert st == ["f", "t", "f"], st
        assert c.sql("SELECT refused_configurations > 0 FROM pg_ephcrypt_status()") == "t"
        assert_plain(c.data)
    finally:
        c.stop(quiet=True)


def test_debug_io_direct_wal_is_refused_on_16_and_later():
    c = primary("walx_iodirect", wal=True)
    try:
        c.start()
        num = int(c.sql("SHOW server_version_num"))
        c.stop()
        if num < 160000:
            pytest.skip("debug_io_direct exists from PostgreSQL 16 on (15 is covered by the o_direct case)")
        c.append_conf({"debug_io_direct": "'wal'"})
        assert not try_start(c)
        assert "debug_io_direct" in c.log_text() and "HINT" in c.log_text()
    finally:
        c.stop(quiet=True)
