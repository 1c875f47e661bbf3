"""scripts/package.sh: the Debian package installs with dpkg, a cluster
preloading it starts and creates the extension, and dpkg -r removes every
file again; the tarball's install.sh installs the same bytes where a
pg_config says. The system's PostgreSQL 15 directories are shared with the
test suites (install_extension): the suite's own library is put back
afterwards, on a new inode, and the dpkg steps wait while another suite runs."""

import hashlib
import re
import io
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from cluster import BUILD, PG_CONFIG, ROOT, Cluster

OUT = BUILD / "e2e-packages"
PKG = "postgresql-15-pg-ephcrypt"


def pg_config(flag: str) -> str:
    return subprocess.check_output([PG_CONFIG, flag], text=True).strip()


# The major of the server under test ("PostgreSQL 16.15" -> "16"): packages
# are per major, and this suite runs on every server build.
MAJOR = re.match(r"PostgreSQL (\d+)", pg_config("--version")).group(1)
OTHER_MAJOR = "16" if MAJOR != "16" else "17"


def version() -> str:
    for line in (ROOT / "Cargo.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version")


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _debian_server() -> bool:
    """Whether PG_CONFIG's server is the installed Debian package
    postgresql-15 (then package.sh makes a .deb)."""
    postgres = Path(pg_config("--bindir")) / "postgres"
    r = subprocess.run(["dpkg-query", "-S", str(postgres)], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.split(":")[0] == "postgresql-15"


needs_deb = pytest.mark.skipif(not _debian_server(), reason="PG_CONFIG is not Debian's postgresql-15: no .deb")


@pytest.fixture(scope="module")
def packages():
    if OUT.exists():
        shutil.rmtree(OUT)
    env = dict(os.environ, PACKAGE_OUT=str(OUT))
    subprocess.run([str(ROOT / "scripts" / "package.sh"), PG_CONFIG], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    ver = version()
    deb = OUT / f"{PKG}_{ver}_{subprocess.check_output(['dpkg', '--print-architecture'], text=True).strip()}.deb"
    tgz = OUT / f"pg_ephcrypt-{ver}-pg{MAJOR}-{os.uname().machine}.tar.gz"
    assert tgz.exists(), list(OUT.iterdir())
    assert deb.exists() == _debian_server(), list(OUT.iterdir())
    return deb, tgz


@needs_deb
def test_deb_metadata_and_contents(packages):
    deb, _ = packages
    field = lambda f: subprocess.check_output(["dpkg-deb", "-f", str(deb), f], text=True).strip()  # noqa: E731
    assert field("Package") == PKG and field("Version") == version()
    assert field("Depends").split(",")[0].strip() == "postgresql-15"
    assert field("Maintainer") and field("Section") == "database"
    listing = subprocess.check_output(["dpkg-deb", "-c", str(deb)], text=True).splitlines()
    files = {line.split()[-1].lstrip(".") for line in listing if not line.startswith("d")}
    ext = pg_config("--sharedir") + "/extension"
    assert files == {
        pg_config("--pkglibdir") + "/pg_ephcrypt.so",
        f"{ext}/pg_ephcrypt.control",
        f"{ext}/pg_ephcrypt--{version()}.sql",
        f"{ext}/pg_ephcrypt--0.1.0--{version()}.sql",
        f"{ext}/pg_ephcrypt--0.1.0.sql",
        f"/usr/share/doc/{PKG}/copyright",
    }, files
    assert all(line.split()[1] == "root/root" for line in listing), "root-owned files"


def _others_running() -> list[str]:
    """pytest or cargo-pgrx processes of other suites (not ours, not our
    ancestors): they may install into or start clusters from the same
    PostgreSQL 15 directories."""
    mine = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        mine.add(pid)
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in mine:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if ("pytest" in cmd or "cargo-pgrx pgrx" in cmd or "cargo pgrx" in cmd) and not cwd.startswith(str(ROOT)):
            out.append(f"{d.name} {cmd[:120]}")
    return out


def _wait_for_quiet_machine():
    limit = float(os.environ.get("PG_EPHCRYPT_DPKG_WAIT", "1200"))
    deadline = time.time() + limit
    while True:
        others = _others_running()
        if not others:
            return
        if time.time() > deadline:
            pytest.skip(f"other test suites kept running for {limit:.0f} s; not touching the shared "
                        f"PostgreSQL 15 directories with dpkg: {others[:3]}")
        time.sleep(10)


def _dpkg(*args: str) -> subprocess.CompletedProcess:
    for _ in range(30):  # the dpkg lock may be held by an apt-get of setup.sh
        r = subprocess.run(["dpkg", *args], capture_output=True, text=True)
        if r.returncode == 0 or "lock" not in r.stderr:
            return r
        time.sleep(2)
    return r


def _installed() -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", PKG], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == "installed"


class SuiteFiles:
    """The suite's own extension files in the system directories, saved and
    put back (the library onto a new inode: a running cluster keeps its map)."""

    def __init__(self, backup: Path):
        self.backup = backup
        self.libdir = Path(pg_config("--pkglibdir"))
        self.ext = Path(pg_config("--sharedir")) / "extension"

    def files(self) -> list[Path]:
        return [p for p in [self.libdir / "pg_ephcrypt.so", *sorted(self.ext.glob("pg_ephcrypt*"))] if p.is_file()]

    def save(self) -> None:
        if self.backup.exists():
            shutil.rmtree(self.backup)
        (self.backup / "lib").mkdir(parents=True)
        (self.backup / "ext").mkdir()
        for p in self.files():
            shutil.copy2(p, self.backup / ("lib" if p.parent == self.libdir else "ext") / p.name)

    def restore(self) -> None:
        for p in (self.backup / "lib").iterdir():
            tmp = self.libdir / f".{p.name}.restore"
            shutil.copy2(p, tmp)
            os.replace(tmp, self.libdir / p.name)
        for p in (self.backup / "ext").iterdir():
            shutil.copy2(p, self.ext / p.name)


@needs_deb
@pytest.mark.skipif(os.getuid() != 0, reason="dpkg -i needs root")
def test_deb_installs_runs_and_removes_cleanly(packages):
    deb, _ = packages
    _wait_for_quiet_machine()
    suite = SuiteFiles(OUT / "suite-files")
    suite.save()
    saved = {p.name: sha256(p) for p in suite.files()}
    assert "pg_ephcrypt.so" in saved, "the e2e tier installs the extension first"
    if _installed():
        assert _dpkg("-r", PKG).returncode == 0
    c = Cluster("package")
    try:
        r = _dpkg("-i", str(deb))
        assert r.returncode == 0, r.stdout + r.stderr
        assert _installed()
        owned = [Path(p) for p in subprocess.check_output(["dpkg", "-L", PKG], text=True).split()]
        owned_files = [p for p in owned if p.is_file()]
        so = Path(pg_config("--pkglibdir")) / "pg_ephcrypt.so"
        assert so in owned_files
        verify = _dpkg("--verify", PKG)
        assert verify.returncode == 0 and verify.stdout == "", verify.stdout + verify.stderr
        pkg_so = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(pkg_so)) as t:
            deb_so_sha = hashlib.sha256(t.extractfile("." + str(so)).read()).hexdigest()
        assert sha256(so) == deb_so_sha

        # A cluster with the preload, the extension, its status; the
        # attestation names the library the package installed.
        c.init().start()
        c.sql("CREATE EXTENSION pg_ephcrypt")
        assert c.sql("SELECT version FROM pg_ephcrypt_status()") == version()
        assert c.sql("SELECT cardinality(classes) FROM pg_ephcrypt_status()") == "3"
        doc_sha = c.sql("SELECT pg_ephcrypt_attest('\\x0011223344556677'::bytea)->>'library_sha256'")
        assert doc_sha == deb_so_sha
        c.sql("SET work_mem = '64kB'; SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 30000) g "
              "ORDER BY 1) s")
        assert int(c.sql("SELECT bytes_sealed FROM pg_ephcrypt_stats WHERE class = 'temp_files'")) > 0
        c.stop()

        # dpkg -r: every file of the package is gone, the package too.
        r = _dpkg("-r", PKG)
        assert r.returncode == 0, r.stdout + r.stderr
        assert not _installed()
        left = [p for p in owned_files if p.exists()]
        assert left == [], left
        assert not (Path("/usr/share/doc") / PKG).exists()
        # Control: without the package the preloading cluster does not start.
        with pytest.raises(subprocess.CalledProcessError):
            c.start()
        assert "could not access file \"pg_ephcrypt\"" in c.log_text()
    finally:
        c.stop(quiet=True)
        if _installed():
            _dpkg("-r", PKG)
        suite.restore()
    assert {p.name: sha256(p) for p in suite.files()} == saved, "the suite's files are back"


def test_tarball_install_script(packages, tmp_path):
    deb, tgz = packages
    with tarfile.open(tgz) as t:
        members = t.getmembers()
        assert all(m.uid == 0 and m.gid == 0 for m in members)
    subprocess.run(["tar", "-C", str(tmp_path), "-xzf", str(tgz)], check=True)
    top = tmp_path / f"pg_ephcrypt-{version()}-pg{MAJOR}"
    assert sorted(p.name for p in (top / "extension").iterdir()) == sorted(
        ["pg_ephcrypt.control", f"pg_ephcrypt--{version()}.sql", f"pg_ephcrypt--0.1.0--{version()}.sql",
         "pg_ephcrypt--0.1.0.sql"])
    so = (top / "lib" / "pg_ephcrypt.so").read_bytes()
    assert hashlib.sha256(so).hexdigest() in (top / "SHA256SUMS").read_text()
    if deb.exists():  # the same bytes as the .deb
        fs = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(fs)) as t:
            assert t.extractfile("." + pg_config("--pkglibdir") + "/pg_ephcrypt.so").read() == so

    # install.sh against a pg_config that points into a scratch prefix.
    prefix = tmp_path / "prefix"

    def fake_pg_config(major: str) -> Path:
        p = tmp_path / f"pg_config_{major}"
        p.write_text("#!/bin/sh\ncase \"$1\" in\n"
                     f"  --version) echo 'PostgreSQL {major}.99' ;;\n"
                     f"  --pkglibdir) echo '{prefix}/lib' ;;\n"
                     f"  --sharedir) echo '{prefix}/share' ;;\n"
                     "esac\n")
        p.chmod(0o755)
        return p

    r = subprocess.run([str(top / "install.sh"), str(fake_pg_config(MAJOR))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (prefix / "lib" / "pg_ephcrypt.so").read_bytes() == so
    assert (prefix / "share" / "extension" / "pg_ephcrypt.control").exists()
    # Reinstalling puts the library on a new inode (a running server keeps
    # its mapping).
    ino = (prefix / "lib" / "pg_ephcrypt.so").stat().st_ino
    assert subprocess.run([str(top / "install.sh"), str(fake_pg_config(MAJOR))], capture_output=True).returncode == 0
    assert (prefix / "lib" / "pg_ephcrypt.so").stat().st_ino != ino
    # Controls: another major is refused; a damaged file is refused.
    r = subprocess.run([str(top / "install.sh"), str(fake_pg_config(OTHER_MAJOR))], capture_output=True, text=True)
    assert r.returncode != 0 and f"built for PostgreSQL {MAJOR}" in r.stderr
    with open(top / "extension" / "pg_ephcrypt.control", "a") as f:
        f.write("# changed\n")
    r = subprocess.run([str(top / "install.sh"), str(fake_pg_config(MAJOR))], capture_output=True, text=True)
    assert r.returncode != 0
