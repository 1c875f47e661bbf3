#!/usr/bin/env python3
"""System calls of spilling parallel hash joins on a real server: temp files
sealed (default classes) against not sealed (`pg_ephcrypt.classes = none`),
both with the library preloaded and `memory_hygiene = off`.

`strace -f -c` follows the postmaster while three parallel hash joins of
2 x ROWS rows run (the tables of benches/memory.py, `work_mem = 4MB`): the
file-set members of the batches are the shared files of FORMAT.md §8. It
shows which extra calls sealing adds per call PostgreSQL makes (DECISIONS
#64: since the change counters, one metadata page write per block written;
the per-call size query and trailer read are skipped when no other process
wrote the file). Results are checked equal in both modes.

Run: python3 benches/phj_syscalls.py [ROWS]   (root, strace; the extension
installed as for benches/memory.py)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory as M  # noqa: E402
import memory_syscalls as MS  # noqa: E402

CALLS = ("pread64", "pwrite64", "newfstatat", "fstat", "lseek", "openat", "close", "unlink", "ftruncate")
MODES = {
    "sealed": {"pg_ephcrypt.memory_hygiene": "off"},
    "not_sealed": {"pg_ephcrypt.memory_hygiene": "off", "pg_ephcrypt.classes": "'none'"},
}


def main() -> int:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 400_000
    MS.CALLS = CALLS
    M.MODE_CONF.update(MODES)
    counts: dict[str, dict[str, int]] = {}
    results = set()
    for mode in MODES:
        c = M.MemCluster(mode).init().start()
        try:
            c.sql("CREATE EXTENSION pg_ephcrypt")
            sealing = c.rows("SELECT count(*) FROM pg_ephcrypt_stats WHERE class = 'temp_files' AND enabled")[0][0]
            if (sealing == "1") != (mode == "sealed"):
                raise SystemExit(f"{mode}: temp_files enabled = {sealing}")
            c.sql(f"""
CREATE TABLE t1 AS SELECT g, md5(g::text) || md5((g + 1)::text) AS s FROM generate_series(1, {rows}) g;
CREATE TABLE t2 AS SELECT g, md5((g * 7)::text) || md5((g * 7 + 1)::text) AS s FROM generate_series(1, {rows}) g;
ANALYZE t1; ANALYZE t2;""")
            plan = c.sql(M.PHJ_SETTINGS + "EXPLAIN (COSTS OFF) " + M.PHJ_QUERY)
            if "Parallel Hash Join" not in plan:
                raise SystemExit(f"{mode}: no parallel hash join:\n{plan}")
            out: list[str] = []
            q = M.PHJ_SETTINGS + "\n" + M.PHJ_QUERY + ";\n"
            counts[mode] = MS.traced(c, lambda: out.extend(c.sql(q).strip() for _ in range(3)))
            results.update(out)
            sealed = int(c.rows("SELECT bytes_sealed FROM pg_ephcrypt_stats WHERE class = 'temp_files'")[0][0])
            if (sealed > 0) != (mode == "sealed"):
                raise SystemExit(f"{mode}: temp_files bytes_sealed = {sealed}")
            files, nbytes = c.rows("SELECT temp_files, temp_bytes FROM pg_stat_database "
                                   "WHERE datname = current_database()")[0]
            print(f"{mode}: {files} temp files, {int(nbytes) / 2**20:.0f} MiB (3 joins)", flush=True)
        finally:
            c.stop(quiet=True)
    if len(results) != 1:
        raise SystemExit(f"results differ between modes: {results}")
    print("\n| call | sealed | not sealed | sealed - not |")
    print("|---|---:|---:|---:|")
    for k in CALLS:
        a, b = counts["sealed"][k], counts["not_sealed"][k]
        print(f"| {k} | {a} | {b} | {a - b:+d} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
