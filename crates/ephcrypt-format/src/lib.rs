//! On-disk format of pg_ephcrypt transient files (normative spec:
//! `docs/FORMAT.md`).
//!
//! A 64-byte header, then blocks of `nonce || AES-256-GCM(8192 bytes) || tag`
//! under a per-file key derived from the epoch key. Everything here is pure:
//! no libc, no global state; file I/O goes through [`PhysicalIo`], so the libc
//! shims and the property tests share one implementation. The read and write
//! paths do not allocate.
#![forbid(unsafe_code)]

mod block;
mod error;
mod file;
pub mod fuzzing;
mod header;
mod keys;
pub mod layout;
mod nonce;

pub use block::FileCipher;
pub use error::{FormatError, Result};
pub use file::{PhysicalIo, SealedFile, VecIo};
pub use header::{header_prefix, sniff, Header, Sniff};
pub use keys::{EpochKey, SecretBytes32, KEY_LEN};
pub use layout::{
    logical_to_physical_size, phys_block_offset, physical_to_logical_size, BLOCK_SIZE, HEADER_LEN,
    MAX_LOGICAL_SIZE, NONCE_LEN, PHYS_BLOCK_SIZE, TAG_LEN,
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
