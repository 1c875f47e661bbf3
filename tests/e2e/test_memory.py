"""PostgreSQL's memory out of core dumps and swap (issue #15), seen from
outside real clusters: what the kernel reports in /proc/<pid>/smaps, what
gcore and the kernel's own core dumps contain, who may ptrace the server.
Every check runs against a control (memory_hygiene = off, core_dumps = on,
a sufficient memlock limit) that shows it can fail.

Cores: gdb's gcore runs as root. Kernel cores need RLIMIT_CORE raised (the
servers are started with `pg_ctl -c`) and a core_pattern that writes
a file: with a relative pattern (e.g. Debian's default `core`) the backend's
core lands in its working directory, the data directory under build/. This
file never changes core_pattern (a host-wide setting); if it is a pipe to a
system service (systemd-coredump, apport), the kernel-core checks are
skipped with that reason and gcore alone is used.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cluster import PG_BIN, PG_USER, Cluster, SqlError, _as_pg

IS_ROOT = os.getuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="reads other users' /proc and raises rlimits: run as root")

CORE_PATTERN = Path("/proc/sys/kernel/core_pattern").read_text().strip()

BASE = {"shared_buffers": "'32MB'", "max_connections": "20", "jit": "off"}


# -- what the kernel says ----------------------------------------------------


def smaps(pid: int) -> list[dict]:
    """Every mapping of a process with its VmFlags (root reads any process)."""
    out: list[dict] = []
    cur = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line.startswith("VmFlags:"):
            if cur is not None:
                cur["flags"] = set(line.split()[1:])
                out.append(cur)
                cur = None
            continue
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and len(head[1]) == 4 and ":" in head[3]:
            start, end = (int(x, 16) for x in head[0].split("-"))
            cur = {"start": start, "end": end, "perms": head[1],
                   "path": head[5] if len(head) > 5 else ""}
    return out


def main_segment(pid: int) -> dict:
    """PostgreSQL's main shared memory segment: the largest shared mapping
    (shared_buffers dominates it), found without the extension's help."""
    shared = [m for m in smaps(pid) if m["perms"][3] == "s"]
    seg = max(shared, key=lambda m: m["end"] - m["start"])
    assert seg["end"] - seg["start"] >= 32 << 20, seg
    return seg


def dsm_mappings(pid: int, data: Path) -> list[dict]:
    return [m for m in smaps(pid)
            if m["path"].startswith("/dev/shm/PostgreSQL.") or m["path"].startswith(f"{data}/pg_dynshmem/")]


def instance_pids(c: Cluster) -> list[int]:
    """The postmaster and all its children (auxiliary processes included)."""
    pm = c.postmaster_pid()
    pids = [pm]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = (d / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pm}\n" in status:
                pids.append(int(d.name))
    return pids


def proc_owner_while_alive(pid: int) -> int | None:
    """The owner of /proc/<pid>/environ, or None when the process is exiting.

    The kernel (task_dump_owner) gives the /proc files of a task without an mm
    -- one past exit_mm, or a zombie -- to root whatever its dumpable flag, so a
    short-lived child (an autovacuum worker) caught while it exits would read as
    non-dumpable. The state is read *after* the owner: an mm once released never
    comes back, so a process with an mm (vsize > 0) that is not a zombie here
    had one when its owner was read."""
    try:
        owner = os.stat(f"/proc/{pid}/environ").st_uid
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    state, vsize = fields[0], int(fields[20])  # stat fields 3 and 23
    if state in ("Z", "X", "x") or vsize == 0:
        return None
    return owner


def status(c: Cluster) -> dict:
    hygiene, dsm, core, refused = c.rows(
        "SELECT memory_hygiene, dsm_dontdump, core_dumps, refused_configurations FROM pg_ephcrypt_status()")[0]
    return {"memory_hygiene": hygiene, "dsm_dontdump": dsm == "t", "core_dumps": core, "refused": int(refused)}


@contextlib.contextmanager
def rlimit(which: int, soft: int, hard: int):
    """Limits for the servers started inside the block (inherited through
    runuser and pg_ctl). Lowering a hard limit could not be undone without
    CAP_SYS_RESOURCE: callers lower soft limits only, or keep hard as is."""
    old = resource.getrlimit(which)
    resource.setrlimit(which, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(which, old)


def pg_ctl_start(c: Cluster, ipc_lock: bool = False) -> None:
    """pg_ctl start -c (lift the soft core-file limit to the hard one: the
    PAM session of runuser resets it to 0) as the server user. With
    `ipc_lock`, the server holds CAP_IPC_LOCK as an ambient capability (what
    systemd's AmbientCapabilities=CAP_IPC_LOCK does): mlock is then not
    bounded by RLIMIT_MEMLOCK, whose hard limit this sandbox cannot raise
    (no CAP_SYS_RESOURCE)."""
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(c.data), "-l", str(c.log), "-c", "-w", "-t", "60", "start"]
    if ipc_lock:
        cmd = ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups",
               "--inh-caps=+ipc_lock", "--ambient-caps=+ipc_lock", "--", *pg_ctl]
    else:
        cmd = _as_pg(pg_ctl)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def started(name: str, conf: dict, memlock: int | None = None, ipc_lock: bool = False) -> Cluster:
    c = Cluster(name, conf={**BASE, **conf}).init()
    with contextlib.ExitStack() as stack:
        if memlock is not None:
            stack.enter_context(rlimit(resource.RLIMIT_MEMLOCK, memlock, resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]))
        pg_ctl_start(c, ipc_lock)
    c.sql("CREATE EXTENSION pg_ephcrypt")
    return c


# -- sessions and cores ------------------------------------------------------


def sleeper(c: Cluster, tag: str) -> tuple[subprocess.Popen, int]:
    """A backend sleeping in a query whose text (its private memory) holds `tag`."""
    s = c.session()
    s.stdin.write(f"SELECT pg_sleep(120) /* {tag} */;\n")
    s.stdin.flush()
    deadline = time.time() + 30
    while time.time() < deadline:
        rows = c.rows(f"SELECT pid FROM pg_stat_activity WHERE query LIKE '%{tag}%' AND state = 'active' "
                      "AND pid <> pg_backend_pid()")
        if rows:
            return s, int(rows[0][0])
        time.sleep(0.1)
    raise AssertionError("sleeping backend not found")


def plant_shared_marker(c: Cluster, marker: str) -> None:
    """Rows holding `marker` in shared buffers. The query text holds only
    fragments of it, so no backend's private memory sees the whole."""
    half = len(marker) // 2
    c.sql(f"CREATE TABLE mem_marked AS SELECT g, '{marker[:half]}' || '{marker[half:]}' || '-' || g AS v "
          "FROM generate_series(1, 3000) g; SELECT count(*) FROM mem_marked")


def gcore(pid: int, where: Path) -> bytes:
    prefix = where / "gcore"
    r = subprocess.run(["gcore", "-o", str(prefix), str(pid)], capture_output=True, text=True, timeout=300)
    path = Path(f"{prefix}.{pid}")
    assert path.exists(), f"gcore {pid} failed:\n{r.stdout}\n{r.stderr}"
    data = path.read_bytes()
    path.unlink()
    return data


def kernel_cores_unavailable() -> str | None:
    """Why the kernel would write no core file here, if it would not."""
    if CORE_PATTERN.startswith("|"):
        return f"kernel cores go to a program ({CORE_PATTERN!r}), a system service's setting"
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        return "the hard RLIMIT_CORE is 0"
    return None


def kernel_core_dir(c: Cluster) -> Path | None:
    """Where the kernel writes a backend's core (None: it writes none)."""
    if kernel_cores_unavailable():
        return None
    if CORE_PATTERN.startswith("/"):
        return Path(CORE_PATTERN).parent
    return c.data  # relative: the crashing process's working directory


def new_core_files(where: Path, since: float) -> list[Path]:
    return [p for p in where.iterdir()
            if p.is_file() and p.name.startswith("core") and p.stat().st_mtime >= since - 1]


def abort_and_collect(c: Cluster, pid: int) -> list[Path]:
    """SIGABRT a backend, wait for the crash-restart, return new core files."""
    where = kernel_core_dir(c)
    t0 = time.time()
    os.kill(pid, signal.SIGABRT)
    deadline = time.time() + 60
    while time.time() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    time.sleep(1)
    c.wait_ready()
    assert "terminated by signal 6" in c.log_text()
    return new_core_files(where, t0) if where else []


# -- tests -------------------------------------------------------------------


@needs_root
@pytest.mark.parametrize("hygiene", ["dontdump", "off"])
def test_cores_of_a_backend_hold_shared_buffers_only_when_off(hygiene):
    """gcore and a kernel core (SIGABRT) of a backend: the marked table in
    shared buffers is absent with dontdump and present with off (control);
    the backend's own query text is in both (the dumps are real)."""
    c = started(f"mem_core_{hygiene}", {"pg_ephcrypt.memory_hygiene": hygiene})
    try:
        assert status(c)["memory_hygiene"] == hygiene
        shared = f"SHBUF-MARKER-{hygiene}-{os.getpid()}"
        private = f"PRIVATE-MARKER-{os.getpid()}"
        plant_shared_marker(c, shared)
        s, pid = sleeper(c, private)
        try:
            core = gcore(pid, c.dir)
            assert private.encode() in core, "gcore: the backend's own query text is in its core"
            assert (shared.encode() in core) == (hygiene == "off"), "gcore: shared buffers"
            seg = main_segment(pid)
            assert ("dd" in seg["flags"]) == (hygiene == "dontdump"), seg
            if kernel_cores_unavailable():
                pytest.skip(f"{kernel_cores_unavailable()}; gcore checked only")
            cores = abort_and_collect(c, pid)
        finally:
            s.kill()
        assert len(cores) == 1, f"one kernel core expected (core_pattern {CORE_PATTERN!r}): {cores}"
        data = cores[0].read_bytes()
        cores[0].unlink()
        assert private.encode() in data, "kernel core: the backend's own query text is in it"
        assert (shared.encode() in data) == (hygiene == "off"), "kernel core: shared buffers"
        # The crash-restart re-created the segment: marked again.
        seg = main_segment(c.postmaster_pid())
        assert ("dd" in seg["flags"]) == (hygiene == "dontdump"), seg
        assert status(c)["memory_hygiene"] == hygiene
    finally:
        c.stop()


PARALLEL_HASH = """
SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0; SET enable_parallel_hash = on;
SET enable_mergejoin = off; SET enable_nestloop = off; SET work_mem = '16MB';
"""


@needs_root
@pytest.mark.parametrize("hygiene", ["dontdump", "off"])
def test_parallel_hash_join_dsm_carries_dd_while_it_runs(hygiene):
    """The DSM segments of a running parallel hash join, in the leader and
    in every worker: all dd with dontdump, none with off (control)."""
    c = started(f"mem_phj_{hygiene}", {"pg_ephcrypt.memory_hygiene": hygiene,
                                       "max_worker_processes": "8", "max_parallel_workers": "4"})
    try:
        c.sql("""
CREATE TABLE pa AS SELECT g AS id, md5(g::text) AS s FROM generate_series(1, 300000) g;
CREATE TABLE pb AS SELECT g AS id, md5(g::text) AS s FROM generate_series(1, 300000) g;
ANALYZE pa; ANALYZE pb;
CREATE FUNCTION slow(i int) RETURNS bool LANGUAGE plpgsql PARALLEL SAFE AS
  $$ BEGIN IF i % 5000 = 0 THEN PERFORM pg_sleep(0.1); END IF; RETURN true; END $$;
""")
        query = "SELECT count(*) FROM pa JOIN pb USING (id) WHERE slow(pa.id)"
        plan = c.sql(PARALLEL_HASH + "EXPLAIN (COSTS OFF) " + query)
        assert "Parallel Hash Join" in plan, plan
        s = c.session()
        s.stdin.write(PARALLEL_HASH + query + ";\n")
        s.stdin.flush()
        seen: dict[int, list[dict]] = {}
        deadline = time.time() + 60
        while time.time() < deadline and s.poll() is None:
            rows = c.rows("SELECT pid, backend_type FROM pg_stat_activity WHERE "
                          "(backend_type = 'parallel worker' OR query LIKE '%slow(pa.id)%') AND pid <> pg_backend_pid()")
            for pid, _kind in rows:
                try:
                    maps = dsm_mappings(int(pid), c.data)
                except OSError:
                    continue  # the worker just exited
                if maps:
                    seen[int(pid)] = maps
            workers = [r for r in rows if r[1] == "parallel worker"]
            if len(seen) >= 2 and workers and any(int(w[0]) in seen for w in workers):
                break
            time.sleep(0.05)
        s.stdin.close()
        s.wait(timeout=120)
        assert len(seen) >= 2, f"leader and at least one worker seen with DSM mapped: {seen}"
        flags = [("dd" in m["flags"]) for maps in seen.values() for m in maps]
        if hygiene == "dontdump":
            assert all(flags), seen
        else:
            assert not any(flags), seen
    finally:
        c.stop()


@needs_root
def test_dontdump_lock_locks_the_main_segment_and_a_small_memlock_limit_is_fatal():
    # Control: the server may lock (CAP_IPC_LOCK), so the segment is locked,
    # and stays so after a crash-restart re-creates it.
    c = started("mem_lock", {"pg_ephcrypt.memory_hygiene": "dontdump_lock"}, ipc_lock=True)
    try:
        seg = main_segment(c.postmaster_pid())
        assert {"lo", "dd"} <= seg["flags"], seg
        assert status(c)["memory_hygiene"] == "dontdump_lock"
        s, pid = sleeper(c, "LOCK-CHECK")
        # A child shares the locked pages; fork does not copy VM_LOCKED.
        assert "dd" in main_segment(pid)["flags"]
        os.kill(pid, signal.SIGKILL)
        s.kill()
        time.sleep(1)
        c.wait_ready()
        seg = main_segment(c.postmaster_pid())
        assert {"lo", "dd"} <= seg["flags"], f"after crash-restart: {seg}"
        assert status(c)["memory_hygiene"] == "dontdump_lock"
    finally:
        c.stop()
    # dontdump alone does not lock (the check can fail).
    c = started("mem_nolock", {"pg_ephcrypt.memory_hygiene": "dontdump"}, ipc_lock=True)
    try:
        seg = main_segment(c.postmaster_pid())
        assert "dd" in seg["flags"] and "lo" not in seg["flags"], seg
        assert status(c)["memory_hygiene"] == "dontdump"
    finally:
        c.stop()

    # A soft limit far below the 32 MB segment, no capability: FATAL with
    # the sizes and a hint, before any mlock.
    small = 4 << 20
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    c = Cluster("mem_lock_small", conf={**BASE, "pg_ephcrypt.memory_hygiene": "dontdump_lock"}).init()
    with rlimit(resource.RLIMIT_MEMLOCK, small, hard):
        with pytest.raises(subprocess.CalledProcessError):
            c.start()
    log = c.log_text()
    assert "FATAL:  pg_ephcrypt cannot lock the main shared memory segment in RAM" in log, log[-2000:]
    assert "RLIMIT_MEMLOCK is 4096 kB" in log, log[-2000:]
    assert "HINT:  Raise the memlock limit" in log, log[-2000:]
    assert not (c.data / "postmaster.pid").exists()

    # on_unsupported = warn: WARNING, and the weaker setting (dontdump).
    c = Cluster("mem_lock_warn", conf={**BASE, "pg_ephcrypt.memory_hygiene": "dontdump_lock",
                                      "pg_ephcrypt.on_unsupported": "warn"}).init()
    with rlimit(resource.RLIMIT_MEMLOCK, small, hard):
        c.start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        assert "WARNING:  pg_ephcrypt cannot lock the main shared memory segment in RAM" in c.log_text()
        st = status(c)
        assert st["memory_hygiene"] == "dontdump" and st["refused"] >= 1, st
        seg = main_segment(c.postmaster_pid())
        assert "dd" in seg["flags"] and "lo" not in seg["flags"], seg
    finally:
        c.stop()


def gdb_attach_as_server_user(pid: int) -> subprocess.CompletedProcess:
    return subprocess.run(_as_pg(["gdb", "-nx", "-batch", "-p", str(pid), "-ex", "info inferiors"]),
                          capture_output=True, text=True, timeout=120)


@needs_root
@pytest.mark.parametrize("core_dumps", ["off", "on"])
def test_core_dumps_off_leaves_no_core_and_refuses_ptrace(core_dumps):
    """core_dumps = off: every process of the instance is non-dumpable (its
    /proc/<pid>/environ belongs to root), gdb -p by the server's user fails, and a
    SIGABRT leaves no core file. core_dumps = on is the control."""
    c = started(f"mem_dump_{core_dumps}", {"pg_ephcrypt.core_dumps": core_dumps})
    try:
        assert status(c)["core_dumps"] == core_dumps
        s, pid = sleeper(c, f"DUMPABLE-{core_dumps}")
        try:
            pids = instance_pids(c)
            assert pid in pids and len(pids) >= 5, pids  # postmaster, auxiliaries, the backend
            pg_uid = int(subprocess.check_output(["id", "-u", PG_USER], text=True))
            # The kernel gives a non-dumpable process's /proc files (not the
            # world-readable /proc/<pid> directory itself) to root.
            owners = {}
            for p in pids:
                owner = proc_owner_while_alive(p)
                if owner is not None:
                    owners[p] = owner
            assert pid in owners and c.postmaster_pid() in owners and len(owners) >= 4, owners
            expected = 0 if core_dumps == "off" else pg_uid
            assert all(u == expected for u in owners.values()), owners
            r = gdb_attach_as_server_user(pid)
            attached = "process " + str(pid) in r.stdout and "ptrace: Operation not permitted" not in r.stderr
            assert attached == (core_dumps == "on"), f"gdb -p as {PG_USER}:\n{r.stdout}\n{r.stderr}"
            if kernel_cores_unavailable():
                pytest.skip(f"{kernel_cores_unavailable()}; ptrace checked only")
            cores = abort_and_collect(c, pid)
        finally:
            s.kill()
        for p in cores:
            p.unlink()
        assert len(cores) == (0 if core_dumps == "off" else 1), cores
        # The new children after the crash-restart are non-dumpable too.
        assert status(c)["core_dumps"] == core_dumps
    finally:
        c.stop()


@needs_root
def test_other_shared_memory_types():
    # shared_memory_type = sysv: the main segment is a SysV segment (shmat),
    # marked all the same.
    c = started("mem_sysv", {"shared_memory_type": "sysv"})
    try:
        seg = main_segment(c.postmaster_pid())
        assert seg["path"].startswith("/SYSV") and "dd" in seg["flags"], seg
        assert status(c)["memory_hygiene"] == "dontdump"
    finally:
        c.stop()

    # dynamic_shared_memory_type = mmap: segments are files in pg_dynshmem;
    # the postmaster's control segment is one. Control: off leaves it.
    for hygiene in ("dontdump", "off"):
        c = started(f"mem_dsm_mmap_{hygiene}", {"dynamic_shared_memory_type": "mmap",
                                                "pg_ephcrypt.memory_hygiene": hygiene})
        try:
            maps = dsm_mappings(c.postmaster_pid(), c.data)
            assert maps and all("/pg_dynshmem/mmap." in m["path"] for m in maps), maps
            assert all(("dd" in m["flags"]) == (hygiene == "dontdump") for m in maps), maps
            assert status(c)["dsm_dontdump"] == (hygiene == "dontdump")
        finally:
            c.stop()

    # dynamic_shared_memory_type = sysv maps with shmat, which is not
    # interposed: refused, or a WARNING and no DSM marking under warn.
    c = Cluster("mem_dsm_sysv", conf={**BASE, "dynamic_shared_memory_type": "sysv"}).init()
    with pytest.raises(subprocess.CalledProcessError):
        c.start()
    log = c.log_text()
    assert "FATAL:  pg_ephcrypt cannot keep shared memory out of core dumps: dynamic_shared_memory_type = sysv" in log
    assert "HINT:" in log
    c = started("mem_dsm_sysv_warn", {"dynamic_shared_memory_type": "sysv", "pg_ephcrypt.on_unsupported": "warn"})
    try:
        assert "WARNING:  pg_ephcrypt cannot keep shared memory out of core dumps" in c.log_text()
        st = status(c)
        assert st["memory_hygiene"] == "dontdump" and not st["dsm_dontdump"] and st["refused"] >= 1, st
    finally:
        c.stop()


def test_settings_are_postmaster_only_and_a_bad_value_keeps_the_default():
    c = started("mem_gucs", {})
    try:
        assert c.sql("SHOW pg_ephcrypt.memory_hygiene") == "dontdump"
        assert c.sql("SHOW pg_ephcrypt.core_dumps") == "on"
        with pytest.raises(SqlError) as err:
            c.sql("SET pg_ephcrypt.memory_hygiene = off")
        assert err.value.sqlstate == "55P02", err.value.stderr  # needs a restart
    finally:
        c.stop()
    # PostgreSQL applies a custom setting from postgresql.conf when the
    # library defines it; a bad value is a WARNING and the default (the
    # protective dontdump) stays in force.
    c = started("mem_gucs_bad", {"pg_ephcrypt.memory_hygiene": "maybe"})
    try:
        assert 'invalid value for parameter "pg_ephcrypt.memory_hygiene": "maybe"' in c.log_text()
        assert c.sql("SHOW pg_ephcrypt.memory_hygiene") == "dontdump"
        assert status(c)["memory_hygiene"] == "dontdump"
    finally:
        c.stop()
