//! Golden vectors: fixed key, epoch id, file id and nonces -> exact bytes.
//!
//! Any change of these bytes is a format change (FORMAT.md §10): bump the
//! version instead of editing the constants. Every vector is recomputed twice:
//! by the crate, and by the independent RustCrypto reference in
//! `tests/common`.

mod common;

use common::{hex, sha256, unhex};
use ephcrypt_format::{EpochKey, FileCipher, NonceSequence, SealedFile, VecIo, PHYS_BLOCK_SIZE};

fn ek() -> [u8; 32] {
    core::array::from_fn(|i| i as u8) // 00 01 .. 1f
}
const EPOCH: [u8; 16] = *b"epoch-0123456789";
fn file_id() -> [u8; 16] {
    core::array::from_fn(|i| 0xf0 + i as u8) // f0 f1 .. ff
}
const NONCE_PREFIX: [u8; 8] = *b"NONCEPFX";
const SHORT_PLAIN: &[u8] = b"hello, pg_ephcrypt";

const GOLDEN_HEADER: &str = "\
    5047455048435200 0100 4000 00200000 65706f63682d3031 3233343536373839 \
    f0f1f2f3f4f5f6f7 f8f9fafbfcfdfeff 1401a9d7e52e6f48 493eabc10df3e45d";
const GOLDEN_SHORT_BLOCK_0: &str = "\
    4e4f4e4345504658 00000000 \
    f3d39ef4e0e1c74c5f216918c7586d228d2a \
    29ef8c4bc766d5e933e866de8b3d5a77";
const GOLDEN_FULL_BLOCK_1_SHA256: &str =
    "d55f3e60284009d4a0b78675c11c38a1ac2531b3163f396864f50b18d866ad6b";
const GOLDEN_FILE_SHA256: &str = "239e20fe3570157fee2c6d469e3236b5a5045d5f45b44cdaab938482f8d05070";
const GOLDEN_FILE_LEN: u64 = 64 + 2 * 8220 + 50 + 28; // 16582
const GOLDEN_FINGERPRINT: &str = "030a6d15668bedf912f15a8383f578668b982f1a048b88ef469f71a5b66bc2de";
const GOLDEN_DERIVE_ED25519: &str =
    "d7f1ff6089e9dc2e818b24f559c74f2451cffb67cd37c278cc9199d6ea977652";

fn full_plain() -> Vec<u8> {
    (0..8192u32).map(|i| (i % 251) as u8).collect()
}

fn check(name: &str, actual: &[u8], golden: &str) {
    assert_eq!(
        hex(actual),
        golden.split_whitespace().collect::<String>(),
        "golden vector {name} changed"
    );
}

#[test]
fn header_vector() {
    let (_, header) = FileCipher::create(&EpochKey::from_bytes(ek()), &EPOCH, &file_id()).unwrap();
    check("header", &header, GOLDEN_HEADER);
    check(
        "header (reference)",
        &common::header(&ek(), &EPOCH, &file_id()),
        GOLDEN_HEADER,
    );
}

#[test]
fn block_vectors() {
    let key = EpochKey::from_bytes(ek());
    let (cipher, header) = FileCipher::create(&key, &EPOCH, &file_id()).unwrap();
    let mut nonces = NonceSequence::new(NONCE_PREFIX);
    let mut out = vec![0u8; PHYS_BLOCK_SIZE];

    let nonce0 = nonces.next().unwrap();
    assert_eq!(&nonce0, b"NONCEPFX\0\0\0\0");
    let n = cipher.seal_block(0, nonce0, SHORT_PLAIN, &mut out).unwrap();
    check("short block 0", &out[..n], GOLDEN_SHORT_BLOCK_0);
    check(
        "short block 0 (reference)",
        &common::seal(&ek(), &header, 0, nonce0, SHORT_PLAIN),
        GOLDEN_SHORT_BLOCK_0,
    );
    let mut back = [0u8; 8192];
    let m = cipher
        .open_block(0, &unhex(GOLDEN_SHORT_BLOCK_0), &mut back)
        .unwrap();
    assert_eq!(&back[..m], SHORT_PLAIN);

    let nonce1 = nonces.next().unwrap();
    let n = cipher
        .seal_block(1, nonce1, &full_plain(), &mut out)
        .unwrap();
    assert_eq!(n, PHYS_BLOCK_SIZE);
    check(
        "full block 1",
        &sha256(&out[..n]),
        GOLDEN_FULL_BLOCK_1_SHA256,
    );
    check(
        "full block 1 (reference)",
        &sha256(&common::seal(&ek(), &header, 1, nonce1, &full_plain())),
        GOLDEN_FULL_BLOCK_1_SHA256,
    );
}

/// A whole file through `SealedFile`: a write spanning two blocks, a partial
/// rewrite (read-modify-write), a gap write past EOF, and a truncate mid-block.
#[test]
fn file_vector() {
    let key = EpochKey::from_bytes(ek());
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new(NONCE_PREFIX);
    let mut f = SealedFile::create(&mut io, &key, &EPOCH, &file_id()).unwrap();
    let mut data = full_plain();
    data.extend_from_slice(&[7u8; 100]);
    f.write_at(&mut io, &mut nonces, &data, 0).unwrap();
    f.write_at(&mut io, &mut nonces, b"abcde", 10).unwrap();
    f.write_at(&mut io, &mut nonces, b"xyz", 3 * 8192 + 1)
        .unwrap();
    f.set_len(&mut io, &mut nonces, 2 * 8192 + 50).unwrap();
    check("file", &sha256(&io.data), GOLDEN_FILE_SHA256);
    assert_eq!(io.data.len() as u64, GOLDEN_FILE_LEN);

    // Reference: rebuild the same file from the spec. Nonce counters are
    // used in this order (FORMAT.md §7): 0 block 0 and 1 block 1 (direct
    // writes), 2 block 0 (read-modify-write), 3 block 1 zero-padded and 4
    // block 2 of zeros (gap before the write past EOF), 5 block 3 "\0xyz",
    // 6 block 2 cut to 50 bytes (truncate mid-block; block 3 is cut off).
    let nonce = |c: u32| {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&NONCE_PREFIX);
        n[8..].copy_from_slice(&c.to_be_bytes());
        n
    };
    let header = common::header(&ek(), &EPOCH, &file_id());
    let mut block0 = full_plain();
    block0[10..15].copy_from_slice(b"abcde");
    let mut block1 = vec![7u8; 100];
    block1.resize(8192, 0);
    let mut expect = header.to_vec();
    expect.extend(common::seal(&ek(), &header, 0, nonce(2), &block0));
    expect.extend(common::seal(&ek(), &header, 1, nonce(3), &block1));
    expect.extend(common::seal(&ek(), &header, 2, nonce(6), &[0u8; 50]));
    assert_eq!(
        hex(&sha256(&expect)),
        hex(&sha256(&io.data)),
        "reference file"
    );
    assert_eq!(expect, io.data);
}

#[test]
fn fingerprint_and_derive_vectors() {
    let key = EpochKey::from_bytes(ek());
    check("fingerprint", &key.fingerprint(&EPOCH), GOLDEN_FINGERPRINT);
    check(
        "fingerprint (reference)",
        &common::fingerprint(&ek(), &EPOCH),
        GOLDEN_FINGERPRINT,
    );
    let d = key.derive("ed25519 attestation seed").unwrap();
    check("derive", d.expose_secret(), GOLDEN_DERIVE_ED25519);
    check(
        "derive (reference)",
        &common::derive(&ek(), "ed25519 attestation seed"),
        GOLDEN_DERIVE_ED25519,
    );
}
