//! The 64-byte file header (FORMAT.md §3.1) and a cheap sniffer for scanners.
//! The layout is v1's with version 2, so scanners tell both apart.

use crate::error::{FormatError, Result};
use crate::layout::{BLOCK_SIZE, FORMAT_VERSION, HEADER_LEN, HEADER_PREFIX_LEN, MAGIC};

/// A parsed header. Parsing checks structure only; the epoch and the tag are
/// checked by [`crate::FileCipher::open`], which has the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Key epoch the file was written under.
    pub epoch_id: [u8; 16],
    /// Random per-file id; salt of the per-file key derivation.
    pub file_id: [u8; 16],
    /// Truncated HMAC over the first 48 bytes.
    pub tag: [u8; 16],
}

impl Header {
    /// Parse and structurally validate the first 64 bytes of `bytes`.
    ///
    /// # Errors
    /// [`FormatError::TruncatedHeader`] (fewer than 64 bytes),
    /// [`FormatError::BadMagic`], [`FormatError::UnsupportedVersion`],
    /// [`FormatError::UnsupportedHeaderLength`],
    /// [`FormatError::UnsupportedBlockSize`], [`FormatError::ZeroFileId`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        // Check the magic first so that a short non-pg_ephcrypt file is
        // reported as "not ours" rather than "truncated".
        if bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(FormatError::TruncatedHeader {
                physical_len: bytes.len() as u64,
            });
        };
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let header_len = u16::from_le_bytes([h[10], h[11]]);
        if usize::from(header_len) != HEADER_LEN {
            return Err(FormatError::UnsupportedHeaderLength(header_len));
        }
        let block_size = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if block_size as usize != BLOCK_SIZE {
            return Err(FormatError::UnsupportedBlockSize(block_size));
        }
        let mut out = Self {
            epoch_id: [0; 16],
            file_id: [0; 16],
            tag: [0; 16],
        };
        out.epoch_id.copy_from_slice(&h[16..32]);
        out.file_id.copy_from_slice(&h[32..48]);
        out.tag.copy_from_slice(&h[48..64]);
        if out.file_id == [0; 16] {
            return Err(FormatError::ZeroFileId);
        }
        Ok(out)
    }

    /// The serialized header, tag included.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..HEADER_PREFIX_LEN].copy_from_slice(&header_prefix(&self.epoch_id, &self.file_id));
        out[48..].copy_from_slice(&self.tag);
        out
    }
}

/// `header[0..48]`: magic, version, header length, block size, epoch id, file id.
#[must_use]
pub fn header_prefix(epoch_id: &[u8; 16], file_id: &[u8; 16]) -> [u8; HEADER_PREFIX_LEN] {
    let mut p = [0u8; HEADER_PREFIX_LEN];
    p[..8].copy_from_slice(&MAGIC);
    p[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    p[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    p[12..16].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    p[16..32].copy_from_slice(epoch_id);
    p[32..48].copy_from_slice(file_id);
    p
}

/// Verdict of [`sniff`] on the first bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// No pg_ephcrypt magic (includes empty and very short files).
    NotOurs,
    /// A structurally valid v2 header (the tag is not checked: no key needed).
    Ours {
        /// Epoch the file was written under.
        epoch_id: [u8; 16],
    },
    /// Our magic, but a header this build cannot use (cut off, unknown
    /// version such as a v1 file, wrong sizes, all-zero file id).
    Corrupt,
}

/// Classify a file by its first bytes without a key: for an on-disk scanner
/// that reports or removes files of other epochs.
#[must_use]
pub fn sniff(header: &[u8]) -> Sniff {
    if header.len() < MAGIC.len() || header[..MAGIC.len()] != MAGIC {
        return Sniff::NotOurs;
    }
    match Header::parse(header) {
        Ok(h) => Sniff::Ours {
            epoch_id: h.epoch_id,
        },
        Err(_) => Sniff::Corrupt,
    }
}
