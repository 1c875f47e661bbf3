//! Golden vectors for format v2: fixed key, epoch id, file id, name and
//! nonces -> exact bytes of the header, a metadata page, data blocks and two
//! whole files.
//!
//! Any change of these bytes is a format change (FORMAT.md §13): bump the
//! version instead of editing the constants. Every vector is recomputed twice:
//! by the crate, and by the independent RustCrypto reference in
//! `tests/common` (written from FORMAT.md).

mod common;

use common::{hex, nonce, sha256, unhex, GroupSpec, Ident};
use ephcrypt_format::{
    EpochKey, FileCipher, FileName, Mode, NonceSequence, SealedFile, VecIo, PAGE_SIZE,
};

fn ek() -> [u8; 32] {
    core::array::from_fn(|i| i as u8) // 00 01 .. 1f
}
const EPOCH: [u8; 16] = *b"epoch-0123456789";
fn file_id() -> [u8; 16] {
    core::array::from_fn(|i| 0xf0 + i as u8) // f0 f1 .. ff
}
const CLASS: u8 = 1;
const NAME: &[u8] = b"pgsql_tmp1234.5";
const NONCE_PREFIX: [u8; 8] = *b"NONCEPFX";
const SHORT_PLAIN: &[u8] = b"hello, pg_ephcrypt";

const GOLDEN_HEADER: &str = "\
    5047455048435200 0200 4000 00200000 65706f63682d3031 3233343536373839 \
    f0f1f2f3f4f5f6f7 f8f9fafbfcfdfeff 8c71a6e667b73182 fe9d1bbf0c85df67";
const GOLDEN_SHORT_BLOCK_0_CT: &str = "48fde85426582ed213947502993320fd8f78";
const GOLDEN_SHORT_BLOCK_0_TAG: &str = "a31c6c2392ce7c03ea938dcf144f26ec";
const GOLDEN_FULL_BLOCK_1_SHA256: &str =
    "c919ebe5924039dbc2a9833f21db0f7955fe7fbeb4160d6d6601370d9e9e621a";
const GOLDEN_PAGE_0_MAC: &str = "df9d14686ca5e1752983ebf2b259fa23";
const GOLDEN_PAGE_0_SHA256: &str =
    "771d378fdef74b143676307fb9574c1b7243c22fd344be2ab25513ce3098bef0";
const GOLDEN_FILE_SHA256: &str = "e161d04537e97a25f8dc44d1b922abe3bd3146823adfefa0b688fc1d99826e98";
const GOLDEN_FILE_LEN: usize = 3 * 8192 + 50;
const GOLDEN_TWO_GROUPS_SHA256: &str =
    "ef3fdb173ce92cb69ceb1cf17116e0aa05038295020b8fd21da16f4ae90d8c30";
const GOLDEN_TWO_GROUPS_LEN: usize = 258 * 8192 + 1;
// Unchanged from v1: attestation depends on them.
const GOLDEN_FINGERPRINT: &str = "030a6d15668bedf912f15a8383f578668b982f1a048b88ef469f71a5b66bc2de";
const GOLDEN_DERIVE_ED25519: &str =
    "d7f1ff6089e9dc2e818b24f559c74f2451cffb67cd37c278cc9199d6ea977652";

fn name() -> FileName<'static> {
    FileName::new(CLASS, NAME).unwrap()
}

fn id_ref<'a>(ek: &'a [u8; 32], file_id: &'a [u8; 16]) -> Ident<'a> {
    Ident {
        ek,
        epoch: &EPOCH,
        file_id,
        class: CLASS,
        name: NAME,
    }
}

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
    let (_, header) =
        FileCipher::create(&EpochKey::from_bytes(ek()), &EPOCH, &file_id(), &name()).unwrap();
    let (k, f) = (ek(), file_id());
    assert_eq!(header, common::header(&id_ref(&k, &f)), "reference header");
    check("header", &header, GOLDEN_HEADER);
}

#[test]
fn block_vectors() {
    let (k, f) = (ek(), file_id());
    let id = id_ref(&k, &f);
    let key = EpochKey::from_bytes(ek());
    let (cipher, _) = FileCipher::create(&key, &EPOCH, &file_id(), &name()).unwrap();
    let mut nonces = NonceSequence::new(NONCE_PREFIX);
    let mut ct = vec![0u8; 8192];

    let nonce0 = nonces.next().unwrap();
    assert_eq!(&nonce0, b"NONCEPFX\0\0\0\0");
    let tag = cipher.seal_block(0, nonce0, SHORT_PLAIN, &mut ct).unwrap();
    let n = SHORT_PLAIN.len();
    let (rct, rtag) = common::seal_block(&id, 0, nonce0, SHORT_PLAIN);
    assert_eq!((&ct[..n], tag), (&rct[..], rtag), "reference short block");
    check("short block 0 ct", &ct[..n], GOLDEN_SHORT_BLOCK_0_CT);
    check("short block 0 tag", &tag, GOLDEN_SHORT_BLOCK_0_TAG);
    let mut back = [0u8; 8192];
    let m = cipher
        .open_block(0, &nonce0, &tag, &unhex(GOLDEN_SHORT_BLOCK_0_CT), &mut back)
        .unwrap();
    assert_eq!(&back[..m], SHORT_PLAIN);

    let nonce1 = nonces.next().unwrap();
    let tag = cipher
        .seal_block(1, nonce1, &full_plain(), &mut ct)
        .unwrap();
    let (rct, rtag) = common::seal_block(&id, 1, nonce1, &full_plain());
    assert_eq!((&ct[..], tag), (&rct[..], rtag), "reference full block");
    let mut both = ct.clone();
    both.extend_from_slice(&tag);
    check("full block 1", &sha256(&both), GOLDEN_FULL_BLOCK_1_SHA256);
}

#[test]
fn metadata_page_vector() {
    let (k, f) = (ek(), file_id());
    let id = id_ref(&k, &f);
    let (cipher, _) =
        FileCipher::create(&EpochKey::from_bytes(ek()), &EPOCH, &file_id(), &name()).unwrap();
    // Group 0 with two blocks, the second 300 bytes long, final.
    let entries = vec![([1u8; 12], [2u8; 16]), ([3u8; 12], [4u8; 16])];
    let mut page = [0u8; PAGE_SIZE];
    let _ = ephcrypt_format::meta::init(&mut page, cipher.header_bytes(), 0);
    for (j, (n, t)) in entries.iter().enumerate() {
        let _ = ephcrypt_format::meta::set_entry(&mut page, j, n, t);
    }
    let _ = ephcrypt_format::meta::set_state(
        &mut page,
        ephcrypt_format::meta::GroupState {
            count: 2,
            last_len: 300,
            final_group: true,
        },
    );
    let mac_nonce = nonce(&NONCE_PREFIX, 7);
    let tag = cipher.seal_metadata(0, mac_nonce, &mut page).unwrap();
    let reference = common::meta_page(
        &id,
        0,
        &GroupSpec {
            count: 2,
            last_len: 300,
            final_group: true,
            entries,
            mac_nonce,
        },
    );
    assert_eq!(&page[..], &reference[..], "reference page");
    check("page 0 MAC", &tag, GOLDEN_PAGE_0_MAC);
    check("page 0", &sha256(&page), GOLDEN_PAGE_0_SHA256);
    assert!(cipher.open_metadata(0, &page).is_ok());
}

/// A whole file through `SealedFile` (private mode): a write spanning two
/// blocks, a partial rewrite (read-modify-write), a gap write past EOF, a
/// truncate mid-block, a flush.
#[test]
fn file_vector() {
    let key = EpochKey::from_bytes(ek());
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new(NONCE_PREFIX);
    let mode = Mode::Private { cache_groups: 2 };
    let mut f = SealedFile::create(
        &mut io,
        &mut nonces,
        &key,
        &EPOCH,
        &file_id(),
        &name(),
        mode,
    )
    .unwrap();
    let mut data = full_plain();
    data.extend_from_slice(&[7u8; 100]);
    f.write_at(&mut io, &mut nonces, &data, 0).unwrap();
    f.write_at(&mut io, &mut nonces, b"abcde", 10).unwrap();
    f.write_at(&mut io, &mut nonces, b"xyz", 3 * 8192 + 1)
        .unwrap();
    f.set_len(&mut io, &mut nonces, 2 * 8192 + 50).unwrap();
    f.flush(&mut io, &mut nonces).unwrap();
    assert_eq!(io.data.len(), GOLDEN_FILE_LEN);

    // Reference: rebuild the same file from the spec. Nonce counters are
    // used in this order (FORMAT.md §6, §7): 0 page 0 at create, 1 block 0
    // and 2 block 1 (direct writes), 3 block 0 (read-modify-write), 4 block 1
    // zero-padded and 5 block 2 of zeros (gap before the write past EOF), 6
    // block 3 "\0xyz", 7 block 2 cut to 50 bytes (block 3 is cut off), 8 page
    // 0 at flush.
    let (k, fid) = (ek(), file_id());
    let id = id_ref(&k, &fid);
    let mut block0 = full_plain();
    block0[10..15].copy_from_slice(b"abcde");
    let mut block1 = vec![7u8; 100];
    block1.resize(8192, 0);
    let n = |c| nonce(&NONCE_PREFIX, c);
    let expect = common::build_file(
        &id,
        &[(n(3), block0), (n(4), block1), (n(7), vec![0u8; 50])],
        &[n(8)],
    );
    assert_eq!(
        hex(&sha256(&expect)),
        hex(&sha256(&io.data)),
        "reference file"
    );
    assert_eq!(expect, io.data);
    check("file", &sha256(&io.data), GOLDEN_FILE_SHA256);
}

/// Shared mode across the first group boundary: one byte written at 2 MiB
/// fills group 0 with 256 sealed zero blocks, starts group 1, and writes both
/// pages through (group 0 no longer final).
#[test]
fn two_group_vector() {
    let key = EpochKey::from_bytes(ek());
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new(NONCE_PREFIX);
    let mut f = SealedFile::create(
        &mut io,
        &mut nonces,
        &key,
        &EPOCH,
        &file_id(),
        &name(),
        Mode::Shared,
    )
    .unwrap();
    f.write_at(&mut io, &mut nonces, &[0x55], 256 * 8192)
        .unwrap();
    assert_eq!(io.data.len(), GOLDEN_TWO_GROUPS_LEN);
    // Nonces: 0 page 0 at create, 1..=256 blocks 0..=255 (zeros), 257 block
    // 256, then write-through in ascending group order: 258 page 0, 259 page 1.
    let (k, fid) = (ek(), file_id());
    let id = id_ref(&k, &fid);
    let mut blocks: Vec<_> = (0..256u32)
        .map(|i| (nonce(&NONCE_PREFIX, 1 + i), vec![0u8; 8192]))
        .collect();
    blocks.push((nonce(&NONCE_PREFIX, 257), vec![0x55]));
    let expect = common::build_file(
        &id,
        &blocks,
        &[nonce(&NONCE_PREFIX, 258), nonce(&NONCE_PREFIX, 259)],
    );
    assert!(expect == io.data, "reference two-group file");
    check("two groups", &sha256(&io.data), GOLDEN_TWO_GROUPS_SHA256);
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
