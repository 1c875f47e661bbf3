"""Attestation seen from an auditor's side: the offline CLI verifier, and a
document from a previous epoch."""

import os
import subprocess
import time

import pytest

from cluster import ROOT, Cluster, crash_a_backend

VERIFY = ROOT / "target" / "release" / "ephcrypt-verify"


@pytest.fixture(scope="module")
def verifier():
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "ephcrypt-attest", "--bin", "ephcrypt-verify"],
                   cwd=ROOT, check=True)
    assert VERIFY.exists()
    return VERIFY


def attest(c: Cluster, challenge_hex: str):
    pk = c.sql("SELECT encode(attestation_public_key, 'hex') FROM pg_ephcrypt_status()")
    doc = c.sql(f"SELECT pg_ephcrypt_attest('\\x{challenge_hex}'::bytea)")
    return pk, doc


def run_verify(verifier, doc: str, *args):
    return subprocess.run([str(verifier), *args, "-"], input=doc, text=True, capture_output=True)


def test_cli_verifies_and_rejects(verifier):
    c = Cluster("attest").init().start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        challenge = os.urandom(32).hex()
        pk, doc = attest(c, challenge)
        epoch = c.sql("SELECT epoch_id FROM pg_ephcrypt_status()")
        ok = run_verify(verifier, doc, "--public-key", pk, "--challenge", challenge, "--epoch", epoch)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("OK") and epoch in ok.stdout
        # Wrong challenge, tampered field, wrong key: exit 1.
        assert run_verify(verifier, doc, "--public-key", pk, "--challenge", "00" * 32).returncode == 1
        assert run_verify(verifier, doc.replace('"plaintext_files": 0', '"plaintext_files": 1'),
                          "--public-key", pk).returncode == 1
        assert run_verify(verifier, doc, "--public-key", "ab" * 32).returncode == 1

        # A backend crash rotates the epoch: the old document no longer
        # verifies against the new key, nor in SQL against the new epoch.
        crash_a_backend(c)
        time.sleep(1)
        c.wait_ready()
        new_pk, new_doc = attest(c, challenge)
        assert new_pk != pk
        assert run_verify(verifier, doc, "--public-key", new_pk).returncode == 1
        old_epoch = run_verify(verifier, doc, "--public-key", pk, "--epoch",
                               c.sql("SELECT epoch_id FROM pg_ephcrypt_status()"))
        assert old_epoch.returncode == 1, "a document of a previous epoch is rejected"
        in_sql = c.sql(
            "SELECT pg_ephcrypt_verify_attestation($d$" + doc + "$d$::jsonb, '\\x" + pk + "'::bytea)")
        assert in_sql == "f"
        in_sql_new = c.sql(
            "SELECT pg_ephcrypt_verify_attestation($d$" + new_doc + "$d$::jsonb, '\\x" + new_pk + "'::bytea)")
        assert in_sql_new == "t"
    finally:
        c.stop()
