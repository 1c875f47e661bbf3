"""Attestations anchored in an operator key
(pg_ephcrypt.attestation_anchor_key_file): the chain checked by
ephcrypt-verify --anchor and pg_ephcrypt_verify_anchored_attestation, a new
epoch certificate at a crash-restart, the anchor key gone from memory after
start, and every unusable key file refused with FATAL and a hint."""

import json
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cluster import PG_USER, Cluster, SqlError, crash_a_backend
from tools import python_with, verify


def make_key(path: Path) -> tuple[str, bytes]:
    """An Ed25519 key as an operator makes one (openssl), readable by the
    server user only. Returns (public key hex, seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)], check=True,
                   capture_output=True)
    os.chmod(path, 0o600)
    shutil.chown(path, PG_USER)
    pub = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-in", str(path), "-outform", "DER"], check=True,
                         capture_output=True).stdout
    assert len(pub) == 44 and len(der) == 48
    return pub[-32:].hex(), der[16:48]


def anchored_cluster(name: str) -> tuple[Cluster, Path]:
    c = Cluster(name)
    key = c.dir / "anchor.pem"
    c.conf = {"pg_ephcrypt.attestation_anchor_key_file": f"'{key}'"}
    c.init()
    return c, key


def attest(c: Cluster, challenge: str) -> str:
    return c.sql(f"SELECT pg_ephcrypt_attest('\\x{challenge}'::bytea)")


def sql_verify_anchored(c: Cluster, doc: str, anchor_hex: str, challenge: str | None = None) -> str:
    ch = f", '\\x{challenge}'::bytea" if challenge else ""
    return c.sql(f"SELECT pg_ephcrypt_verify_anchored_attestation($d${doc}$d$::jsonb, '\\x{anchor_hex}'::bytea{ch})")


def forge(doc: dict) -> tuple[dict, str] | None:
    """Re-sign a document with a fresh Ed25519 key of our own (an attacker
    without the epoch key), keeping its genuine certificates. Needs a python
    with `cryptography`; returns (document, public key hex) or None."""
    exe = python_with("cryptography")
    if exe is None:
        return None
    script = r"""
import json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
doc = json.loads(sys.stdin.read())
for k in ("signature", "signature_algorithm", "public_key"):
    doc.pop(k)
key = Ed25519PrivateKey.generate()
pk = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
doc["signature_algorithm"] = "ed25519"
doc["public_key"] = pk
msg = b"pg_ephcrypt attestation v1\n" + json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
doc["signature"] = key.sign(msg).hex()
print(json.dumps({"doc": doc, "pk": pk}))
"""
    out = subprocess.run([exe, "-c", script], input=json.dumps(doc), text=True, capture_output=True, check=True)
    r = json.loads(out.stdout)
    return r["doc"], r["pk"]


def test_anchored_chain():
    c, key = anchored_cluster("anchor")
    anchor_pk, seed = make_key(key)
    other_pk, _ = make_key(c.dir / "other.pem")
    pub_pem = c.dir / "anchor.pub"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub_pem)], check=True)
    c.start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        epoch = c.sql("SELECT epoch_id FROM pg_ephcrypt_status()")
        st = c.rows("SELECT anchored, encode(anchor_public_key, 'hex'), encode(instance_public_key, 'hex'), "
                    "epoch_certificate->>'epoch_id' FROM pg_ephcrypt_anchor_status()")[0]
        assert st[0] == "t" and st[1] == anchor_pk and len(st[2]) == 64 and st[3] == epoch, st
        challenge = os.urandom(16).hex()
        doc = attest(c, challenge)
        d = json.loads(doc)
        assert d["anchored"] is True
        assert d["instance_certificate"]["signed_by"] == anchor_pk
        assert d["epoch_certificate"]["epoch_id"] == epoch
        assert d["epoch_certificate"]["restarts"] == 0

        # Valid chain: with the anchor as hex and as a PEM file; in SQL.
        for a in (anchor_pk, str(pub_pem)):
            r = verify(doc, "--anchor", a, "--challenge", challenge, "--epoch", epoch)
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith(f"OK epoch={epoch}") and r.stdout.rstrip().endswith("anchor=verified")
        assert sql_verify_anchored(c, doc, anchor_pk, challenge) == "t"
        # Without --anchor it verifies against the epoch key, and says the
        # chain was not checked.
        epoch_pk = c.sql("SELECT encode(attestation_public_key, 'hex') FROM pg_ephcrypt_status()")
        r = verify(doc, "--public-key", epoch_pk)
        assert r.returncode == 0 and r.stdout.rstrip().endswith("anchor=not-checked"), r

        # Wrong anchor (control: the right one above).
        r = verify(doc, "--anchor", other_pk)
        assert r.returncode == 1 and "another anchor key" in r.stderr, r
        assert sql_verify_anchored(c, doc, other_pk) == "f"

        # A forged epoch key: a document signed by a key of the attacker's,
        # carrying the genuine certificates (control: it is a well-formed
        # document that verifies against the forger's own key).
        forged = forge(d)
        if forged is not None:
            fdoc, fpk = forged
            ftext = json.dumps(fdoc)
            assert verify(ftext, "--public-key", fpk).returncode == 0
            r = verify(ftext, "--anchor", anchor_pk)
            assert r.returncode == 1 and "public_key differs" in r.stderr, r
            assert sql_verify_anchored(c, ftext, anchor_pk) == "f"

        # The log names the public keys, never the private ones.
        log = c.log_text()
        assert f"attestation anchor {anchor_pk} certified instance key {st[2]}" in log
        assert seed.hex() not in log and key.read_text().split("\n")[1] not in log

        # Crash-restart: a new epoch, a new epoch certificate from the same
        # instance key (the anchor key is long gone: even the file may go).
        key.rename(c.dir / "anchor.pem.away")
        crash_a_backend(c)
        time.sleep(1)
        c.wait_ready()
        epoch2 = c.sql("SELECT epoch_id FROM pg_ephcrypt_status()")
        assert epoch2 != epoch
        doc2 = attest(c, challenge)
        d2 = json.loads(doc2)
        assert d2["instance_certificate"] == d["instance_certificate"]
        assert d2["epoch_certificate"]["epoch_id"] == epoch2
        assert d2["epoch_certificate"]["restarts"] == 1
        r = verify(doc2, "--anchor", anchor_pk, "--challenge", challenge, "--epoch", epoch2)
        assert r.returncode == 0, r.stderr
        assert sql_verify_anchored(c, doc2, anchor_pk, challenge) == "t"
        # A certificate from another epoch: the old document (its genuine
        # chain) is no longer current; the old epoch certificate pasted into
        # the new document breaks the document's signature.
        r = verify(doc, "--anchor", anchor_pk, "--epoch", epoch2)
        assert r.returncode == 1 and "another epoch" in r.stderr, r
        assert sql_verify_anchored(c, doc, anchor_pk) == "f"
        pasted = dict(d2, epoch_certificate=d["epoch_certificate"])
        r = verify(json.dumps(pasted), "--anchor", anchor_pk)
        assert r.returncode == 1, r
    finally:
        c.stop()


def test_unanchored_documents_say_so():
    c = Cluster("unanchored").init().start()
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        assert c.rows("SELECT anchored, anchor_public_key IS NULL, epoch_certificate IS NULL "
                      "FROM pg_ephcrypt_anchor_status()") == [["f", "t", "t"]]
        doc = attest(c, "00112233445566778899")
        d = json.loads(doc)
        assert d["anchored"] is False and "epoch_certificate" not in d
        pk = c.sql("SELECT encode(attestation_public_key, 'hex') FROM pg_ephcrypt_status()")
        r = verify(doc, "--public-key", pk)
        assert r.returncode == 0 and r.stdout.rstrip().endswith("anchor=none"), r
        some_anchor, _ = make_key(c.dir / "a.pem")
        r = verify(doc, "--anchor", some_anchor)
        assert r.returncode == 1 and "not anchored" in r.stderr, r
        assert sql_verify_anchored(c, doc, some_anchor) == "f"
        with pytest.raises(SqlError) as err:
            c.sql("SELECT pg_ephcrypt_verify_anchored_attestation('{}'::jsonb, '\\x00'::bytea)")
        assert err.value.sqlstate == "22023"
    finally:
        c.stop()


def _start_fails(c: Cluster, since: int) -> str:
    with pytest.raises(subprocess.CalledProcessError):
        c.start()
    assert not (c.data / "postmaster.pid").exists()
    log = c.log_text()[since:]
    assert "ready to accept connections" not in log
    return log


def test_unusable_key_files_are_fatal():
    c, key = anchored_cluster("anchor_bad")
    valid_pk, seed = make_key(c.dir / "valid.pem")
    valid = (c.dir / "valid.pem").read_bytes()
    rsa = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
                         check=True, capture_output=True).stdout
    encrypted = subprocess.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:x",
                                "-in", str(c.dir / "valid.pem")], check=True, capture_output=True).stdout

    def put(content: bytes | None, mode: int = 0o600, directory: bool = False) -> None:
        if key.is_symlink() or key.is_file():
            key.unlink()
        elif key.is_dir():
            key.rmdir()
        if directory:
            key.mkdir()
        elif content is not None:
            key.write_bytes(content)
            os.chmod(key, mode)
        if key.exists():
            shutil.chown(key, PG_USER)

    cases = [
        ("missing", lambda: put(None), "cannot open"),
        ("unreadable", lambda: put(valid, 0o000), "cannot open"),
        ("group readable", lambda: put(valid, 0o640), "has group or other access"),
        ("world readable", lambda: put(valid, 0o644), "has group or other access"),
        ("empty", lambda: put(b""), "not a PEM file"),
        ("garbage", lambda: put(b"not a key\n"), "not a PEM file"),
        ("hex seed", lambda: put(seed.hex().encode()), "not a PEM file"),
        ("encrypted", lambda: put(encrypted), "encrypted private key"),
        ("RSA", lambda: put(rsa), "not an Ed25519 private key"),
        ("cut off", lambda: put(valid[:60] + b"\n-----END PRIVATE KEY-----\n"), None),
        ("directory", lambda: put(None, directory=True), "not a regular file"),
        ("too large", lambda: put(valid + b"\n" * 4096), "larger than"),
        ("root-owned, world readable", lambda: (put(valid, 0o644), os.chown(key, 0, 0)), "is owned by root"),
        ("owned by another user", lambda: (put(valid, 0o644), os.chown(key, 65534, 65534)),
         "must be owned by the server user or root"),
    ]
    for name, setup, reason in cases:
        setup()
        since = len(c.log_text())
        log = _start_fails(c, since)
        m = re.search(r"FATAL:  pg_ephcrypt cannot use the attestation anchor key file \"[^\"]+\": (.*)", log)
        assert m, f"{name}: {log[-2000:]}"
        if reason:
            assert reason in m.group(1), f"{name}: {m.group(1)}"
        assert "HINT:  pg_ephcrypt.attestation_anchor_key_file must name an unencrypted Ed25519 private key" in log, name
        for secret in (seed.hex(), valid.decode().split("\n")[1]):
            assert secret not in log, f"{name}: key material in the log"
    # Controls: the same cluster starts, anchored, with a usable key file:
    # owned by the server user (0600), owned by root and readable by the
    # server user's group (0640), and through a symbolic link.
    pg_gid = pwd.getpwnam(PG_USER).pw_gid
    for name, setup in [
        ("0600", lambda: put(valid)),
        ("root 0640", lambda: (put(valid, 0o640), os.chown(key, 0, pg_gid))),
        ("symlink", lambda: (put(None), key.symlink_to(c.dir / "valid.pem"))),
    ]:
        setup()
        c.start()
        try:
            c.sql("CREATE EXTENSION IF NOT EXISTS pg_ephcrypt")
            got = c.sql("SELECT encode(anchor_public_key, 'hex') FROM pg_ephcrypt_anchor_status()")
            assert got == valid_pk, name
        finally:
            c.stop()



def _readable_memory(pid: int):
    """(start, bytes) of every readable mapping of a process (as root)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if not perms.startswith("r") or line.rstrip().endswith(("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(start)
                yield start, mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue


def _found(pid: int, needle: bytes) -> bool:
    return any(needle in chunk for _, chunk in _readable_memory(pid))


def _smaps_flags(pid: int) -> dict[int, tuple[int, set]]:
    """start address -> (size in kB, VmFlags) of every mapping."""
    out, start, size = {}, None, 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            start = int(line.split("-")[0], 16)
        elif line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith("VmFlags:") and start is not None:
            out[start] = (size, set(line.split()[1:]))
    return out


@pytest.mark.skipif(os.getuid() != 0, reason="reads another user's process memory (/proc/<pid>/mem): needs root")
def test_anchor_key_gone_from_memory_and_instance_key_page_not_inherited():
    c, key = anchored_cluster("anchor_mem")
    _, seed = make_key(key)
    pem_body = key.read_text().split("\n")[1].encode()
    c.start()
    s = None
    try:
        c.sql("CREATE EXTENSION pg_ephcrypt")
        cert_sig = c.sql("SELECT instance_certificate->>'signature' FROM pg_ephcrypt_anchor_status()").encode()
        s = c.session()
        s.stdin.write("SELECT pg_sleep(30);\n")
        s.stdin.flush()
        deadline = time.time() + 10
        backends = []
        while not backends and time.time() < deadline:
            backends = c.backend_pids()
            time.sleep(0.1)
        assert backends
        pm = c.postmaster_pid()
        # Control: the search reads real memory (the certificate the
        # postmaster made is in its memory and in the backend's).
        assert _found(pm, cert_sig) and _found(backends[0], cert_sig)
        for pid in (pm, backends[0]):
            assert not _found(pid, seed), f"anchor seed in the memory of {pid}"
            assert not _found(pid, pem_body), f"key file text in the memory of {pid}"
        # The instance key's page: one locked, not dumpable, not inherited
        # page in the postmaster; no mapping at that address in a child.
        dontfork = {a: f for a, (kb, f) in _smaps_flags(pm).items() if "dc" in f}
        assert len(dontfork) == 1, dontfork
        (addr, flags), = dontfork.items()
        assert {"lo", "dd", "dc"} <= flags, flags
        assert _smaps_flags(pm)[addr][0] == 4
        assert addr not in _smaps_flags(backends[0])
    finally:
        if s:
            s.kill()
        c.stop()
