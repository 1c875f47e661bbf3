//! The one error type of the format crate (FORMAT.md §10 maps each to errno).
//!
//! Messages name what is wrong and where (group, block, lengths) but never
//! carry key bytes, file names or plaintext, so they are safe to put into a
//! PostgreSQL log.

/// Everything that can go wrong when parsing, opening, sealing or mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The physical file has 0 bytes: never initialised by `create`, or it
    /// lost all its data. Only the caller knows which (a fresh
    /// `O_CREAT|O_TRUNC` open initialises it; any other open is an error).
    #[error("empty pg_ephcrypt file (0 bytes): not initialised, or all data lost")]
    EmptyFile,
    /// The first 8 bytes are not `PGEPHCR\0`: not a pg_ephcrypt file.
    #[error("bad magic: not a pg_ephcrypt file")]
    BadMagic,
    /// A format version this build does not implement (v1 files give 1).
    #[error("unsupported pg_ephcrypt format version {0}")]
    UnsupportedVersion(u16),
    /// A header length other than 64.
    #[error("unsupported pg_ephcrypt header length {0}")]
    UnsupportedHeaderLength(u16),
    /// A plaintext block size other than 8192.
    #[error("unsupported pg_ephcrypt block size {0}")]
    UnsupportedBlockSize(u32),
    /// The header names another key epoch than the current one.
    #[error("file was written under another key epoch")]
    ForeignEpoch,
    /// The file id is all zero (never produced by a writer).
    #[error("all-zero file id in pg_ephcrypt header")]
    ZeroFileId,
    /// The header tag does not verify under the key bound to this name:
    /// tampered header, another key, or a file moved or copied from another
    /// name or class.
    #[error("pg_ephcrypt header authentication failed (tampered, other key, or other file name)")]
    HeaderAuthFailed,
    /// The physical file ends inside page 0 (header and group 0 metadata).
    #[error("truncated pg_ephcrypt header page: physical size {physical_len}")]
    TruncatedHeader {
        /// Physical length found.
        physical_len: u64,
    },
    /// The physical size is impossible for the layout (it ends inside a
    /// metadata page, or beyond the largest supported size).
    #[error("corrupt pg_ephcrypt physical size {physical_len}")]
    CorruptPhysicalSize {
        /// Physical length found.
        physical_len: u64,
    },
    /// Data the authenticated metadata promises is missing, or the last group
    /// present is not the final one: the file was cut.
    #[error("pg_ephcrypt file truncated: data of group {group} missing")]
    Truncated {
        /// Group whose data or successor is missing.
        group: u64,
    },
    /// The physical file holds more than its authenticated metadata says.
    #[error("pg_ephcrypt physical size {physical_len} does not match its metadata")]
    SizeMismatch {
        /// Physical length found.
        physical_len: u64,
    },
    /// A metadata page fails its MAC, is not this file's page for this group
    /// position, or holds an impossible state.
    #[error("pg_ephcrypt metadata of group {group} failed authentication")]
    MetadataAuthFailed {
        /// Group index.
        group: u64,
    },
    /// An authentic metadata page that is not the version last written (or
    /// verified) by this process, or that disagrees with the authenticated
    /// length: an older version was put back.
    #[error("pg_ephcrypt metadata of group {group} is not the current version (replayed)")]
    MetadataReplayed {
        /// Group index.
        group: u64,
    },
    /// A data block's GCM tag does not verify.
    #[error("pg_ephcrypt block {index} failed authentication")]
    BlockAuthFailed {
        /// Block index within the file.
        index: u64,
    },
    /// The file on disk has another file id than the remembered state: it
    /// was replaced or re-created.
    #[error("pg_ephcrypt file is not the one remembered (other file id)")]
    RememberedFileId,
    /// The authenticated length differs from the remembered one.
    #[error("pg_ephcrypt file length {found} differs from the remembered {remembered}")]
    RememberedLength {
        /// Length remembered when the file was last closed.
        remembered: u64,
        /// Authenticated length found now.
        found: u64,
    },
    /// `remembered()` while metadata is dirty: call `flush()` first.
    #[error("pg_ephcrypt metadata not flushed")]
    Unflushed,
    /// A file name longer than 255 bytes.
    #[error("pg_ephcrypt file name of {len} bytes is too long (max 255)")]
    NameTooLong {
        /// Length given.
        len: usize,
    },
    /// An argument out of range or not valid for this mode (the text says
    /// which; it never contains data).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A plaintext block of 0 or more than 8192 bytes was given to seal.
    #[error("invalid plaintext block length {len}")]
    InvalidBlockLength {
        /// Plaintext length given.
        len: usize,
    },
    /// An output buffer cannot hold the result.
    #[error("buffer too small: need {needed} bytes, have {got}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The 2^32 counters of this nonce stream are used up; draw a new prefix.
    #[error("nonce space of this stream exhausted")]
    NonceSpaceExhausted,
    /// A logical offset or size beyond `MAX_LOGICAL_SIZE`.
    #[error("offset too large for pg_ephcrypt format")]
    OffsetTooLarge,
    /// Memory for the per-group digests could not be reserved.
    #[error("out of memory for pg_ephcrypt metadata digests")]
    OutOfMemory,
    /// The OS random number generator failed.
    #[error("random number generator failed")]
    RandomFailed,
    /// AWS-LC reported an internal failure (key setup or sealing).
    #[error("cryptographic library failure")]
    CryptoFailure,
}

/// Shorthand used throughout the crate.
pub type Result<T, E = FormatError> = core::result::Result<T, E>;
