"""In-flight WAL artifacts: logical-decoding spill files (publisher) and
streamed in-progress transactions (subscriber file sets) are ciphertext, and
decoding / replication results equal those of a control cluster."""

from __future__ import annotations

import subprocess
import time

import pytest

from cluster import PG_BIN, Cluster, _as_pg, kill9
from ondisk import MAGIC, Poller, covered_files

MARKER = b"MARKER-"
ROWS = 500_000

LOGICAL = {
    "wal_level": "logical",
    "max_replication_slots": "8",
    "max_wal_senders": "8",
    "logical_decoding_work_mem": "'64kB'",
    "max_worker_processes": "16",
}

BIG_TXN = f"""
CREATE TABLE big (g int PRIMARY KEY, s text);
BEGIN;
INSERT INTO big SELECT g, 'MARKER-' || md5(g::text) FROM generate_series(1, {ROWS}) g;
COMMIT;
"""

DECODE = (
    "SELECT count(*), md5(string_agg(data, E'\\n')) "
    "FROM pg_logical_slot_get_changes('s', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1')"
)


def spill_files(c: Cluster):
    return [f for f in covered_files(c.data) if f.name.endswith(".spill")]


@pytest.fixture(scope="module")
def decoded():
    """Decode one big transaction on an encrypted and a control cluster."""
    out = {}
    for name, preload in (("ld_enc", True), ("ld_ctl", False)):
        c = Cluster(name, preload=preload, conf=LOGICAL).init().start()
        try:
            if preload:
                c.sql("CREATE EXTENSION pg_ephcrypt")
            c.sql("SELECT pg_create_logical_replication_slot('s', 'test_decoding')")
            c.sql(BIG_TXN)
            with Poller(c.data, MARKER, interval=0.05) as p:
                result = c.sql(DECODE)
            out[name] = (result, p.result)
            assert not spill_files(c), "spill files are removed after decoding"
        finally:
            c.stop()
    return out


def test_decoding_output_equals_control(decoded):
    enc, _ = decoded["ld_enc"]
    ctl, _ = decoded["ld_ctl"]
    assert enc == ctl
    # BEGIN + ROWS inserts + COMMIT
    assert int(enc.split("\t")[0]) == ROWS + 2


def test_spill_files_are_ciphertext_with_header(decoded):
    _, res = decoded["ld_enc"]
    spills = {f for f in res.files_with_data if f.endswith(".spill")}
    assert spills, "the transaction spilled (logical_decoding_work_mem = 64kB)"
    assert not res.marker_hits, f"plaintext in {sorted(res.marker_hits)}"
    assert not res.bad_headers, f"no header: {sorted(res.bad_headers)}"


def test_control_spill_files_show_plaintext(decoded):
    _, res = decoded["ld_ctl"]
    assert any(f.endswith(".spill") for f in res.marker_hits), "the scanner finds markers without the extension"


def test_walsender_killed_mid_decode_resumes():
    c = Cluster("ld_kill", conf=LOGICAL).init().start()
    ctl = Cluster("ld_kill_ctl", preload=False, conf=LOGICAL).init().start()
    recv = None
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        for x in (c, ctl):
            x.sql("SELECT pg_create_logical_replication_slot('s', 'test_decoding')")
            x.sql(BIG_TXN)
        epoch_before = c.sql("SELECT epoch_id FROM pg_ephcrypt_status()")
        # A walsender decodes the slot for pg_recvlogical.
        recv = subprocess.Popen(
            _as_pg([str(PG_BIN / "pg_recvlogical"), "-h", str(c.dir), "-p", str(c.port), "-U", "postgres",
                    "-d", "postgres", "--slot", "s", "--start", "--no-loop", "-f", "/dev/null",
                    "-o", "include-xids=0"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while time.time() < deadline and not spill_files(c):
            time.sleep(0.02)
        assert spill_files(c), "the walsender started spilling"
        for f in spill_files(c):
            data = f.read_bytes()
            if data:
                assert data.startswith(MAGIC) and MARKER not in data
        pids = [int(r[0]) for r in c.rows("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'")]
        assert pids, "walsender running"
        kill9(pids[0])
        recv.wait(timeout=60)
        time.sleep(1)
        c.wait_ready()
        # Crash-restart: a new key epoch; the old spill files are gone.
        assert c.sql("SELECT epoch_id FROM pg_ephcrypt_status()") != epoch_before
        assert not spill_files(c)
        # The slot did not confirm the big transaction: decoding it again
        # from the slot gives exactly what the control cluster decodes.
        assert c.sql(DECODE) == ctl.sql(DECODE)
    finally:
        if recv and recv.poll() is None:
            recv.kill()
        c.stop()
        ctl.stop()


def test_subscriber_streaming_files_are_ciphertext():
    pub = Cluster("ls_pub", conf=LOGICAL).init().start()
    sub = Cluster("ls_sub", conf={**LOGICAL, "logical_decoding_work_mem": "'64kB'"}).init().start()
    try:
        for x in (pub, sub):
            x.sql("CREATE EXTENSION pg_ephcrypt")
            x.sql("CREATE TABLE big (g int PRIMARY KEY, s text)")
        pub.sql("CREATE PUBLICATION pub FOR TABLE big")
        sub.sql(
            f"CREATE SUBSCRIPTION sub CONNECTION 'host={pub.dir} port={pub.port} user=postgres dbname=postgres' "
            "PUBLICATION pub WITH (streaming = on)"
        )
        # Wait until the initial (empty) sync is done.
        deadline = time.time() + 60
        while time.time() < deadline:
            if sub.sql("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'") == "0":
                break
            time.sleep(0.2)
        with Poller(sub.data, MARKER, interval=0.02) as psub, Poller(pub.data, MARKER, interval=0.05) as ppub:
            pub.sql(f"INSERT INTO big SELECT g, 'MARKER-' || md5(g::text) FROM generate_series(1, {ROWS}) g")
            deadline = time.time() + 300
            while time.time() < deadline:
                if sub.sql("SELECT count(*) FROM big") == str(ROWS):
                    break
                time.sleep(0.5)
        digest = "SELECT count(*), md5(string_agg(g::text || s, ',' ORDER BY g)) FROM big"
        assert sub.sql(digest) == pub.sql(digest)
        streamed = {f for f in psub.result.files_with_data if ".changes" in f}
        assert streamed, f"the subscriber spooled the streamed transaction; seen {sorted(psub.result.files_seen)[:5]}"
        for res in (psub.result, ppub.result):
            assert not res.marker_hits, f"plaintext in {sorted(res.marker_hits)}"
            assert not res.bad_headers, f"no header: {sorted(res.bad_headers)}"
    finally:
        sub.sql("ALTER SUBSCRIPTION sub DISABLE") if sub.data.exists() else None
        sub.stop()
        pub.stop()
