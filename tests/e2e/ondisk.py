"""Reading the raw bytes of covered files while a workload runs."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"PGEPHCR\0"
TEMP_REL = re.compile(r"^t\d+_\d+(_(fsm|vm|init))?(\.\d+)?$")
SPILL = re.compile(r"^xid-\d+-lsn-[0-9A-Fa-f]+-[0-9A-Fa-f]+\.spill$")


def covered_files(data: Path) -> list[Path]:
    """Every file of a covered class under a data directory (and its tablespaces)."""
    out: list[Path] = []
    roots = [data / "base"]
    tblspc = data / "pg_tblspc"
    if tblspc.exists():
        for link in tblspc.iterdir():
            roots.extend(p for p in link.glob("PG_*") if p.is_dir())
    for root in roots:
        # os.walk ignores directories that vanish while we look (file sets
        # are created and removed all the time).
        for dirpath, _dirs, files in os.walk(root / "pgsql_tmp"):
            out.extend(Path(dirpath) / f for f in files)
        for dirpath, dirs, files in os.walk(root):
            if Path(dirpath) != root:
                dirs[:] = []
                if Path(dirpath).name.isdigit():
                    out.extend(Path(dirpath) / f for f in files if TEMP_REL.match(f))
            else:
                dirs[:] = [d for d in dirs if d.isdigit()]
    for dirpath, _dirs, files in os.walk(data / "pg_replslot"):
        out.extend(Path(dirpath) / f for f in files if SPILL.match(f))
    return out


@dataclass
class ScanResult:
    files_seen: set = field(default_factory=set)
    files_with_data: set = field(default_factory=set)
    marker_hits: set = field(default_factory=set)
    bad_headers: set = field(default_factory=set)
    scans: int = 0

    def merge_file(self, path: Path, data: bytes, marker: bytes) -> None:
        self.files_seen.add(str(path))
        if not data:
            return
        self.files_with_data.add(str(path))
        if marker in data:
            self.marker_hits.add(str(path))
        if not data.startswith(MAGIC):
            self.bad_headers.add(str(path))


def scan_once(data_dir: Path, marker: bytes, result: ScanResult) -> None:
    result.scans += 1
    for p in covered_files(data_dir):
        try:
            data = p.read_bytes()
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            continue
        result.merge_file(p, data, marker)


class Poller:
    """Scan covered files in a loop until stopped (a workload runs meanwhile)."""

    def __init__(self, data_dir: Path, marker: bytes, interval: float = 0.02):
        self.data_dir = data_dir
        self.marker = marker
        self.interval = interval
        self.result = ScanResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            scan_once(self.data_dir, self.marker, self.result)
            time.sleep(self.interval)

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        scan_once(self.data_dir, self.marker, self.result)


PAGE = 8192
GROUP = 256


def data_offset(i: int) -> int:
    """Physical offset of data block i in format v2 (docs/FORMAT.md §3)."""
    return (i + i // GROUP + 1) * PAGE


def tamper_blocks(path: Path, every: int = 1) -> int:
    """Flip one byte inside the ciphertext of every `every`-th data block.
    Returns how many blocks were changed."""
    size = path.stat().st_size
    changed = 0
    with open(path, "r+b") as f:
        k = 0
        while data_offset(k) + 100 < size:
            if k % every == 0:
                off = data_offset(k) + 100
                f.seek(off)
                b = f.read(1)
                f.seek(off)
                f.write(bytes([b[0] ^ 0x5A]))
                changed += 1
            k += 1
    return changed
