//! Sealing and opening data blocks and metadata pages under a file's keys
//! (FORMAT.md §3.2, §3.3, §5).
//!
//! This is the hot path inside the libc shims: no heap allocation, caller
//! buffers only.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{constant_time, hmac};

use crate::error::{FormatError, Result};
use crate::header::{header_prefix, Header};
use crate::keys::{derive_file_keys, EpochKey, FileName};
use crate::layout::{
    AAD_LEN, BLOCK_SIZE, HEADER_LEN, HEADER_PREFIX_LEN, NONCE_LEN, PAGE_SIZE, TAG_LEN,
};
use crate::meta::{self, GroupState, Page, OFF_GROUP, OFF_MAC_NONCE, OFF_MAC_TAG};

/// The last 4 bytes of a published page's trailer (FORMAT.md §8.3).
const PUBLISHED_STAMP: &[u8; TAG_LEN - NONCE_LEN] = b"POOL";

/// The keyed state of one file: its data and metadata AES-256-GCM keys and
/// its header.
///
/// The raw subkeys are wiped right after AWS-LC has expanded them; the AES key
/// schedules then live inside AWS-LC's contexts, which AWS-LC frees (and
/// cleanses) on drop.
pub struct FileCipher {
    data_key: LessSafeKey,
    meta_key: LessSafeKey,
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
    /// Keys for a new file bound to `name`, and its 64-byte header.
    ///
    /// # Errors
    /// [`FormatError::ZeroFileId`]; [`FormatError::CryptoFailure`].
    pub fn create(
        key: &EpochKey,
        epoch_id: &[u8; 16],
        file_id: &[u8; 16],
        name: &FileName<'_>,
    ) -> Result<(Self, [u8; HEADER_LEN])> {
        if *file_id == [0; 16] {
            return Err(FormatError::ZeroFileId);
        }
        let keys = derive_file_keys(key, file_id, name)?;
        let mut header = [0u8; HEADER_LEN];
        header[..HEADER_PREFIX_LEN].copy_from_slice(&header_prefix(epoch_id, file_id));
        let tag = header_tag(&keys.header_mac_key, &header);
        header[HEADER_PREFIX_LEN..].copy_from_slice(&tag);
        let cipher = Self {
            data_key: aes_key(&keys.data_key)?,
            meta_key: aes_key(&keys.meta_key)?,
            header,
        };
        Ok((cipher, header))
    }

    /// Keys for an existing file, after checking its header against the
    /// current epoch and verifying the header tag under the key bound to
    /// `name`.
    ///
    /// # Errors
    /// Everything [`Header::parse`] reports; then [`FormatError::ForeignEpoch`]
    /// and [`FormatError::HeaderAuthFailed`] (also for another name).
    pub fn open(
        key: &EpochKey,
        current_epoch: &[u8; 16],
        name: &FileName<'_>,
        header: &[u8; HEADER_LEN],
    ) -> Result<Self> {
        let parsed = Header::parse(header)?;
        if parsed.epoch_id != *current_epoch {
            return Err(FormatError::ForeignEpoch);
        }
        let keys = derive_file_keys(key, &parsed.file_id, name)?;
        let tag = header_tag(&keys.header_mac_key, header);
        constant_time::verify_slices_are_equal(&tag, &parsed.tag)
            .map_err(|_| FormatError::HeaderAuthFailed)?;
        Ok(Self {
            data_key: aes_key(&keys.data_key)?,
            meta_key: aes_key(&keys.meta_key)?,
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

    /// Seal `plain` (1..=8192 bytes) as data block `index` with `nonce`: the
    /// ciphertext goes to `out[..plain.len()]`, the tag is returned (it
    /// belongs in the block's metadata entry with the nonce).
    ///
    /// `nonce` must never have been used with this file's keys (take it from
    /// a [`crate::NonceSource`]).
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
    ) -> Result<[u8; TAG_LEN]> {
        let n = check_block_len(plain.len())?;
        if out.len() < n {
            return Err(FormatError::BufferTooSmall {
                needed: n,
                got: out.len(),
            });
        }
        let mut tag = [0u8; TAG_LEN];
        // Out of place: the caller's plaintext is never copied or modified.
        self.data_key
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(index)),
                plain,
                &mut out[..n],
                &[],
                &mut tag,
            )
            .map_err(|_| FormatError::CryptoFailure)?;
        Ok(tag)
    }

    /// Open data block `index` (`ct` = its exact 1..=8192 ciphertext bytes,
    /// `nonce` and `tag` from its entry) into `out`; returns the length.
    ///
    /// On failure nothing unauthenticated is left in `out`: the bytes the
    /// plaintext would have occupied are zeroed.
    ///
    /// # Errors
    /// [`FormatError::InvalidBlockLength`], [`FormatError::BufferTooSmall`],
    /// [`FormatError::BlockAuthFailed`].
    #[inline]
    pub fn open_block(
        &self,
        index: u64,
        nonce: &[u8; NONCE_LEN],
        tag: &[u8; TAG_LEN],
        ct: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let n = check_block_len(ct.len())?;
        if out.len() < n {
            return Err(FormatError::BufferTooSmall {
                needed: n,
                got: out.len(),
            });
        }
        let out = &mut out[..n];
        match self.data_key.open_separate_gather(
            Nonce::assume_unique_for_key(*nonce),
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

    /// Like [`Self::open_block`], decrypting `buf` (1..=8192 ciphertext
    /// bytes) in place; zeroed on failure.
    ///
    /// # Errors
    /// [`FormatError::InvalidBlockLength`], [`FormatError::BlockAuthFailed`].
    #[inline]
    pub fn open_block_in_place(
        &self,
        index: u64,
        nonce: &[u8; NONCE_LEN],
        tag: &[u8; TAG_LEN],
        buf: &mut [u8],
    ) -> Result<()> {
        check_block_len(buf.len())?;
        let ok = self
            .data_key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(self.aad(index)),
                tag,
                buf,
            )
            .is_ok();
        if ok {
            Ok(())
        } else {
            buf.fill(0);
            Err(FormatError::BlockAuthFailed { index })
        }
    }

    /// MAC a metadata page for `group` with `nonce` (FORMAT.md §5.5): writes
    /// the header copy, the group index, the nonce and the tag into the page
    /// and returns the tag (the page's digest). The record and entries are
    /// the caller's.
    ///
    /// # Errors
    /// [`FormatError::CryptoFailure`].
    pub fn seal_metadata(
        &self,
        group: u64,
        nonce: [u8; NONCE_LEN],
        page: &mut Page,
    ) -> Result<[u8; TAG_LEN]> {
        page[..HEADER_LEN].copy_from_slice(&self.header);
        page[OFF_GROUP..OFF_GROUP + 8].copy_from_slice(&group.to_le_bytes());
        page[OFF_MAC_NONCE..OFF_MAC_TAG].copy_from_slice(&nonce);
        let (aad, _) = page.split_at(OFF_MAC_NONCE);
        let tag = self
            .meta_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut [],
            )
            .map_err(|_| FormatError::CryptoFailure)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        page[OFF_MAC_TAG..].copy_from_slice(&out);
        Ok(out)
    }

    /// Stamp `page` as group `group`'s published version (FORMAT.md §8.3):
    /// header copy, group index, and in the MAC trailer `nonce` twice over
    /// (as nonce, and as the first 12 tag bytes before `"POOL"`). No MAC.
    pub fn stamp_published(
        &self,
        group: u64,
        nonce: [u8; NONCE_LEN],
        page: &mut Page,
    ) -> meta::Touched {
        page[..HEADER_LEN].copy_from_slice(&self.header);
        page[OFF_GROUP..OFF_GROUP + 8].copy_from_slice(&group.to_le_bytes());
        page[OFF_MAC_NONCE..OFF_MAC_TAG].copy_from_slice(&nonce);
        page[OFF_MAC_TAG..OFF_MAC_TAG + NONCE_LEN].copy_from_slice(&nonce);
        page[OFF_MAC_TAG + NONCE_LEN..].copy_from_slice(PUBLISHED_STAMP);
        meta::Touched::range(0, OFF_GROUP + 8).or(meta::Touched::range(OFF_MAC_NONCE, PAGE_SIZE))
    }

    /// Check a page taken from the pool as group `group`'s (FORMAT.md
    /// §8.3): a stamp, this file's header copy, this group's index and a
    /// valid state. Not a MAC: the pool is process memory.
    ///
    /// # Errors
    /// [`FormatError::MetadataAuthFailed`].
    pub fn check_published(&self, group: u64, page: &Page) -> Result<GroupState> {
        let fail = FormatError::MetadataAuthFailed { group };
        let stamped = page[OFF_MAC_TAG + NONCE_LEN..] == PUBLISHED_STAMP[..]
            && page[OFF_MAC_NONCE..OFF_MAC_TAG] == page[OFF_MAC_TAG..OFF_MAC_TAG + NONCE_LEN];
        if !stamped || page[..HEADER_LEN] != self.header || meta::group(page) != group {
            return Err(fail);
        }
        match meta::state(page) {
            Some(s) if s.is_valid(group) => Ok(s),
            _ => Err(fail),
        }
    }

    /// Verify the metadata page found at group `group`'s position: MAC, header
    /// copy, group index and a valid state (FORMAT.md §3.2, §5.5).
    ///
    /// # Errors
    /// [`FormatError::MetadataAuthFailed`].
    pub fn open_metadata(&self, group: u64, page: &Page) -> Result<GroupState> {
        let fail = FormatError::MetadataAuthFailed { group };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&page[OFF_MAC_NONCE..OFF_MAC_TAG]);
        self.meta_key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&page[..OFF_MAC_NONCE]),
                &page[OFF_MAC_TAG..],
                &mut [],
            )
            .map_err(|_| fail)?;
        // Authentic for this file; now it must also be this group's page
        // and a state a writer can produce.
        if page[..HEADER_LEN] != self.header || meta::group(page) != group {
            return Err(fail);
        }
        match meta::state(page) {
            Some(s) if s.is_valid(group) => Ok(s),
            _ => Err(fail),
        }
    }
}

fn check_block_len(n: usize) -> Result<usize> {
    if n == 0 || n > BLOCK_SIZE {
        Err(FormatError::InvalidBlockLength { len: n })
    } else {
        Ok(n)
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
