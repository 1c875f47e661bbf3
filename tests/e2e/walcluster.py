"""Primaries and standbys for the tests of the `wal` class (test_wal.py).

A standby is a Cluster whose data directory comes from pg_basebackup -R of
its primary (Unix sockets only, throwaway directories under build/e2e).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from cluster import E2E, PG_BIN, PG_USER, Cluster, SqlError, _as_pg

MAGIC = b"PGEPHCR\0"
SEGMENT = re.compile(r"^[0-9A-F]{24}$")
PAGE = 8192
GROUP = 256
DEFAULT_CLASSES = "temp_files,temp_relations,logical_spill"
WAL_CLASSES = DEFAULT_CLASSES + ",wal"

REPLICATION = {
    "wal_level": "replica",
    "max_wal_senders": "10",
    "hot_standby": "on",
    # The standby throws its WAL away at every restart and streams it
    # again: the primary must keep it (a slot does too; OPERATIONS.md).
    "wal_keep_size": "'512MB'",
    "wal_receiver_status_interval": "1",
    "log_min_messages": "info",
}


def lsn(text: str) -> int:
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def wait_until(fn, timeout: float = 90.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except SqlError as e:  # a server restarting
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")


def primary(name: str, wal: bool = False, conf: dict | None = None,
            initdb_args: list[str] | None = None) -> Cluster:
    settings = dict(REPLICATION)
    if wal:
        settings["pg_ephcrypt.classes"] = f"'{WAL_CLASSES}'"
        settings["pg_ephcrypt.wal_durability"] = "'external'"
    settings.update(conf or {})
    return Cluster(name, conf=settings, initdb_args=initdb_args).init()


def standby(of: Cluster, name: str, wal: bool = True, conf: dict | None = None,
            slot: str | None = None, start: bool = True) -> Cluster:
    """A streaming standby of `of` (running), from pg_basebackup -X stream -R."""
    s = Cluster(name)
    s.stop(quiet=True)
    Cluster.created.append(s)
    if s.dir.exists():
        shutil.rmtree(s.dir)
    s.dir.mkdir(parents=True)
    if os.getuid() == 0:
        shutil.chown(s.dir, PG_USER)
    cmd = [str(PG_BIN / "pg_basebackup"), "-h", str(of.dir), "-p", str(of.port), "-U", "postgres",
           "-D", str(s.data), "-X", "stream", "-R", "-c", "fast", "--no-sync"]
    if slot:
        cmd += ["-C", "-S", slot]
    subprocess.run(_as_pg(cmd), check=True, capture_output=True)
    settings = {
        "port": str(s.port),
        "unix_socket_directories": f"'{s.dir}'",
        "pg_ephcrypt.classes": f"'{WAL_CLASSES if wal else DEFAULT_CLASSES}'",
        "pg_ephcrypt.wal_durability": "'local'",
        "cluster_name": f"'{name}'",
        "archive_mode": "off",
        "synchronous_standby_names": "''",
    }
    settings.update(conf or {})
    s.append_conf(settings)
    if start:
        s.start()
        s.wait_ready()
    return s


def try_start(c: Cluster) -> bool:
    """Start; False if the server refused (its log says why)."""
    r = subprocess.run(
        _as_pg([str(PG_BIN / "pg_ctl"), "-D", str(c.data), "-l", str(c.log), "-w", "-t", "60", "start"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return r.returncode == 0


def caught_up(p: Cluster, s: Cluster, timeout: float = 120.0) -> None:
    """Wait until `s` has replayed everything `p` has flushed."""
    target = lsn(p.sql("SELECT pg_current_wal_flush_lsn()"))

    def ok():
        out = s.sql("SELECT coalesce(pg_last_wal_replay_lsn(), '0/0')")
        return lsn(out) >= target
    wait_until(ok, timeout, what=f"{s.dir.name} to replay up to {target:X}")


def wal_files(data: Path) -> list[Path]:
    """Every regular file under pg_wal (segments, temp files, history, ...)."""
    out = []
    for dirpath, _dirs, files in os.walk(data / "pg_wal"):
        out.extend(Path(dirpath) / f for f in files)
    return out


def segments(data: Path) -> list[Path]:
    return sorted(p for p in (data / "pg_wal").iterdir() if SEGMENT.match(p.name) and p.is_file())


def read_quietly(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return b""


def marker_files(data: Path, marker: bytes) -> list[str]:
    return [p.name for p in wal_files(data) if marker in read_quietly(p)]


def instance_pids(c: Cluster) -> list[int]:
    """The postmaster and its children."""
    pm = c.postmaster_pid()
    pids = [pm]
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pm:
            pids.append(int(d.name))
    return pids


def kill_instance(c: Cluster) -> None:
    """kill -9 of the whole instance: postmaster and every child, by pid."""
    for pid in instance_pids(c):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 20
    while time.time() < deadline:
        if not any(Path(f"/proc/{p}").exists() for p in instance_pids_safe(c)):
            return
        time.sleep(0.1)


def instance_pids_safe(c: Cluster) -> list[int]:
    try:
        return instance_pids(c)
    except (OSError, ValueError):
        return []


def data_offset(i: int) -> int:
    """Physical offset of data block i (docs/FORMAT.md §3)."""
    return (i + i // GROUP + 1) * PAGE


def flip_logical(path: Path, logical_offset: int) -> None:
    """Flip one ciphertext byte of the data block holding `logical_offset`."""
    block = logical_offset // PAGE
    off = data_offset(block) + logical_offset % PAGE
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x5A]))


def scratch(name: str) -> Path:
    """An empty directory for a cluster made by pg_basebackup, owned by the
    server user, under this run's e2e directory (removed with the module's
    clusters, conftest.py)."""
    d = E2E / name
    Cluster.created.append(Cluster(name))  # removal only: remove() deletes its directory, d
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    if os.getuid() == 0:
        shutil.chown(d, PG_USER)
    return d
