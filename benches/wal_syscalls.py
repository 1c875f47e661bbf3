#!/usr/bin/env python3
"""System calls per commit of the `wal` class (a deterministic companion of
benches/wal.py, which measures TPS): `strace -c -f` of every process of a
primary and its synchronous standby during N single-row commits, sealed
(enc) and plain. Prints strace's tables and the calls per commit.

Run: python3 benches/wal_syscalls.py [N] [enc|plain ...]   (needs strace;
PG_CONFIG as for the e2e tests; clusters under PG_EPHCRYPT_E2E_DIR)."""
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cluster import E2E  # noqa: E402
from walcluster import primary, standby, wait_until  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
COMMON = {"shared_buffers": "'128MB'", "max_wal_size": "'1GB'", "checkpoint_timeout": "'15min'", "wal_compression": "off", "jit": "off"}

def pids_of(c):
    pm = c.postmaster_pid()
    out = [pm]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/status").read()
            except OSError:
                continue
            if f"\nPPid:\t{pm}\n" in st:
                out.append(int(d))
    return out

def run(mode):
    wal = mode == "enc"
    p = primary(f"sys_{mode}_p", wal=wal, conf=COMMON).start()
    p.sql("CREATE EXTENSION pg_ephcrypt; CREATE TABLE t (id int, v text)")
    s = standby(p, f"sys_{mode}_s", wal=wal, slot=f"sys_{mode}", conf=COMMON)
    p.sql("ALTER SYSTEM SET synchronous_standby_names = '*'"); p.sql("SELECT pg_reload_conf()")
    wait_until(lambda: p.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1", what="sync")
    sess = p.session()
    time.sleep(1)
    pids = pids_of(p) + pids_of(s)
    out = E2E / f"strace-{mode}.txt"
    args = ["strace", "-c", "-f", "-o", str(out)]
    for x in pids:
        args += ["-p", str(x)]
    st = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    time.sleep(2)
    sql = "".join(f"INSERT INTO t VALUES ({i}, 'x');\n" for i in range(N))
    sess.stdin.write(sql + "\\echo DONE\n"); sess.stdin.flush()
    while "DONE" not in sess.stdout.readline():
        pass
    st.send_signal(2); st.wait()
    sess.kill()
    s.stop(quiet=True); p.stop(quiet=True)
    table = out.read_text()
    total = [ln for ln in table.splitlines() if ln.rstrip().endswith(" total")]
    calls = int(total[0].split()[3]) if total else 0
    print(f"{mode}: {calls} system calls, {calls / N:.1f} per commit\n{table}")

if __name__ == "__main__":
    for m in sys.argv[2:] or ["plain", "enc"]:
        run(m)
