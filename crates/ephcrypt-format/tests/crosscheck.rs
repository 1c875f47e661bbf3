//! aws-lc-rs (the crate) and RustCrypto (tests/common) must produce and accept
//! identical bytes: headers, key schedule, and ciphertext of every length.

mod common;

use ephcrypt_format::{EpochKey, FileCipher, FormatError, PHYS_BLOCK_SIZE};

const EK: [u8; 32] = [0x11; 32];
const EPOCH: [u8; 16] = [0x22; 16];
const FILE: [u8; 16] = [0x33; 16];

#[test]
fn header_matches_reference() {
    let (cipher, header) = FileCipher::create(&EpochKey::from_bytes(EK), &EPOCH, &FILE).unwrap();
    assert_eq!(header, common::header(&EK, &EPOCH, &FILE));
    assert_eq!(cipher.header_bytes(), &header);
    assert_eq!(cipher.file_id(), FILE);
    assert_eq!(cipher.epoch_id(), EPOCH);
    // And the reference header opens.
    FileCipher::open(
        &EpochKey::from_bytes(EK),
        &EPOCH,
        &common::header(&EK, &EPOCH, &FILE),
    )
    .unwrap();
}

#[test]
fn blocks_are_identical_in_both_directions() {
    let key = EpochKey::from_bytes(EK);
    let (cipher, header) = FileCipher::create(&key, &EPOCH, &FILE).unwrap();
    let mut out = vec![0u8; PHYS_BLOCK_SIZE];
    let mut plain_back = vec![0u8; 8192];
    for (i, len) in [1usize, 2, 15, 16, 17, 31, 255, 4096, 8191, 8192]
        .into_iter()
        .enumerate()
    {
        let index = [0u64, 1, 7, 1 << 20, u64::MAX][i % 5];
        let plain: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
        let mut nonce = [0u8; 12];
        nonce[0] = i as u8;
        nonce[11] = len as u8;

        let n = cipher.seal_block(index, nonce, &plain, &mut out).unwrap();
        let reference = common::seal(&EK, &header, index, nonce, &plain);
        assert_eq!(&out[..n], &reference[..], "len {len}");

        // RustCrypto opens ours, we open RustCrypto's.
        assert_eq!(
            common::open(&EK, &header, index, &out[..n]).as_deref(),
            Some(&plain[..])
        );
        let m = cipher
            .open_block(index, &reference, &mut plain_back)
            .unwrap();
        assert_eq!(&plain_back[..m], &plain[..]);
        // Neither accepts it under another index.
        assert!(common::open(&EK, &header, index ^ 1, &out[..n]).is_none());
        assert_eq!(
            cipher.open_block(index ^ 1, &reference, &mut plain_back),
            Err(FormatError::BlockAuthFailed { index: index ^ 1 })
        );
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
