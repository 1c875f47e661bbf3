//! The one error type of the format crate.
//!
//! Messages name what is wrong and where (block index, lengths) but never carry
//! key bytes or plaintext, so they are safe to put into a PostgreSQL log.

/// Everything that can go wrong when parsing, opening, sealing or mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The first 8 bytes are not `PGEPHCR\0`: not a pg_ephcrypt file.
    #[error("bad magic: not a pg_ephcrypt file")]
    BadMagic,
    /// A format version this build does not implement.
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
    /// The header tag does not verify: tampered header or another key.
    #[error("pg_ephcrypt header authentication failed")]
    HeaderAuthFailed,
    /// A block's GCM tag does not verify.
    #[error("pg_ephcrypt block {index} failed authentication")]
    BlockAuthFailed {
        /// Block index within the file.
        index: u64,
    },
    /// A block authenticates but is not the version this handle last wrote
    /// there: an older version was replayed at the same position.
    #[error("pg_ephcrypt block {index} is not the version last written (replayed)")]
    BlockReplayed {
        /// Block index within the file.
        index: u64,
    },
    /// The physical file is 1..=63 bytes long: a cut-off header.
    #[error("truncated pg_ephcrypt header: physical size {physical_len}")]
    TruncatedHeader {
        /// Physical length found.
        physical_len: u64,
    },
    /// The physical size leaves 1..=28 bytes after the full blocks, too few to
    /// hold a block.
    #[error("corrupt pg_ephcrypt physical size {physical_len}")]
    CorruptPhysicalSize {
        /// Physical length found.
        physical_len: u64,
    },
    /// A physical block shorter than 29 or longer than 8220 bytes.
    #[error("pg_ephcrypt block {index} has invalid physical length {len}")]
    TruncatedBlock {
        /// Block index within the file.
        index: u64,
        /// Physical length given.
        len: usize,
    },
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
    /// The OS random number generator failed.
    #[error("random number generator failed")]
    RandomFailed,
    /// AWS-LC reported an internal failure (key setup or sealing).
    #[error("cryptographic library failure")]
    CryptoFailure,
}

/// Shorthand used throughout the crate.
pub type Result<T, E = FormatError> = core::result::Result<T, E>;
