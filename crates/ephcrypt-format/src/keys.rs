//! Secret key types, file names and the key schedule (FORMAT.md §5).
//!
//! Secrets are newtypes that zeroize on drop and whose `Debug` never prints
//! bytes. Intermediate key bytes live in `Zeroizing` buffers and are wiped as
//! soon as AWS-LC has taken its own copy.

use aws_lc_rs::{hkdf, hmac, rand};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{FormatError, Result};

/// HKDF `info` label of a file's AES-256-GCM data block key.
pub const INFO_DATA_KEY: &[u8] = b"pg_ephcrypt v2 data key";
/// HKDF `info` label of a file's metadata MAC (GMAC) key.
pub const INFO_META_KEY: &[u8] = b"pg_ephcrypt v2 meta key";
/// HKDF `info` label of a file's header MAC key.
pub const INFO_HEADER_MAC: &[u8] = b"pg_ephcrypt v2 header mac";
/// Longest file name (bytes) that can be bound to a file.
pub const MAX_NAME_LEN: usize = 255;
/// Prefix of the fingerprint HMAC input (v1 label kept: attestation uses it).
pub const FINGERPRINT_LABEL: &[u8] = b"pg_ephcrypt v1 fingerprint";
/// HKDF salt for [`EpochKey::derive`] (v1 label kept: attestation uses it).
pub const DERIVE_SALT: &[u8] = b"pg_ephcrypt v1 derive";

/// Length of the epoch key and of all derived keys.
pub const KEY_LEN: usize = 32;

/// The per-postmaster epoch key. 32 bytes from the OS CSPRNG; never on disk.
///
/// `repr(transparent)` over `[u8; 32]` so that the interpose layer can keep
/// the value itself inside its protected (locked, dump-excluded) page.
#[derive(Zeroize, ZeroizeOnDrop)]
#[repr(transparent)]
pub struct EpochKey([u8; KEY_LEN]);

impl EpochKey {
    /// Wrap key bytes. The caller should wipe its own copy.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Draw a fresh key from the OS CSPRNG.
    ///
    /// # Errors
    /// [`FormatError::RandomFailed`].
    pub fn generate() -> Result<Self> {
        let mut key = Self([0; KEY_LEN]);
        rand::fill(&mut key.0).map_err(|_| FormatError::RandomFailed)?;
        Ok(key)
    }

    /// `HMAC-SHA256(EK, "pg_ephcrypt v1 fingerprint" || epoch_id)`: a one-way
    /// commitment to the key, safe to show in SQL status output.
    #[must_use]
    pub fn fingerprint(&self, epoch_id: &[u8; 16]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(FINGERPRINT_LABEL);
        ctx.update(epoch_id);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// `HKDF-SHA256(salt = "pg_ephcrypt v1 derive", IKM = EK, info = label)`,
    /// 32 bytes, for other secrets bound to this epoch (e.g. an Ed25519 seed).
    ///
    /// # Errors
    /// [`FormatError::CryptoFailure`] if AWS-LC fails.
    pub fn derive(&self, label: &str) -> Result<SecretBytes32> {
        let mut out = SecretBytes32([0; KEY_LEN]);
        hkdf_into(DERIVE_SALT, &self.0, label.as_bytes(), &mut out.0)?;
        Ok(out)
    }

    /// The raw key bytes, for the few callers that must hand them on (e.g. to
    /// copy the key into protected memory). Never log them.
    #[must_use]
    pub const fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EpochKey(<redacted>)")
    }
}

/// 32 secret bytes derived from the epoch key; zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes32([u8; KEY_LEN]);

impl SecretBytes32 {
    /// The secret bytes. Never log them.
    #[must_use]
    pub const fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for SecretBytes32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecretBytes32(<redacted>)")
    }
}

/// A file's canonical name within its class (FORMAT.md §5.2): a class id
/// chosen by the classifier and at most 255 bytes. It is bound into every
/// key of the file and never stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileName<'a> {
    class: u8,
    bytes: &'a [u8],
}

impl<'a> FileName<'a> {
    /// # Errors
    /// [`FormatError::NameTooLong`] above 255 bytes.
    pub const fn new(class: u8, bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() > MAX_NAME_LEN {
            return Err(FormatError::NameTooLong { len: bytes.len() });
        }
        Ok(Self { class, bytes })
    }

    /// The class id.
    #[must_use]
    pub const fn class(&self) -> u8 {
        self.class
    }

    /// The name bytes.
    #[must_use]
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Names are paths of user objects: keep them out of logs by default.
impl core::fmt::Debug for FileName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FileName")
            .field("class", &self.class)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A file's three subkeys (FORMAT.md §5.2); wiped on drop.
pub(crate) struct FileKeys {
    pub(crate) data_key: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) meta_key: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) header_mac_key: Zeroizing<[u8; KEY_LEN]>,
}

/// `PRK = HKDF-Extract(salt = file_id, IKM = EK)`, then expand the three
/// subkeys with `info = label || 0x00 || class || len || name`.
pub(crate) fn derive_file_keys(
    key: &EpochKey,
    file_id: &[u8; 16],
    name: &FileName<'_>,
) -> Result<FileKeys> {
    // `Salt::extract` is lazy in aws-lc-rs (it keeps a zeroizing copy of the
    // IKM and runs the full HKDF at each `fill`); three expands cost three
    // extracts, well under a microsecond each, once per file open.
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, file_id).extract(&key.0);
    // FileName::new bounds the length to 255, so it fits the length byte.
    let ctx = [0u8, name.class, name.bytes.len() as u8];
    let mut keys = FileKeys {
        data_key: Zeroizing::new([0; KEY_LEN]),
        meta_key: Zeroizing::new([0; KEY_LEN]),
        header_mac_key: Zeroizing::new([0; KEY_LEN]),
    };
    for (label, out) in [
        (INFO_DATA_KEY, &mut keys.data_key),
        (INFO_META_KEY, &mut keys.meta_key),
        (INFO_HEADER_MAC, &mut keys.header_mac_key),
    ] {
        expand_into(&prk, &[label, &ctx, name.bytes], &mut out[..])?;
    }
    Ok(keys)
}

fn hkdf_into(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<()> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    expand_into(&prk, &[info], out)
}

struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand_into(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) -> Result<()> {
    prk.expand(info, OutLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| FormatError::CryptoFailure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_bytes() {
        let k = EpochKey::from_bytes([0xAB; 32]);
        let s = format!("{k:?}");
        assert!(
            !s.contains("171") && !s.to_lowercase().contains("ab"),
            "{s}"
        );
        let d = k.derive("x").unwrap();
        let s = format!("{d:?}");
        assert_eq!(s, "SecretBytes32(<redacted>)");
    }

    #[test]
    fn generate_gives_distinct_keys() {
        let a = EpochKey::generate().unwrap();
        let b = EpochKey::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn derive_and_fingerprint_separate_domains() {
        let k = EpochKey::from_bytes([7; 32]);
        let e = [1u8; 16];
        assert_ne!(
            k.derive("a").unwrap().expose_secret(),
            k.derive("b").unwrap().expose_secret()
        );
        assert_ne!(k.fingerprint(&e), k.fingerprint(&[2; 16]));
        let name = FileName::new(1, b"pgsql_tmp1.0").unwrap();
        let fk = derive_file_keys(&k, &[3; 16], &name).unwrap();
        assert_ne!(*fk.data_key, *fk.header_mac_key);
        assert_ne!(*fk.data_key, *fk.meta_key);
        assert_ne!(*fk.meta_key, *fk.header_mac_key);
        assert_ne!(
            &*fk.data_key,
            k.derive("pg_ephcrypt v2 data key").unwrap().expose_secret()
        );
        // Another class or another name: other keys.
        for other in [
            FileName::new(2, b"pgsql_tmp1.0").unwrap(),
            FileName::new(1, b"pgsql_tmp1.1").unwrap(),
            FileName::new(1, b"").unwrap(),
        ] {
            let o = derive_file_keys(&k, &[3; 16], &other).unwrap();
            assert_ne!(*fk.data_key, *o.data_key);
            assert_ne!(*fk.meta_key, *o.meta_key);
            assert_ne!(*fk.header_mac_key, *o.header_mac_key);
        }
    }

    #[test]
    fn names_are_bounded_and_not_printed() {
        assert!(FileName::new(0, &[b'a'; 255]).is_ok());
        assert_eq!(
            FileName::new(0, &[b'a'; 256]),
            Err(FormatError::NameTooLong { len: 256 })
        );
        let n = FileName::new(3, b"secret_table_name").unwrap();
        assert!(!format!("{n:?}").contains("secret"));
        assert_eq!(n.class(), 3);
        assert_eq!(n.bytes(), b"secret_table_name");
    }
}
