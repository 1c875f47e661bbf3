//! The one error enum of this crate. Never carries key bytes.

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
    /// Platform without GOT interposition support.
    #[error("unsupported platform: {0}")]
    Unsupported(&'static str),
    /// The executable's in-memory ELF structures could not be read.
    #[error("cannot read the executable's dynamic linking information: {0}")]
    Elf(String),
    /// A patch request is malformed (empty name, null or non-code address...).
    #[error("invalid interposition request for {symbol:?}: {reason}")]
    InvalidRequest {
        /// Requested symbol.
        symbol: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The real libc function could not be found.
    #[error("cannot resolve libc function {name:?}: {reason}")]
    Resolve {
        /// Function name.
        name: String,
        /// dlopen/dlsym message or sanity-check failure.
        reason: String,
    },
    /// `mprotect` of a GOT page failed.
    #[error("cannot change the protection of the GOT page {page:#x} holding {symbol:?}: {source}")]
    Protect {
        /// A symbol with a slot in that page.
        symbol: String,
        /// Page address.
        page: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// After restoring, a page does not have its original protection.
    #[error("GOT page {page:#x} holding {symbol:?} has protection {found}, expected {expected}")]
    ProtectionNotRestored {
        /// A symbol with a slot in that page.
        symbol: String,
        /// Page address.
        page: usize,
        /// Expected `rwx` string.
        expected: String,
        /// Observed `rwx` string.
        found: String,
    },
    /// A patched slot does not hold the interposed address.
    #[error("GOT slot {slot:#x} of {symbol:?} holds {found:#x}, expected {expected:#x}")]
    Verify {
        /// Symbol.
        symbol: String,
        /// Slot address.
        slot: usize,
        /// Interposed function address.
        expected: usize,
        /// Observed value.
        found: usize,
    },
    /// `/proc/self/maps` could not be read or parsed.
    #[error("cannot read /proc/self/maps: {0}")]
    Maps(#[source] std::io::Error),
    /// An artifact class name is not known (see [`crate::classify`]).
    #[error("unknown artifact class {0:?} (expected temp_files, temp_relations or logical_spill)")]
    UnknownArtifactClass(String),
}
