//! An independent reference implementation of FORMAT.md with RustCrypto
//! crates (aes-gcm, hkdf, hmac, sha2), written from the spec, not from the
//! crate's code.
#![allow(dead_code)]

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = [0u8; 32];
    hk.expand(info, &mut out).expect("32 bytes");
    out
}

pub fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

pub fn block_key(epoch_key: &[u8; 32], file_id: &[u8; 16]) -> [u8; 32] {
    hkdf32(file_id, epoch_key, b"pg_ephcrypt v1 block key")
}

pub fn header_mac_key(epoch_key: &[u8; 32], file_id: &[u8; 16]) -> [u8; 32] {
    hkdf32(file_id, epoch_key, b"pg_ephcrypt v1 header mac")
}

pub fn header(epoch_key: &[u8; 32], epoch_id: &[u8; 16], file_id: &[u8; 16]) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[..8].copy_from_slice(b"PGEPHCR\0");
    h[8..10].copy_from_slice(&1u16.to_le_bytes());
    h[10..12].copy_from_slice(&64u16.to_le_bytes());
    h[12..16].copy_from_slice(&8192u32.to_le_bytes());
    h[16..32].copy_from_slice(epoch_id);
    h[32..48].copy_from_slice(file_id);
    let tag = hmac256(&header_mac_key(epoch_key, file_id), &[&h[..48]]);
    h[48..].copy_from_slice(&tag[..16]);
    h
}

pub fn aad(header: &[u8; 64], index: u64) -> Vec<u8> {
    let mut a = header[..48].to_vec();
    a.extend_from_slice(&index.to_le_bytes());
    a
}

/// nonce || ciphertext || tag
pub fn seal(
    epoch_key: &[u8; 32],
    header: &[u8; 64],
    index: u64,
    nonce: [u8; 12],
    plain: &[u8],
) -> Vec<u8> {
    let file_id: [u8; 16] = header[32..48].try_into().unwrap();
    let cipher = Aes256Gcm::new_from_slice(&block_key(epoch_key, &file_id)).unwrap();
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plain,
                aad: &aad(header, index),
            },
        )
        .unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

pub fn open(epoch_key: &[u8; 32], header: &[u8; 64], index: u64, phys: &[u8]) -> Option<Vec<u8>> {
    let file_id: [u8; 16] = header[32..48].try_into().unwrap();
    let cipher = Aes256Gcm::new_from_slice(&block_key(epoch_key, &file_id)).unwrap();
    let nonce: [u8; 12] = phys[..12].try_into().unwrap();
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &phys[12..],
                aad: &aad(header, index),
            },
        )
        .ok()
}

pub fn fingerprint(epoch_key: &[u8; 32], epoch_id: &[u8; 16]) -> [u8; 32] {
    hmac256(epoch_key, &[b"pg_ephcrypt v1 fingerprint", epoch_id])
}

pub fn derive(epoch_key: &[u8; 32], label: &str) -> [u8; 32] {
    hkdf32(b"pg_ephcrypt v1 derive", epoch_key, label.as_bytes())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(data).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
