//! aws-lc-rs (the crate) and RustCrypto (tests/common) must produce and
//! accept identical bytes: headers, name-bound key schedule, data blocks of
//! every length, metadata pages.

mod common;

use common::{GroupSpec, Ident};
use ephcrypt_format::meta::{self, GroupState};
use ephcrypt_format::{EpochKey, FileCipher, FileName, FormatError, PAGE_SIZE};

const EK: [u8; 32] = [0x11; 32];
const EPOCH: [u8; 16] = [0x22; 16];
const FILE: [u8; 16] = [0x33; 16];

fn names() -> Vec<(u8, Vec<u8>)> {
    vec![
        (1, b"pgsql_tmp1234.5".to_vec()),
        (1, b"pgsql_tmp1234.0.fileset/i3of8.p1.0".to_vec()),
        (2, b"16384/t3_16400_fsm.1".to_vec()),
        (3, b"myslot/xid-750-lsn-0-1000000.spill".to_vec()),
        (0, Vec::new()),
        (255, vec![0xFF; 255]),
    ]
}

fn ident<'a>(class: u8, name: &'a [u8]) -> Ident<'a> {
    Ident {
        ek: &EK,
        epoch: &EPOCH,
        file_id: &FILE,
        class,
        name,
    }
}

#[test]
fn headers_match_reference_for_every_name() {
    let key = EpochKey::from_bytes(EK);
    for (class, name) in names() {
        let fname = FileName::new(class, &name).unwrap();
        let (cipher, header) = FileCipher::create(&key, &EPOCH, &FILE, &fname).unwrap();
        let reference = common::header(&ident(class, &name));
        assert_eq!(header, reference, "class {class}");
        assert_eq!(cipher.file_id(), FILE);
        assert_eq!(cipher.epoch_id(), EPOCH);
        FileCipher::open(&key, &EPOCH, &fname, &reference).unwrap();
    }
}

#[test]
fn blocks_are_identical_in_both_directions() {
    let key = EpochKey::from_bytes(EK);
    for (class, name) in names() {
        let fname = FileName::new(class, &name).unwrap();
        let id = ident(class, &name);
        let (cipher, _) = FileCipher::create(&key, &EPOCH, &FILE, &fname).unwrap();
        let mut ct = vec![0u8; 8192];
        let mut back = vec![0u8; 8192];
        for (i, len) in [1usize, 2, 15, 16, 17, 31, 255, 4096, 8191, 8192]
            .into_iter()
            .enumerate()
        {
            let index = [0u64, 1, 7, 1 << 20, u64::MAX][i % 5];
            let plain: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let mut nonce = [0u8; 12];
            nonce[0] = i as u8;
            nonce[11] = len as u8;
            let tag = cipher.seal_block(index, nonce, &plain, &mut ct).unwrap();
            let (rct, rtag) = common::seal_block(&id, index, nonce, &plain);
            assert_eq!((&ct[..len], tag), (&rct[..], rtag), "len {len}");
            // RustCrypto opens ours, we open RustCrypto's.
            assert_eq!(
                common::open_block(&id, index, nonce, tag, &ct[..len]).as_deref(),
                Some(&plain[..])
            );
            let m = cipher
                .open_block(index, &nonce, &rtag, &rct, &mut back)
                .unwrap();
            assert_eq!(&back[..m], &plain[..]);
            let mut inplace = rct.clone();
            cipher
                .open_block_in_place(index, &nonce, &rtag, &mut inplace)
                .unwrap();
            assert_eq!(inplace, plain);
            // Neither accepts it under another index.
            assert!(common::open_block(&id, index ^ 1, nonce, tag, &ct[..len]).is_none());
            assert_eq!(
                cipher.open_block(index ^ 1, &nonce, &rtag, &rct, &mut back),
                Err(FormatError::BlockAuthFailed { index: index ^ 1 })
            );
        }
    }
}

#[test]
fn metadata_pages_match_reference() {
    let key = EpochKey::from_bytes(EK);
    for (class, name) in names() {
        let fname = FileName::new(class, &name).unwrap();
        let id = ident(class, &name);
        let (cipher, _) = FileCipher::create(&key, &EPOCH, &FILE, &fname).unwrap();
        for (group, count, last_len, final_group) in [
            (0u64, 0u16, 0u16, true),
            (0, 3, 17, true),
            (5, 256, 8192, false),
            (9, 256, 8192, true),
        ] {
            let entries: Vec<([u8; 12], [u8; 16])> = (0..count)
                .map(|j| ([j as u8; 12], [!(j as u8); 16]))
                .collect();
            let mac_nonce = [group as u8 ^ 0x5A; 12];
            let mut page = [0xEEu8; PAGE_SIZE];
            let _ = meta::init(&mut page, cipher.header_bytes(), group);
            for (j, (n, t)) in entries.iter().enumerate() {
                let _ = meta::set_entry(&mut page, j, n, t);
            }
            let _ = meta::set_state(
                &mut page,
                GroupState {
                    count,
                    last_len,
                    final_group,
                },
            );
            cipher.seal_metadata(group, mac_nonce, &mut page).unwrap();
            let reference = common::meta_page(
                &id,
                group,
                &GroupSpec {
                    count,
                    last_len,
                    final_group,
                    entries,
                    mac_nonce,
                },
            );
            assert_eq!(&page[..], &reference[..], "group {group}");
            let mut r = [0u8; PAGE_SIZE];
            r.copy_from_slice(&reference);
            let state = cipher.open_metadata(group, &r).unwrap();
            assert_eq!(state.tuple(), (count, last_len, final_group));
            // Not at another position.
            assert_eq!(
                cipher.open_metadata(group + 1, &r),
                Err(FormatError::MetadataAuthFailed { group: group + 1 })
            );
        }
    }
}

#[test]
fn fingerprint_and_derive_match_reference() {
    let key = EpochKey::from_bytes(EK);
    assert_eq!(key.fingerprint(&EPOCH), common::fingerprint(&EK, &EPOCH));
    for label in ["", "ed25519 attestation seed", "x"] {
        assert_eq!(
            key.derive(label).unwrap().expose_secret(),
            &common::derive(&EK, label)
        );
    }
}
