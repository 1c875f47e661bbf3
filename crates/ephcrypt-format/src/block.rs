//! Sealing and opening single blocks under a per-file key (FORMAT.md §3.2, §5).
//!
//! This is the hot path inside the libc shims: no heap allocation, caller
//! buffers only, out-of-place AES-GCM so the plaintext is never copied.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{constant_time, hmac};

use crate::error::{FormatError, Result};
use crate::header::{header_prefix, Header};
use crate::keys::{derive_file_keys, EpochKey};
use crate::layout::{
    AAD_LEN, BLOCK_OVERHEAD, BLOCK_SIZE, HEADER_LEN, HEADER_PREFIX_LEN, MIN_PHYS_BLOCK_SIZE,
    NONCE_LEN, PHYS_BLOCK_SIZE, TAG_LEN,
};

/// The keyed state of one file: its AES-256-GCM block key and its header.
///
/// The raw subkeys are wiped right after AWS-LC has expanded them; the AES key
/// schedule then lives inside AWS-LC's context, which AWS-LC frees (and
/// cleanses) on drop.
pub struct FileCipher {
    key: LessSafeKey,
    header: [u8; HEADER_LEN],
}

impl core::fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FileCipher")
            .field("header", &"<64 bytes>")
            .finish_non_exhaustive()
    }
}

impl FileCipher {
    /// Keys for a new file and its 64-byte header.
    ///
    /// # Errors
    /// [`FormatError::ZeroFileId`]; [`FormatError::CryptoFailure`].
    pub fn create(
        key: &EpochKey,
        epoch_id: &[u8; 16],
        file_id: &[u8; 16],
    ) -> Result<(Self, [u8; HEADER_LEN])> {
        if *file_id == [0; 16] {
            return Err(FormatError::ZeroFileId);
        }
        let keys = derive_file_keys(key, file_id)?;
        let mut header = [0u8; HEADER_LEN];
        header[..HEADER_PREFIX_LEN].copy_from_slice(&header_prefix(epoch_id, file_id));
        let tag = header_tag(&keys.header_mac_key, &header);
        header[HEADER_PREFIX_LEN..].copy_from_slice(&tag);
        let cipher = Self {
            key: aes_key(&keys.block_key)?,
            header,
        };
        Ok((cipher, header))
    }

    /// Keys for an existing file, after checking its header against the
    /// current epoch and verifying the header tag.
    ///
    /// # Errors
    /// Everything [`Header::parse`] reports; then [`FormatError::ForeignEpoch`]
    /// and [`FormatError::HeaderAuthFailed`].
    pub fn open(
        key: &EpochKey,
        current_epoch: &[u8; 16],
        header: &[u8; HEADER_LEN],
    ) -> Result<Self> {
        let parsed = Header::parse(header)?;
        if parsed.epoch_id != *current_epoch {
            return Err(FormatError::ForeignEpoch);
        }
        let keys = derive_file_keys(key, &parsed.file_id)?;
        let tag = header_tag(&keys.header_mac_key, header);
        constant_time::verify_slices_are_equal(&tag, &parsed.tag)
            .map_err(|_| FormatError::HeaderAuthFailed)?;
        Ok(Self {
            key: aes_key(&keys.block_key)?,
            header: *header,
        })
    }

    /// The file's 64-byte header.
    #[must_use]
    pub const fn header_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    /// The file id from the header.
    #[must_use]
    pub fn file_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.header[32..48]);
        id
    }

    /// The epoch id from the header.
    #[must_use]
    pub fn epoch_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.header[16..32]);
        id
    }

    /// `AAD(i) = header[0..48] || u64_le(i)`.
    #[inline]
    fn aad(&self, index: u64) -> [u8; AAD_LEN] {
        let mut aad = [0u8; AAD_LEN];
        aad[..HEADER_PREFIX_LEN].copy_from_slice(&self.header[..HEADER_PREFIX_LEN]);
        aad[HEADER_PREFIX_LEN..].copy_from_slice(&index.to_le_bytes());
        aad
    }

    /// Seal `plain` (1..=8192 bytes) as block `index` with `nonce` into
    /// `out` as `nonce || ciphertext || tag`; returns the physical length.
    ///
    /// `nonce` must never have been used with this file's key (take it from a
    /// [`crate::NonceSource`]).
    ///
    /// # Errors
    /// [`FormatError::InvalidBlockLength`], [`FormatError::BufferTooSmall`],
    /// [`FormatError::CryptoFailure`].
    #[inline]
    pub fn seal_block(
        &self,
        index: u64,
        nonce: [u8; NONCE_LEN],
        plain: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let n = plain.len();
        if n == 0 || n > BLOCK_SIZE {
            return Err(FormatError::InvalidBlockLength { len: n });
        }
        let phys_len = n + BLOCK_OVERHEAD;
        if out.len() < phys_len {
            return Err(FormatError::BufferTooSmall {
                needed: phys_len,
                got: out.len(),
            });
        }
        let (nonce_out, rest) = out[..phys_len].split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(n);
        nonce_out.copy_from_slice(&nonce);
        self.key
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(index)),
                plain,
                ct,
                &[],
                tag,
            )
            .map_err(|_| FormatError::CryptoFailure)?;
        Ok(phys_len)
    }

    /// Open physical block `index` (`phys` = its exact 29..=8220 bytes) into
    /// `out`; returns the plaintext length.
    ///
    /// On failure nothing unauthenticated is left in `out`: the bytes the
    /// plaintext would have occupied are zeroed.
    ///
    /// # Errors
    /// [`FormatError::TruncatedBlock`], [`FormatError::BufferTooSmall`],
    /// [`FormatError::BlockAuthFailed`].
    #[inline]
    pub fn open_block(&self, index: u64, phys: &[u8], out: &mut [u8]) -> Result<usize> {
        let len = phys.len();
        if !(MIN_PHYS_BLOCK_SIZE..=PHYS_BLOCK_SIZE).contains(&len) {
            return Err(FormatError::TruncatedBlock { index, len });
        }
        let n = len - BLOCK_OVERHEAD;
        if out.len() < n {
            return Err(FormatError::BufferTooSmall {
                needed: n,
                got: out.len(),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&phys[..NONCE_LEN]);
        let (ct, tag) = phys[NONCE_LEN..].split_at(n);
        debug_assert_eq!(tag.len(), TAG_LEN);
        let out = &mut out[..n];
        match self.key.open_separate_gather(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(self.aad(index)),
            ct,
            tag,
            out,
        ) {
            Ok(()) => Ok(n),
            Err(_) => {
                out.fill(0);
                Err(FormatError::BlockAuthFailed { index })
            }
        }
    }
}

fn aes_key(bytes: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&aead::AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| FormatError::CryptoFailure)
}

fn header_tag(mac_key: &[u8; 32], header: &[u8; HEADER_LEN]) -> [u8; TAG_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
    let full = hmac::sign(&key, &header[..HEADER_PREFIX_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
    tag
}
