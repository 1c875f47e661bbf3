//! An independent reference implementation of FORMAT.md v2 with RustCrypto
//! crates (aes-gcm, hkdf, hmac, sha2), written from the spec, not from the
//! crate's code.
#![allow(dead_code)]

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const B: usize = 8192;
pub const G: usize = 256;

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

/// A file's identity: everything its keys depend on.
#[derive(Clone, Copy)]
pub struct Ident<'a> {
    pub ek: &'a [u8; 32],
    pub epoch: &'a [u8; 16],
    pub file_id: &'a [u8; 16],
    pub class: u8,
    pub name: &'a [u8],
}

/// FORMAT.md §5.2: info = label || 0x00 || class || len(name) || name.
pub fn subkey(id: &Ident<'_>, label: &str) -> [u8; 32] {
    let mut info = label.as_bytes().to_vec();
    info.extend_from_slice(&[0, id.class, id.name.len() as u8]);
    info.extend_from_slice(id.name);
    hkdf32(id.file_id, id.ek, &info)
}

pub fn data_key(id: &Ident<'_>) -> [u8; 32] {
    subkey(id, "pg_ephcrypt v2 data key")
}

pub fn meta_key(id: &Ident<'_>) -> [u8; 32] {
    subkey(id, "pg_ephcrypt v2 meta key")
}

pub fn header_mac_key(id: &Ident<'_>) -> [u8; 32] {
    subkey(id, "pg_ephcrypt v2 header mac")
}

pub fn header(id: &Ident<'_>) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[..8].copy_from_slice(b"PGEPHCR\0");
    h[8..10].copy_from_slice(&2u16.to_le_bytes());
    h[10..12].copy_from_slice(&64u16.to_le_bytes());
    h[12..16].copy_from_slice(&8192u32.to_le_bytes());
    h[16..32].copy_from_slice(id.epoch);
    h[32..48].copy_from_slice(id.file_id);
    let tag = hmac256(&header_mac_key(id), &[&h[..48]]);
    h[48..].copy_from_slice(&tag[..16]);
    h
}

pub fn aad(header: &[u8; 64], index: u64) -> Vec<u8> {
    let mut a = header[..48].to_vec();
    a.extend_from_slice(&index.to_le_bytes());
    a
}

/// (ciphertext, tag) of data block `index`.
pub fn seal_block(
    id: &Ident<'_>,
    index: u64,
    nonce: [u8; 12],
    plain: &[u8],
) -> (Vec<u8>, [u8; 16]) {
    let cipher = Aes256Gcm::new_from_slice(&data_key(id)).unwrap();
    let mut ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plain,
                aad: &aad(&header(id), index),
            },
        )
        .unwrap();
    let tag: [u8; 16] = ct[ct.len() - 16..].try_into().unwrap();
    ct.truncate(ct.len() - 16);
    (ct, tag)
}

pub fn open_block(
    id: &Ident<'_>,
    index: u64,
    nonce: [u8; 12],
    tag: [u8; 16],
    ct: &[u8],
) -> Option<Vec<u8>> {
    let cipher = Aes256Gcm::new_from_slice(&data_key(id)).unwrap();
    let mut msg = ct.to_vec();
    msg.extend_from_slice(&tag);
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &msg,
                aad: &aad(&header(id), index),
            },
        )
        .ok()
}

/// GMAC = AES-256-GCM tag over an empty plaintext.
pub fn gmac(key: &[u8; 32], nonce: [u8; 12], aad: &[u8]) -> [u8; 16] {
    let cipher = Aes256Gcm::new_from_slice(key).unwrap();
    let out = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: &[], aad })
        .unwrap();
    out.try_into().unwrap()
}

/// One group's record and entries.
pub struct GroupSpec {
    pub count: u16,
    pub last_len: u16,
    pub final_group: bool,
    pub entries: Vec<([u8; 12], [u8; 16])>,
    pub mac_nonce: [u8; 12],
}

/// FORMAT.md §3.2 and §5.5.
pub fn meta_page(id: &Ident<'_>, group: u64, spec: &GroupSpec) -> Vec<u8> {
    let mut p = vec![0u8; 8192];
    p[..64].copy_from_slice(&header(id));
    p[64..72].copy_from_slice(&group.to_le_bytes());
    p[72..74].copy_from_slice(&spec.count.to_le_bytes());
    p[74..76].copy_from_slice(&spec.last_len.to_le_bytes());
    p[76] = u8::from(spec.final_group);
    for (j, (n, t)) in spec.entries.iter().enumerate() {
        let at = 128 + 28 * j;
        p[at..at + 12].copy_from_slice(n);
        p[at + 12..at + 28].copy_from_slice(t);
    }
    p[8164..8176].copy_from_slice(&spec.mac_nonce);
    let tag = gmac(&meta_key(id), spec.mac_nonce, &p[..8164]);
    p[8176..].copy_from_slice(&tag);
    p
}

pub fn meta_offset(g: u64) -> usize {
    (g * 257 * 8192) as usize
}

pub fn data_offset(i: u64) -> usize {
    ((i + i / 256 + 1) * 8192) as usize
}

/// A whole physical file from its final blocks: `blocks[i]` = (nonce,
/// plaintext) of block `i`; `mac_nonces[g]` = the MAC nonce of group `g`.
pub fn build_file(
    id: &Ident<'_>,
    blocks: &[([u8; 12], Vec<u8>)],
    mac_nonces: &[[u8; 12]],
) -> Vec<u8> {
    let groups = if blocks.is_empty() {
        1
    } else {
        (blocks.len() - 1) / G + 1
    };
    assert_eq!(groups, mac_nonces.len());
    let mut out = Vec::new();
    for (g, mac_nonce) in mac_nonces.iter().enumerate() {
        let first = g * G;
        let here = &blocks[first.min(blocks.len())..(first + G).min(blocks.len())];
        let mut entries = Vec::new();
        let mut data = Vec::new();
        for (j, (nonce, plain)) in here.iter().enumerate() {
            let (ct, tag) = seal_block(id, (first + j) as u64, *nonce, plain);
            entries.push((*nonce, tag));
            data.extend_from_slice(&ct);
        }
        let final_group = g + 1 == groups;
        let spec = GroupSpec {
            count: here.len() as u16,
            last_len: here.last().map_or(0, |b| b.1.len() as u16),
            final_group,
            entries,
            mac_nonce: *mac_nonce,
        };
        assert_eq!(out.len(), meta_offset(g as u64));
        out.extend_from_slice(&meta_page(id, g as u64, &spec));
        out.extend_from_slice(&data);
    }
    out
}

pub fn fingerprint(epoch_key: &[u8; 32], epoch_id: &[u8; 16]) -> [u8; 32] {
    hmac256(epoch_key, &[b"pg_ephcrypt v1 fingerprint", epoch_id])
}

pub fn derive(epoch_key: &[u8; 32], label: &str) -> [u8; 32] {
    hkdf32(b"pg_ephcrypt v1 derive", epoch_key, label.as_bytes())
}

pub fn nonce(prefix: &[u8; 8], counter: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(prefix);
    n[8..].copy_from_slice(&counter.to_be_bytes());
    n
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
