//! Secret key types and the key schedule (FORMAT.md §5).
//!
//! Secrets are newtypes that zeroize on drop and whose `Debug` never prints
//! bytes. Intermediate key bytes live in `Zeroizing` buffers and are wiped as
//! soon as AWS-LC has taken its own copy.

use aws_lc_rs::{hkdf, hmac, rand};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{FormatError, Result};

/// HKDF `info` for a file's AES-256-GCM block key.
pub const INFO_BLOCK_KEY: &[u8] = b"pg_ephcrypt v1 block key";
/// HKDF `info` for a file's header MAC key.
pub const INFO_HEADER_MAC: &[u8] = b"pg_ephcrypt v1 header mac";
/// Prefix of the fingerprint HMAC input.
pub const FINGERPRINT_LABEL: &[u8] = b"pg_ephcrypt v1 fingerprint";
/// HKDF salt for [`EpochKey::derive`].
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

/// A file's two subkeys (FORMAT.md §5.2); wiped on drop.
pub(crate) struct FileKeys {
    pub(crate) block_key: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) header_mac_key: Zeroizing<[u8; KEY_LEN]>,
}

/// `PRK = HKDF-Extract(salt = file_id, IKM = EK)`, then expand both subkeys.
pub(crate) fn derive_file_keys(key: &EpochKey, file_id: &[u8; 16]) -> Result<FileKeys> {
    // `Salt::extract` is lazy in aws-lc-rs (it keeps a zeroizing copy of the
    // IKM and runs the full HKDF at each `fill`); two expands cost two
    // extracts, well under a microsecond each, once per file open.
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, file_id).extract(&key.0);
    let mut keys = FileKeys {
        block_key: Zeroizing::new([0; KEY_LEN]),
        header_mac_key: Zeroizing::new([0; KEY_LEN]),
    };
    expand_into(&prk, INFO_BLOCK_KEY, &mut keys.block_key[..])?;
    expand_into(&prk, INFO_HEADER_MAC, &mut keys.header_mac_key[..])?;
    Ok(keys)
}

fn hkdf_into(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<()> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    expand_into(&prk, info, out)
}

struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand_into(prk: &hkdf::Prk, info: &[u8], out: &mut [u8]) -> Result<()> {
    let info = [info];
    prk.expand(&info, OutLen(out.len()))
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
        let fk = derive_file_keys(&k, &[3; 16]).unwrap();
        assert_ne!(*fk.block_key, *fk.header_mac_key);
        assert_ne!(
            &*fk.block_key,
            k.derive("pg_ephcrypt v1 block key")
                .unwrap()
                .expose_secret()
        );
    }
}
