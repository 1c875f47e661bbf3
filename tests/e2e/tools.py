"""The auditor's command-line tools (release builds) and helpers shared by
the end-to-end tests of the audit, the anchor and the packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from cluster import ROOT

AUDIT = ROOT / "target" / "release" / "ephcrypt-audit"
VERIFY = ROOT / "target" / "release" / "ephcrypt-verify"

_built = False


def build_tools() -> None:
    """cargo build --release of ephcrypt-audit and ephcrypt-verify (once per run)."""
    global _built
    if not _built:
        subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "ephcrypt-audit", "-p", "ephcrypt-attest",
                        "--bins"], cwd=ROOT, check=True)
        _built = True
    assert AUDIT.exists() and VERIFY.exists()


def audit(data: Path, *args: str) -> tuple[int, dict | None, str]:
    """Run ephcrypt-audit --json; (exit status, report or None, stderr)."""
    build_tools()
    r = subprocess.run([str(AUDIT), "--json", *args, str(data)], capture_output=True, text=True, timeout=300)
    report = json.loads(r.stdout) if r.stdout.strip() else None
    return r.returncode, report, r.stderr


def verify(doc: str, *args: str) -> subprocess.CompletedProcess:
    build_tools()
    return subprocess.run([str(VERIFY), *args, "-"], input=doc, text=True, capture_output=True, timeout=60)


def copy_tree(src: Path, dst: Path) -> None:
    """cp -a, as an operator copying a volume would (as root: owners kept)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def copy_volume(root: Path, *paths: Path) -> Path:
    """A copy of a volume at `root`: each path copied (cp -a) to
    root/<its absolute path>, as a snapshot mounted at `root` shows it."""
    if root.exists():
        shutil.rmtree(root)
    for p in paths:
        copy_tree(p, root / str(p).lstrip("/"))
    return root


def hold_spill(c, sql_before: str = "", marker: str = "TENANT-SECRET") -> subprocess.Popen:
    """A session that holds a spilled sort open (a cursor mid-way through an
    external sort of 100,000 rows at work_mem = 64kB); returns once the sort's
    temp files exist."""
    c.sql(f"CREATE TABLE IF NOT EXISTS spill_src AS SELECT g, '{marker}-' || md5(g::text) AS s "
          "FROM generate_series(1, 100000) g")
    s = c.session()
    s.stdin.write(f"SET work_mem = '64kB';\n{sql_before}\nBEGIN;\n"
                  "DECLARE c CURSOR FOR SELECT g, s FROM spill_src ORDER BY s;\n"
                  "FETCH 1 FROM c;\n\\echo HOLDING\n")
    s.stdin.flush()
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline:
        line = s.stdout.readline()
        if "HOLDING" in line:
            return s
        if not line and s.poll() is not None:
            break
    raise AssertionError(f"the spilling session did not start: {line} {s.stderr.read() if s.poll() is not None else ''}")


def release(s: subprocess.Popen) -> None:
    try:
        s.stdin.write("COMMIT;\n")
        s.stdin.close()
        s.wait(timeout=60)
    except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
        s.kill()


def python_with(module: str) -> str | None:
    """A python3 interpreter that can import `module`, or None."""
    for exe in ("/usr/bin/python3", shutil.which("python3") or ""):
        if exe and os.path.exists(exe) and subprocess.run(
                [exe, "-c", f"import {module}"], capture_output=True).returncode == 0:
            return exe
    return None
