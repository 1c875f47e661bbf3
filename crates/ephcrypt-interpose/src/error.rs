//! The one error enum of this crate. Never carries key bytes.

use crate::shim::audit::AuditError;

/// The error type of this crate's interposition layer.
#[derive(Debug, thiserror::Error)]
pub enum InterposeError {
    /// The key page could not be mapped.
    #[error("could not map the key page: {0}")]
    KeyMap(std::io::Error),
    /// The shared counter page could not be mapped.
    #[error("could not map the shared counter page: {0}")]
    SharedMap(std::io::Error),
    /// The key page could not be locked in memory.
    #[error("could not lock the key page in memory (mlock): {0}")]
    KeyLock(std::io::Error),
    /// The key page could not be excluded from core dumps.
    #[error("could not exclude the key page from core dumps (madvise): {0}")]
    KeyDontDump(std::io::Error),
    /// The kernel CSPRNG failed.
    #[error("could not read random bytes from the kernel (getrandom): {0}")]
    Random(std::io::Error),
    /// Platform or process state without interposition support.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// Reading the executable, resolving libc or patching failed.
    #[error(transparent)]
    Got(#[from] ephcrypt_got::GotError),
    /// The executable imports a call that could bypass the shims.
    #[error("import audit failed: {0}")]
    Audit(#[from] AuditError),
    /// The start-up pass over pg_wal failed (the message names the file).
    #[error("WAL start-up pass: {0}")]
    Wal(String),
    /// `install` was called twice in one process.
    #[error("interposition is already installed in this process")]
    AlreadyInstalled,
}
