"""Faults and hostile files around the interposition layer (issue #10), each
against a real cluster with a control:

* a full file system under pg_replslot: decoding fails with an ERROR, never
  returns fewer changes (a spill file's tail that cannot be sealed at close
  used to vanish silently);
* a FIFO at a spill-file name and a symlink at a temp-file name: the server
  raises an ERROR, nothing reaches the FIFO or the link target;
* a setsid() grandchild of a backend that outlives a crash-restart cannot
  read the next epoch's key or id through the mapping it inherited.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cluster import E2E, PG_BIN, PG_CONFIG, PG_USER, Cluster, SqlError, _as_pg, crash_a_backend

MARKER = b"FAULTMARK-"

LOGICAL = {
    "wal_level": "logical",
    "max_replication_slots": "4",
    "max_wal_senders": "4",
    "logical_decoding_work_mem": "'64kB'",
}

root_only = pytest.mark.skipif(os.getuid() != 0, reason="needs root (mount, chown)")

# 3,000 subtransactions of one marked row each: the reorder buffer spills
# them one by one, each to its own small spill file whose only block is the
# tail sealed at close.
SUBXACT_TXN = (
    "CREATE TABLE IF NOT EXISTS sx (g int, s text);\n"
    "BEGIN;\n"
    + "".join(f"SAVEPOINT p{i}; INSERT INTO sx VALUES ({i}, 'FAULTMARK-' || md5('{i}'));\n" for i in range(3000))
    + "COMMIT;\n"
)
DECODE = (
    "SELECT count(*) FROM pg_logical_slot_get_changes('s', NULL, NULL, "
    "'include-xids', '0', 'skip-empty-xacts', '1')"
)
EXPECTED_CHANGES = 3000 + 2  # BEGIN, 3000 inserts, COMMIT


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=True)
    shutil.chown(where, PG_USER, PG_USER)


def umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], check=False)


@root_only
@pytest.mark.parametrize("preload", [True, False], ids=["enc", "plain"])
def test_full_replslot_filesystem_is_an_error_never_fewer_changes(preload):
    c = Cluster(f"fault_nospc_{'enc' if preload else 'plain'}", preload=preload, conf=LOGICAL).init()
    slots = c.data / "pg_replslot"
    shutil.rmtree(slots)
    mount_tmpfs(slots, "256k")
    try:
        c.start()
        if preload:
            c.sql("CREATE EXTENSION pg_ephcrypt")
        c.sql("SELECT pg_create_logical_replication_slot('s', 'test_decoding')")
        c.sql(SUBXACT_TXN)
        # 3,000 spill files need ~12 MB of tmpfs pages: this cannot fit.
        with pytest.raises(SqlError) as err:
            out = c.sql(DECODE)
            pytest.fail(f"decoding on a full file system returned {out} instead of an ERROR")
        assert err.value.sqlstate is not None, err.value.stderr
        if preload:
            failures = c.sql(
                "SELECT io_errors + auth_failures FROM pg_ephcrypt_stats WHERE class = 'logical_spill'"
            )
            assert int(failures) > 0, "the lost tails were counted"
        # Control: with room to decode in memory the same slot gives every
        # change: nothing was consumed or lost by the failed attempt.
        c.sql("ALTER SYSTEM SET logical_decoding_work_mem = '1GB'; SELECT pg_reload_conf()")
        time.sleep(0.5)
        assert int(c.sql(DECODE)) == EXPECTED_CHANGES
    finally:
        c.stop(quiet=True)
        umount(slots)


def spill_names(xid: int, lsn: str, segments: int = 4, seg_size: int = 16 * 1024 * 1024) -> list[str]:
    hi, lo = (int(x, 16) for x in lsn.split("/"))
    seg = ((hi << 32) | lo) // seg_size
    out = []
    for s in range(seg, seg + segments):
        recptr = s * seg_size
        out.append(f"xid-{xid}-lsn-{recptr >> 32:X}-{recptr & 0xFFFFFFFF:X}.spill")
    return out


class FifoReader(threading.Thread):
    """Collects whatever is written into a FIFO (non-blocking reads)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.data = bytearray()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                chunk = os.read(self.fd, 65536)
                if chunk:
                    self.data.extend(chunk)
                    continue
            except BlockingIOError:
                pass
            time.sleep(0.01)

    def finish(self) -> bytes:
        self.stop.set()
        self.join()
        os.close(self.fd)
        return bytes(self.data)


@pytest.mark.parametrize("preload", [True, False], ids=["enc", "plain"])
def test_fifo_at_a_spill_file_name_gets_nothing(preload):
    """A walsender (pg_recvlogical) removes stale spill files when it starts
    decoding; FIFOs planted afterwards, at the names the next transaction
    will spill to, must receive nothing."""
    c = Cluster(f"fault_fifo_{'enc' if preload else 'plain'}", preload=preload, conf=LOGICAL).init().start()
    recv = None
    readers: list[FifoReader] = []
    try:
        c.sql("SELECT pg_create_logical_replication_slot('s', 'test_decoding')")
        c.sql("CREATE TABLE big (g int, s text)")
        out = c.dir / "recv.out"
        recv = subprocess.Popen(_as_pg([
            str(PG_BIN / "pg_recvlogical"), "-h", str(c.dir), "-p", str(c.port), "-U", "postgres",
            "-d", "postgres", "--slot", "s", "--start", "--no-loop", "-f", str(out),
        ]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while c.sql("SELECT active FROM pg_replication_slots WHERE slot_name = 's'") != "t":
            assert time.time() < deadline, "pg_recvlogical did not start"
            time.sleep(0.1)
        s = c.session()
        s.stdin.write("BEGIN; SELECT 'XID', txid_current(), pg_current_wal_insert_lsn();\n")
        s.stdin.flush()
        line = ""
        while "XID" not in line:
            line = s.stdout.readline()
            assert line, s.stderr.read()
        _, xid, lsn = line.strip().split("\t")
        for name in spill_names(int(xid), lsn):
            fifo = c.data / "pg_replslot" / "s" / name
            subprocess.run(_as_pg(["mkfifo", str(fifo)]), check=True)
            readers.append(FifoReader(fifo))
        for r in readers:
            r.start()
        s.stdin.write("INSERT INTO big SELECT g, 'FAULTMARK-' || md5(g::text) FROM generate_series(1, 20000) g;\n")
        s.stdin.write("COMMIT;\n")
        s.stdin.close()
        s.wait(timeout=120)
        if preload:
            # The walsender fails to open the spill file and ends with an ERROR.
            try:
                recv.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("pg_recvlogical still decoding: the spill did not fail")
            log = c.log_text()
            assert "could not open file" in log and ".spill" in log, log[-3000:]
            got = b"".join(r.finish() for r in readers)
            readers = []
            assert got == b"", f"{len(got)} bytes reached the FIFO"
            assert MARKER not in out.read_bytes() if out.exists() else True
        else:
            # Control: plain PostgreSQL writes the changes into the FIFO.
            deadline = time.time() + 30
            while time.time() < deadline and not any(MARKER in bytes(r.data) for r in readers):
                time.sleep(0.2)
            got = b"".join(r.finish() for r in readers)
            readers = []
            assert MARKER in got, "plain PostgreSQL writes changes into the FIFO"
    finally:
        for r in readers:
            r.finish()
        if recv is not None and recv.poll() is None:
            recv.kill()
        c.stop(quiet=True, mode="immediate")


@pytest.mark.parametrize("preload", [True, False], ids=["enc", "plain"])
def test_symlink_at_a_temp_file_name_is_not_followed(preload):
    c = Cluster(f"fault_link_{'enc' if preload else 'plain'}", preload=preload).init().start()
    target_dir = c.dir / "link-targets"
    target_dir.mkdir()
    if os.getuid() == 0:
        shutil.chown(target_dir, PG_USER, PG_USER)
    try:
        s = c.session()
        s.stdin.write("SELECT 'PID', pg_backend_pid();\n")
        s.stdin.flush()
        line = ""
        while "PID" not in line:
            line = s.stdout.readline()
        pid = int(line.strip().split("\t")[1])
        tmp = c.data / "base" / "pgsql_tmp"
        subprocess.run(_as_pg(["mkdir", "-p", str(tmp)]), check=True)
        targets = []
        for n in range(8):
            t = target_dir / f"t{n}"
            targets.append(t)
            subprocess.run(_as_pg(["ln", "-s", str(t), str(tmp / f"pgsql_tmp{pid}.{n}")]), check=True)
        s.stdin.write(
            "SET work_mem = '64kB';\n"
            "SELECT count(*) FROM (SELECT 'FAULTMARK-' || md5(g::text) AS m FROM generate_series(1, 50000) g ORDER BY 1) x;\n"
        )
        out, err = s.communicate(timeout=120)
        written = [t for t in targets if t.exists()]
        if preload:
            assert "could not create temporary file" in err or "Too many levels of symbolic links" in err, err
            assert not written, f"link targets written: {written}"
        else:
            # Control: plain PostgreSQL follows the links.
            assert written, "plain PostgreSQL follows a symlink at a temp-file name"
    finally:
        c.stop(quiet=True)


def build_fork_watcher() -> Path:
    # Per server build (E2E is build/e2e-<server>): the module's magic block
    # carries the major it was compiled against.
    out = E2E / "ephcrypt_test_fork_watcher.so"
    src = Path(__file__).parent / "helpers" / "fork_watcher.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        inc = subprocess.check_output([PG_CONFIG, "--includedir-server"], text=True).strip()
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", f"-I{inc}", str(src), "-o", str(out)], check=True)
        out.chmod(0o755)
    return out


def read_dump(path: Path) -> tuple[int, list[bytes]]:
    pid, pages = 0, []
    for line in path.read_text().splitlines():
        key, value = line.split()
        if key == "pid":
            pid = int(value)
        else:
            pages.append(bytes.fromhex(value))
    return pid, pages


def test_grandchild_that_outlives_a_crash_restart_never_sees_the_next_key():
    so = build_fork_watcher()
    c = Cluster("fault_grandchild").init().start()
    dump = c.dir / "grandchild.dump"
    watcher = 0
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        c.sql(f"CREATE FUNCTION fork_watcher(text, int) RETURNS int AS '{so}', 'ephcrypt_test_fork_watcher' LANGUAGE C")
        epoch1 = bytes.fromhex(c.sql("SELECT epoch_id FROM pg_ephcrypt_status()"))
        c.sql(f"SELECT fork_watcher('{dump}', 40)")
        deadline = time.time() + 10
        while not dump.exists() and time.time() < deadline:
            time.sleep(0.1)
        # Control: the grandchild reads the live key page (its epoch id at
        # offset 32, a non-zero key before it).
        watcher, pages = read_dump(dump)
        live = [p for p in pages if p[32:48] == epoch1]
        assert live and live[0][:32] != bytes(32), "the grandchild can read the current page"

        crash_a_backend(c)
        c.wait_ready()
        epoch2 = bytes.fromhex(c.sql("SELECT epoch_id FROM pg_ephcrypt_status()"))
        assert epoch2 != epoch1
        time.sleep(0.5)
        _, pages = read_dump(dump)
        assert pages, "the grandchild survived the crash-restart"
        for p in pages:
            assert epoch2 not in p, "the next epoch's id reached the old mapping"
        old = [p for p in pages if p[32:48] == epoch1]
        assert old and old[0][:32] == bytes(32), "the old page holds zeros where the key was"
    finally:
        if watcher:
            try:
                os.kill(watcher, 9)
            except ProcessLookupError:
                pass
        c.stop(quiet=True)
