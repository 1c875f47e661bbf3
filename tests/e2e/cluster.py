"""Throwaway PostgreSQL clusters for end-to-end tests.

Each cluster lives under build/e2e-<server build>/<name> (PG_EPHCRYPT_E2E_DIR), runs as the server user (PostgreSQL
refuses root), listens only on a Unix socket in its own directory, and is
driven with psql. Nothing here talks to the network.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
PG_CONFIG = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
PG_BIN = Path(subprocess.check_output([PG_CONFIG, "--bindir"], text=True).strip())
# One directory per server build (scripts/cluster.sh: use_target), so runs on
# different majors never share a cluster directory.
E2E = Path(os.environ.get("PG_EPHCRYPT_E2E_DIR", str(BUILD / "e2e")))
# Extra server settings for every cluster of a run, e.g.
# PG_EPHCRYPT_E2E_CONF="io_method=sync" to run the suite under 18's
# synchronous I/O instead of its I/O workers. A test's own settings win.
EXTRA_CONF = dict(
    item.split("=", 1) for item in os.environ.get("PG_EPHCRYPT_E2E_CONF", "").split(";") if item.strip()
)
PG_USER = os.environ.get("PG_USER") or ("postgres" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name)


class SqlError(Exception):
    """psql failed; `.sqlstate` and `.stderr` tell why."""

    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr
        self.sqlstate = None
        for line in stderr.splitlines():
            # VERBOSITY=verbose prints "ERROR:  55000: message"
            parts = line.split(":", 2)
            if len(parts) >= 2 and parts[0].strip() in ("ERROR", "FATAL") and len(parts[1].strip()) == 5:
                self.sqlstate = parts[1].strip()
                break


def _as_pg(cmd: list[str]) -> list[str]:
    if os.getuid() == 0 and PG_USER != "root":
        return ["runuser", "-u", PG_USER, "--"] + cmd
    return cmd


class Cluster:
    _next_port = 55400 + (os.getpid() % 200) * 10
    # Every cluster initialised in this run, for conftest.py's clean-up: the
    # directories of a module whose tests all passed are removed at its end
    # (forty clusters of 40-300 MB each per server build otherwise fill the
    # CI machine's disk); a failed module keeps its clusters for inspection.
    created: list["Cluster"] = []

    def __init__(self, name: str, preload: bool = True, conf: dict | None = None,
                 initdb_args: list[str] | None = None):
        self.dir = E2E / name
        self.initdb_args = initdb_args or []
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        Cluster._next_port += 1
        self.port = Cluster._next_port
        self.preload = preload
        self.conf = conf or {}

    # -- life cycle ---------------------------------------------------------
    def init(self) -> "Cluster":
        self.stop(quiet=True)
        Cluster.created.append(self)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.dir.parent.chmod(0o755)
        if os.getuid() == 0:
            shutil.chown(self.dir, PG_USER)
        subprocess.run(
            _as_pg([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                    *self.initdb_args]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.dir}'",
            "fsync": "off",
            "max_connections": "40",
        }
        if self.preload:
            settings["shared_preload_libraries"] = "'pg_ephcrypt'"
        settings.update({k.strip(): v.strip() for k, v in EXTRA_CONF.items()})
        settings.update(self.conf)
        self.append_conf(settings)
        return self

    def append_conf(self, settings: dict) -> None:
        text = "".join(f"{k} = {v}\n" for k, v in settings.items())
        subprocess.run(_as_pg(["tee", "-a", str(self.data / "postgresql.conf")]), input=text, text=True,
                       check=True, stdout=subprocess.DEVNULL)

    def start(self) -> "Cluster":
        subprocess.run(
            _as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return self

    def stop(self, quiet: bool = False, mode: str = "fast") -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        subprocess.run(
            _as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"]),
            check=not quiet,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def remove(self) -> None:
        """Stop the server (immediate: its data is thrown away) and delete the directory."""
        try:
            self.stop(quiet=True, mode="immediate")
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def cpu_seconds(self) -> float:
        """CPU time of the whole instance so far (benchmarks): the
        postmaster's own and its reaped children's (utime, stime, cutime,
        cstime of /proc/<pid>/stat), plus every live child's."""
        def fields(pid: int) -> list[str]:
            stat = Path(f"/proc/{pid}/stat").read_text()
            return stat[stat.rindex(")") + 2:].split()
        pm = self.postmaster_pid()

        def children() -> list[list[str]]:
            out = []
            for d in Path("/proc").iterdir():
                if d.name.isdigit():
                    try:
                        g = fields(int(d.name))
                    except (OSError, ValueError):
                        continue  # gone meanwhile: its time is in the postmaster's cutime
                    if int(g[1]) == pm:
                        out.append(g)
            return out

        # A child that has exited but is not reaped yet (a backend of a
        # client that just disconnected) shows no time of its own, and its
        # time reaches cutime only when reaped: wait for the reaping.
        deadline = time.time() + 5
        kids = children()
        while any(g[0] == "Z" for g in kids) and time.time() < deadline:
            time.sleep(0.005)
            kids = children()
        ticks = sum(int(x) for x in fields(pm)[11:15]) + sum(int(g[11]) + int(g[12]) for g in kids)
        return ticks / os.sysconf("SC_CLK_TCK")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run(
                _as_pg([str(PG_BIN / "pg_isready"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres"]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if r.returncode == 0:
                try:
                    self.sql("SELECT 1")
                    return
                except SqlError:
                    pass
            time.sleep(0.2)
        raise TimeoutError(f"cluster {self.dir} not ready; log:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- SQL ------------------------------------------------------------------
    def _psql(self, db: str) -> list[str]:
        return _as_pg([
            str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-v", "VERBOSITY=verbose", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", "-d", db,
        ])

    def sql(self, query: str, db: str = "postgres", timeout: float = 600) -> str:
        """Run SQL (several statements allowed); return the unaligned output."""
        r = subprocess.run(self._psql(db), input=query, text=True, capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise SqlError(r.stderr)
        return r.stdout.strip()

    def rows(self, query: str, db: str = "postgres") -> list[list[str]]:
        out = self.sql(query, db)
        return [line.split("\t") for line in out.splitlines() if line]

    def session(self, db: str = "postgres") -> subprocess.Popen:
        """A long-lived psql session fed through stdin (holds files open)."""
        return subprocess.Popen(self._psql(db), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def backend_pids(self) -> list[int]:
        return [int(r[0]) for r in self.rows(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")]


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def crash_a_backend(c: "Cluster") -> None:
    """kill -9 a client backend (an idle-in-sleep session): the postmaster
    then crash-restarts every child and re-initializes shared memory."""
    victim = c.session()
    victim.stdin.write("SELECT pg_sleep(60);\n")
    victim.stdin.flush()
    deadline = time.time() + 10
    pids: list[int] = []
    while not pids and time.time() < deadline:
        pids = c.backend_pids()
        time.sleep(0.1)
    assert pids, "victim backend not found"
    kill9(pids[0])
    victim.kill()
