//! On-disk format v2 of pg_ephcrypt transient files (normative spec:
//! `docs/FORMAT.md`).
//!
//! 8 KiB AES-256-GCM data blocks at 8 KiB-aligned offsets; their nonces and
//! tags live in one GMAC'd metadata page per 256 blocks, which also carries
//! the authenticated length. Keys are per file and bound to the file's
//! canonical name. Everything here is pure: no libc, no global state; file
//! I/O goes through [`PhysicalIo`], so the libc shims and the property tests
//! share one implementation. The read and write paths do not allocate.
#![forbid(unsafe_code)]

mod block;
mod error;
mod file;
pub mod fuzzing;
mod header;
mod keys;
pub mod layout;
pub mod meta;
mod nonce;

pub use block::FileCipher;
pub use error::{FormatError, Result};
pub use file::{
    Mode, PhysicalIo, PoolBase, Published, Remembered, SealedFile, VecIo, DEFAULT_CACHE_GROUPS,
    DIGEST_RESERVE, MAX_CACHE_GROUPS, MIN_CACHE_GROUPS,
};
pub use header::{header_prefix, sniff, Header, Sniff};
pub use keys::{EpochKey, FileName, SecretBytes32, KEY_LEN, MAX_NAME_LEN};
pub use layout::{
    data_offset, logical_to_physical_size, meta_offset, physical_to_logical_size, BLOCK_SIZE,
    ENTRY_LEN, FORMAT_VERSION, GROUP_BLOCKS, HEADER_LEN, MAX_LOGICAL_SIZE, NONCE_LEN, PAGE_SIZE,
    TAG_LEN,
};
pub use nonce::{NonceSequence, NonceSource};

/// Draw a random, non-zero 16-byte file id from the OS CSPRNG.
///
/// # Errors
/// [`FormatError::RandomFailed`].
pub fn random_file_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    loop {
        aws_lc_rs::rand::fill(&mut id).map_err(|_| FormatError::RandomFailed)?;
        if id != [0; 16] {
            return Ok(id);
        }
    }
}
