#!/usr/bin/env python3
"""Record the I/O calls that PostgreSQL makes on its transient files, once
per spill workload, into compact text traces under benches/traces/.

Runs rarely (the traces are committed); the replay bench
(crates/ephcrypt-interpose/benches/trace_replay.rs) reads them:

    python3 benches/record_traces.py            # all workloads, quick sizes
    python3 benches/record_traces.py --only external_sort --keep-strace

How: one plain PostgreSQL 15 cluster (no extension, the bench settings of
benches/run.py), the same data and queries as benches/run.py. For each
workload, `strace -f -y` attaches to the postmaster (so that the backend of
the fresh session and its parallel workers are followed), one psql session
runs the workload, the backend exits, strace detaches. The strace log is then
reduced to the calls on covered files (the classifier's names: private temp
files, file-set members, temporary relations, logical spill files), with
their flags, lengths, offsets and results, and paths are rewritten to a
synthetic data directory (pids become 1000, 1001, ...).

Trace format (one call per line, fields separated by one space; `#` lines
are comments; the file is gzip-compressed):

    P <id> <relpath>            path table entry (before the first use of id)
    o <h> <id> <flags> <mode>   open(path id, flags hex, mode octal) -> handle h
    O <id> <flags> <errno>      an open that failed (e.g. ENOENT probes)
    R <h> <len> <off> <ret>     pread64      (off "." = end of the previous
    W <h> <len> <off> <ret>     pwrite64      I/O on h; ret "=" = len)
    RV <h> <off> <l1,l2,..> <ret>  preadv
    WV <h> <off> <l1,l2,..> <ret>  pwritev
    r <h> <len> <ret>           read  (file position)
    w <h> <len> <ret>           write (file position or O_APPEND)
    E <h> <ret>                 lseek(h, 0, SEEK_END) = ret (logical size)
    L <h> <off> <whence> <ret>  any other lseek
    T <h> <len> <ret>           ftruncate
    F <h> <size>                fstat (st_size)
    S <id> <size|-errno>        stat by path
    C <h>                       close
    U <id> <ret|-errno>         unlink
    X <id> <len> <ret>          truncate by path
    D <id> <mode> <ret|-errno>  mkdir (base/pgsql_tmp, file-set directories)
    d <id> <ret|-errno>         rmdir

Handles are numbered like fds (the smallest free one), so the replay keeps
them in a small array. Python 3.11 standard library; needs strace and root
(or the server's user) to attach.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import run as bench  # noqa: E402  (benches/run.py: same settings, data, queries)
from cluster import BUILD, PG_BIN  # noqa: E402

TRACES = ROOT / "benches" / "traces"
STRACE_CALLS = ("open,openat,creat,read,write,pread64,pwrite64,preadv,pwritev,preadv2,pwritev2,"
                "lseek,ftruncate,truncate,fstat,newfstatat,statx,stat,lstat,close,unlink,unlinkat,mkdir,mkdirat,rmdir")

# ---------------------------------------------------------------------------
# Workloads: (name, settings, statement(s)) run in one fresh session.


def workloads(s: bench.Sizes) -> dict[str, str]:
    out = {}
    for name, (settings, query, checksum, _ordered) in bench.SQL_WORKLOADS.items():
        out[name] = f"{settings}\nSELECT count(*), {checksum} FROM ({query}) q;\n"
    out["temp_table"] = (
        "SET temp_buffers = '1MB';\n"
        f"CREATE TEMP TABLE tt AS SELECT g, md5(g::text) || md5((g + 1)::text) AS s "
        f"FROM generate_series(1, {s.temp_rows}) g;\n"
        "SELECT count(*), sum(g::bigint), sum(octet_length(s)) FROM tt;\n"
    )
    out["logical_decoding"] = (
        "SELECT count(*), sum(octet_length(data)) FROM pg_logical_slot_get_changes("
        "'bench', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1');\n"
    )
    return out


def logical_prepare(s: bench.Sizes) -> str:
    return f"""
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'bench';
TRUNCATE ld;
SELECT 'slot' FROM pg_create_logical_replication_slot('bench', 'test_decoding');
BEGIN;
INSERT INTO ld SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, {s.decode_rows}) g;
COMMIT;
CHECKPOINT;
"""


# ---------------------------------------------------------------------------
# strace log -> trace

TEMP_RE = re.compile(r"^base/pgsql_tmp/pgsql_tmp(\d+)\.(\d+)$")
FILESET_RE = re.compile(r"^base/pgsql_tmp/pgsql_tmp(\d+)\.(\d+)\.fileset/([^/]+)$")
TEMPREL_RE = re.compile(r"^base/(\d+)/t(\d+)_(\d+)((?:_fsm|_vm|_init)?(?:\.\d+)?)$")
TMPDIR_RE = re.compile(r"^base/pgsql_tmp(?:/pgsql_tmp(\d+)\.(\d+)\.fileset)?$")
SPILL_RE = re.compile(r"^pg_replslot/([^/]+)/(xid-\d+-lsn-[0-9A-F]+-[0-9A-F]+\.spill)$")

LINE_RE = re.compile(r"^(\d+) +(.*)$")
CALL_RE = re.compile(r"^([a-z0-9_]+)\((.*)\) += (-?\d+|0x[0-9a-f]+)(?:<([^>]*)>)?(?: ([A-Z0-9]+) \(.*\))?$")
FD_RE = re.compile(r"^(-?\d+)(?:<(.*)>)?$")


def split_args(s: str) -> list[str]:
    """Top-level comma-separated arguments of a strace call (strings and
    brackets kept whole)."""
    out, depth, cur, q, i = [], 0, [], False, 0
    while i < len(s):
        ch = s[i]
        if q:
            cur.append(ch)
            if ch == "\\":
                cur.append(s[i + 1])
                i += 1
            elif ch == '"':
                q = False
        elif ch == '"':
            q = True
            cur.append(ch)
        elif ch in "[{(<":
            depth += 1
            cur.append(ch)
        elif ch in "]})>":
            depth -= 1
            cur.append(ch)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if cur or out:
        out.append("".join(cur).strip())
    return out


def unquote(s: str) -> str:
    assert s.startswith('"'), s
    end = s.rindex('"')
    return bytes(s[1:end], "utf-8").decode("unicode_escape")


def num(s: str) -> int:
    return int(s, 0)


class Converter:
    def __init__(self, data_dir: str):
        self.data_dir = data_dir.rstrip("/")
        self.pid_map: dict[str, str] = {}
        self.paths: dict[str, int] = {}
        self.handles: dict[tuple[str, int], int] = {}  # (pid, fd) -> handle
        self.free: list[int] = []
        self.next_handle = 0
        self.next_end: dict[int, int] = {}  # handle -> end of its previous pread/pwrite
        self.out: list[str] = []
        self.pending: dict[str, str] = {}
        self.pids_seen: set[str] = set()
        self.skipped: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.bytes_read = 0
        self.bytes_written = 0

    # -- paths ----------------------------------------------------------
    def rel(self, path: str) -> str | None:
        if path.startswith(self.data_dir + "/"):
            return path[len(self.data_dir) + 1:]
        if not path.startswith("/"):
            return path[2:] if path.startswith("./") else path
        return None

    def synthetic(self, rel: str) -> str | None:
        """The covered file's path in the synthetic data directory, or None."""
        def pid(p: str) -> str:
            if p not in self.pid_map:
                self.pid_map[p] = str(1000 + len(self.pid_map))
            return self.pid_map[p]
        if m := TEMP_RE.match(rel):
            return f"base/pgsql_tmp/pgsql_tmp{pid(m[1])}.{m[2]}"
        if m := FILESET_RE.match(rel):
            return f"base/pgsql_tmp/pgsql_tmp{pid(m[1])}.{m[2]}.fileset/{m[3]}"
        if m := TEMPREL_RE.match(rel):
            return f"base/{m[1]}/t{m[2]}_{m[3]}{m[4]}"
        if m := SPILL_RE.match(rel):
            return f"pg_replslot/{m[1]}/{m[2]}"
        if m := TMPDIR_RE.match(rel):
            return f"base/pgsql_tmp/pgsql_tmp{pid(m[1])}.{m[2]}.fileset" if m[1] else "base/pgsql_tmp"
        return None

    def path_id(self, synth: str) -> int:
        if synth not in self.paths:
            self.paths[synth] = len(self.paths)
            self.out.append(f"P {self.paths[synth]} {synth}")
        return self.paths[synth]

    def covered_path(self, path: str, dirs: bool = False) -> int | None:
        """The path id of a covered file (or, with `dirs`, of a temp-file
        directory), else None."""
        rel = self.rel(path)
        if rel is None or (TMPDIR_RE.match(rel) and not dirs):
            return None
        synth = self.synthetic(rel)
        return self.path_id(synth) if synth else None

    # -- handles --------------------------------------------------------
    def new_handle(self, pid: str, fd: int) -> int:
        if self.free:
            self.free.sort()
            h = self.free.pop(0)
        else:
            h = self.next_handle
            self.next_handle += 1
        self.handles[(pid, fd)] = h
        return h

    def handle(self, pid: str, fdarg: str) -> int | None:
        m = FD_RE.match(fdarg)
        if not m:
            return None
        fd, path = int(m[1]), m[2]
        h = self.handles.get((pid, fd))
        if h is None and path is not None and self.covered_path_quiet(path):
            self.skip("covered fd opened before the trace")
        return h

    def covered_path_quiet(self, path: str) -> bool:
        rel = self.rel(path)
        return bool(rel and (TEMP_RE.match(rel) or FILESET_RE.match(rel) or TEMPREL_RE.match(rel)
                             or SPILL_RE.match(rel)))

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def emit(self, kind: str, line: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.out.append(line)

    def io_off(self, h: int, off: int, ret: int) -> str:
        s = "." if self.next_end.get(h) == off else str(off)
        if ret > 0:
            self.next_end[h] = off + ret
        return s

    # -- lines ----------------------------------------------------------
    def feed(self, raw: str) -> None:
        m = LINE_RE.match(raw.rstrip("\n"))
        if not m:
            return
        pid, rest = m[1], m[2]
        n_before = len(self.out)
        self.feed_call(pid, rest)
        if len(self.out) != n_before:
            self.pids_seen.add(pid)

    def feed_call(self, pid: str, rest: str) -> None:
        if rest.endswith("<unfinished ...>"):
            self.pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            return
        r = re.match(r"^<\.\.\. [a-z0-9_]+ resumed>(.*)$", rest)
        if r:
            rest = self.pending.pop(pid, "") + r[1]
        if rest.startswith(("+++", "---")):
            return
        c = CALL_RE.match(rest)
        if not c:
            if "(" in rest and "?" not in rest.split("=")[-1]:
                self.skip("unparsed line")
            return
        self.call(pid, c[1], split_args(c[2]), num(c[3]), c[4], c[5])

    def call(self, pid: str, name: str, args: list[str], ret: int, retpath: str | None, err: str | None) -> None:
        if name in ("open", "openat", "creat"):
            if name == "openat":
                dirfd, path, flags = args[0], unquote(args[1]), args[2]
                if not path.startswith("/") and not dirfd.startswith("-100"):
                    dm = FD_RE.match(dirfd)
                    path = f"{dm[2]}/{path}" if dm and dm[2] else path
            elif name == "open":
                path, flags = unquote(args[0]), args[1]
            else:
                path, flags = unquote(args[0]), "0x241"
            mode = args[3] if name == "openat" and len(args) > 3 else (args[2] if name == "open" and len(args) > 2
                                                                     else "0600")
            pid_ = self.covered_path(path)
            if pid_ is None:
                return
            fl = num(flags)
            md = int(mode, 8) if mode.startswith("0") else num(mode)
            if ret < 0:
                self.emit("open-failed", f"O {pid_} {fl:#x} {err or ret}")
            else:
                h = self.new_handle(pid, ret)
                self.next_end.pop(h, None)
                self.emit("open", f"o {h} {pid_} {fl:#x} {md:o}")
            return
        if name in ("unlink", "unlinkat", "stat", "lstat", "truncate", "mkdir", "mkdirat", "rmdir") or (
                name in ("newfstatat", "statx") and args and args[1] != '""'):
            if name in ("unlinkat", "newfstatat", "statx", "mkdirat"):
                dm = FD_RE.match(args[0])
                path = unquote(args[1])
                if not path.startswith("/") and dm and dm[2] and not args[0].startswith("-100"):
                    path = f"{dm[2]}/{path}"
            else:
                path = unquote(args[0])
            pid_ = self.covered_path(path, dirs=name in ("mkdir", "mkdirat", "rmdir", "unlinkat"))
            if pid_ is None:
                return
            res = f"-{err}" if ret < 0 else None
            if name == "unlinkat" and num(args[2]) & 0x200:
                self.emit("rmdir", f"d {pid_} {res or ret}")
            elif name in ("unlink", "unlinkat"):
                self.emit("unlink", f"U {pid_} {res or ret}")
            elif name in ("mkdir", "mkdirat"):
                mode = args[2] if name == "mkdirat" else args[1]
                self.emit("mkdir", f"D {pid_} {int(mode, 8) if mode.startswith('0') else num(mode):o} {res or ret}")
            elif name == "rmdir":
                self.emit("rmdir", f"d {pid_} {res or ret}")
            elif name == "truncate":
                self.emit("truncate", f"X {pid_} {num(args[1])} {res or ret}")
            else:
                size = re.search(r"st_size=(\d+)|stx_size=(\d+)", args[2] if name != "statx" else args[4])
                self.emit("stat", f"S {pid_} {res or (size[1] or size[2] if size else 0)}")
            return
        if not args:
            return
        h = self.handle(pid, args[0])
        if h is None:
            return
        if name == "close":
            self.emit("close", f"C {h}")
            del self.handles[(pid, int(FD_RE.match(args[0])[1]))]
            self.free.append(h)
            self.next_end.pop(h, None)
        elif name in ("pread64", "pwrite64"):
            ln, off = num(args[2]), num(args[3])
            k = "R" if name == "pread64" else "W"
            if ret < 0:
                self.skip(f"{name} error {err}")
                return
            self.emit(name, f"{k} {h} {ln} {self.io_off(h, off, ret)} {'=' if ret == ln else ret}")
            self.account(k, ret)
        elif name in ("preadv", "pwritev", "preadv2", "pwritev2"):
            lens = [int(x) for x in re.findall(r"iov_len=(\d+)", args[1])]
            off = num(args[3])
            k = "RV" if name.startswith("preadv") else "WV"
            self.emit(name, f"{k} {h} {self.io_off(h, off, ret)} {','.join(map(str, lens))} "
                            f"{'=' if ret == sum(lens) else ret}")
            self.account(k[0], ret)
        elif name in ("read", "write"):
            ln = num(args[2])
            self.emit(name, f"{name[0]} {h} {ln} {'=' if ret == ln else ret}")
            self.account("R" if name == "read" else "W", ret)
        elif name == "lseek":
            off, whence = num(args[1]), args[2]
            wh = {"SEEK_SET": 0, "SEEK_CUR": 1, "SEEK_END": 2}.get(whence, None)
            wh = num(whence) if wh is None else wh
            if off == 0 and wh == 2:
                self.emit("lseek-end", f"E {h} {ret}")
            else:
                self.emit("lseek", f"L {h} {off} {wh} {ret}")
        elif name == "ftruncate":
            self.emit("ftruncate", f"T {h} {num(args[1])} {ret}")
        elif name in ("fstat", "newfstatat"):
            size = re.search(r"st_size=(\d+)", args[1] if name == "fstat" else args[2])
            self.emit("fstat", f"F {h} {size[1] if size else 0}")
        elif name == "statx":
            size = re.search(r"stx_size=(\d+)", args[4])
            self.emit("fstat", f"F {h} {size[1] if size else 0}")

    def account(self, kind: str, ret: int) -> None:
        if ret > 0:
            if kind == "R":
                self.bytes_read += ret
            else:
                self.bytes_written += ret


# ---------------------------------------------------------------------------


def strace_attach(pid: int, out: Path) -> subprocess.Popen:
    st = subprocess.Popen(["strace", "-f", "-y", "-s", "0", "-X", "raw", "-qq", "-e", "signal=none",
                           "-e", f"trace={STRACE_CALLS}", "-o", str(out), "-p", str(pid)],
                          stderr=subprocess.PIPE, text=True)
    # Attached when the postmaster shows a tracer.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        if re.search(r"^TracerPid:\s+[1-9]", status, re.M):
            return st
        if st.poll() is not None:
            raise SystemExit(f"strace exited: {st.stderr.read()}")
        time.sleep(0.05)
    raise SystemExit("strace did not attach")


def strace_detach(st: subprocess.Popen) -> None:
    st.send_signal(signal.SIGINT)
    st.wait(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", choices=("quick", "default"), default="quick",
                    help="benches/run.py data sizes (default: quick, to keep traces small)")
    ap.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    ap.add_argument("--keep-strace", action="store_true", help="keep the raw strace logs in build/traces/")
    args = ap.parse_args()
    if not shutil.which("strace"):
        raise SystemExit("strace is not installed")
    sizes = bench.SIZES[args.sizes]
    wl = workloads(sizes)
    if args.only:
        want = args.only.split(",")
        unknown = set(want) - set(wl)
        if unknown:
            ap.error(f"unknown workloads {sorted(unknown)}; known: {list(wl)}")
        wl = {k: v for k, v in wl.items() if k in want}
    raw_dir = BUILD / "traces"
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw_dir.chmod(0o777)
    TRACES.mkdir(exist_ok=True)
    pg = subprocess.check_output([str(PG_BIN / "postgres"), "--version"], text=True).strip()
    c = bench.BenchCluster("trace_plain", False, dict(bench.COMMON_CONF))
    c.dir = BUILD / "traces" / "cluster"
    c.data, c.log = c.dir / "data", c.dir / "server.log"
    (BUILD / "e2e").mkdir(parents=True, exist_ok=True)
    try:
        c.stop(quiet=True)
        if c.dir.exists():
            shutil.rmtree(c.dir)
        bench.Cluster.init(c)
        c.start()
        print(f"loading ({args.sizes} sizes)", file=sys.stderr)
        c.sql(bench.setup_sql(sizes), timeout=1800)
        data_dir = str(c.data.resolve())
        for name, script in wl.items():
            if name == "logical_decoding":
                c.sql(logical_prepare(sizes), timeout=900)
            raw = raw_dir / f"{name}.strace"
            st = strace_attach(c.postmaster_pid(), raw)
            t0 = time.monotonic()
            try:
                result = c.sql(script, timeout=3600)
                # The backend exits after the client: its at-exit closes and
                # unlinks belong to the trace.
                time.sleep(1.0)
            finally:
                strace_detach(st)
            if name == "logical_decoding":
                c.sql("SELECT pg_drop_replication_slot('bench')")
            conv = Converter(data_dir)
            with raw.open(errors="replace") as f:
                for line in f:
                    conv.feed(line)
            header = [
                "# pg_ephcrypt I/O trace v1 (benches/record_traces.py; format in its docstring)",
                f"# workload {name}",
                f"# recorded {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {pg}, {args.sizes} sizes "
                f"(benches/run.py), work_mem 4MB",
                f"# processes {len(conv.pids_seen)} ; paths {len(conv.paths)} ; "
                f"bytes_written {conv.bytes_written} ; bytes_read {conv.bytes_read}",
                "# calls " + " ".join(f"{k}={v}" for k, v in sorted(conv.counts.items())),
            ]
            if conv.skipped:
                header.append("# skipped " + " ".join(f"{k.replace(' ', '_')}={v}" for k, v in conv.skipped.items()))
            header.append("# result " + result.replace("\n", " | ").replace("\t", ","))
            dst = TRACES / f"{name}.trace.gz"
            with gzip.open(dst, "wt", compresslevel=9) as g:
                g.write("\n".join(header + conv.out) + "\n")
            print(f"{name}: {time.monotonic() - t0:.1f} s traced, {sum(conv.counts.values())} calls, "
                  f"{len(conv.pids_seen)} processes, {len(conv.paths)} paths, {conv.bytes_written / 2**20:.1f} MiB written, "
                  f"{conv.bytes_read / 2**20:.1f} MiB read, {dst.stat().st_size / 1024:.0f} KiB "
                  f"{'(skipped ' + str(conv.skipped) + ')' if conv.skipped else ''}", file=sys.stderr)
            if not args.keep_strace:
                raw.unlink()
    finally:
        c.stop(quiet=True)
        if c.data.exists():
            shutil.rmtree(c.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
