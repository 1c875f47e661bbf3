//! The one error enum of this crate.

/// Why reading the executable, resolving a function or patching a slot failed.
#[derive(Debug, thiserror::Error)]
pub enum GotError {
    /// Platform without GOT interposition support.
    #[error("unsupported platform: {0}")]
    Unsupported(&'static str),
    /// The executable's ELF structures could not be read or do not match
    /// what is mapped.
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
    /// `/proc/self/maps` or the executable file could not be read.
    #[error("cannot read {what}: {source}")]
    Io {
        /// What was being read.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl From<object::read::Error> for GotError {
    fn from(e: object::read::Error) -> Self {
        GotError::Elf(e.to_string())
    }
}
