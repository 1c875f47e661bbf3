//! Nonce streams: random 8-byte prefix || 32-bit big-endian counter (FORMAT.md §6).

use aws_lc_rs::rand;

use crate::error::{FormatError, Result};
use crate::layout::NONCE_LEN;

/// Something that hands out GCM nonces that never repeat under one key.
///
/// [`crate::SealedFile`] takes its nonces from here, so the interpose layer
/// can plug in its own source (e.g. one that re-draws its prefix after fork).
pub trait NonceSource {
    /// The next never-used nonce.
    ///
    /// # Errors
    /// Whatever the source cannot recover from (e.g. the OS RNG failing).
    fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN]>;
}

/// One nonce stream: a random prefix drawn once per process (and again after
/// `fork()`), then a counter, so there is no syscall per nonce.
///
/// Not `Clone`: a copy would hand out the same nonces twice.
pub struct NonceSequence {
    prefix: [u8; 8],
    /// Next counter value; `1 << 32` means exhausted.
    counter: u64,
}

const COUNTER_END: u64 = 1 << 32;

impl NonceSequence {
    /// A stream with the given prefix, starting at counter 0. The prefix must
    /// be random (OS CSPRNG) and not used before.
    #[must_use]
    pub const fn new(prefix: [u8; 8]) -> Self {
        Self { prefix, counter: 0 }
    }

    /// A stream starting at `counter` (tests; resuming a known-unused range).
    #[must_use]
    pub const fn with_counter(prefix: [u8; 8], counter: u32) -> Self {
        Self {
            prefix,
            counter: counter as u64,
        }
    }

    /// A stream with a prefix from the OS CSPRNG.
    ///
    /// # Errors
    /// [`FormatError::RandomFailed`].
    pub fn from_os_rng() -> Result<Self> {
        Ok(Self::new(random_prefix()?))
    }

    /// Start a new stream with `prefix` (after `fork()` or exhaustion).
    pub fn reseed(&mut self, prefix: [u8; 8]) {
        self.prefix = prefix;
        self.counter = 0;
    }

    /// Start a new stream with a prefix from the OS CSPRNG.
    ///
    /// # Errors
    /// [`FormatError::RandomFailed`].
    pub fn reseed_from_os_rng(&mut self) -> Result<()> {
        self.reseed(random_prefix()?);
        Ok(())
    }

    /// The next nonce of this stream.
    ///
    /// # Errors
    /// [`FormatError::NonceSpaceExhausted`] after 2^32 nonces; the caller then
    /// draws a new prefix ([`Self::reseed`]).
    #[allow(clippy::should_implement_trait)] // fallible; not an Iterator
    pub fn next(&mut self) -> Result<[u8; NONCE_LEN]> {
        if self.counter >= COUNTER_END {
            return Err(FormatError::NonceSpaceExhausted);
        }
        let mut n = [0u8; NONCE_LEN];
        n[..8].copy_from_slice(&self.prefix);
        n[8..].copy_from_slice(&(self.counter as u32).to_be_bytes());
        self.counter += 1;
        Ok(n)
    }

    /// The stream prefix (public: it is written into every nonce anyway).
    #[must_use]
    pub const fn prefix(&self) -> [u8; 8] {
        self.prefix
    }

    /// How many nonces this stream can still hand out.
    #[must_use]
    pub const fn remaining(&self) -> u64 {
        COUNTER_END - self.counter
    }
}

impl core::fmt::Debug for NonceSequence {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NonceSequence")
            .field("remaining", &self.remaining())
            .finish_non_exhaustive()
    }
}

/// Strict [`NonceSequence::next`], except that an exhausted stream draws a new
/// prefix from the OS CSPRNG instead of failing a write half-way.
impl NonceSource for NonceSequence {
    fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN]> {
        match self.next() {
            Err(FormatError::NonceSpaceExhausted) => {
                self.reseed_from_os_rng()?;
                self.next()
            }
            other => other,
        }
    }
}

fn random_prefix() -> Result<[u8; 8]> {
    let mut p = [0u8; 8];
    rand::fill(&mut p).map_err(|_| FormatError::RandomFailed)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_big_endian_after_prefix() {
        let mut s = NonceSequence::new(*b"ABCDEFGH");
        assert_eq!(&s.next().unwrap(), b"ABCDEFGH\0\0\0\0");
        assert_eq!(&s.next().unwrap(), b"ABCDEFGH\0\0\0\x01");
        let mut s = NonceSequence::with_counter(*b"ABCDEFGH", 0x0102_0304);
        assert_eq!(&s.next().unwrap(), b"ABCDEFGH\x01\x02\x03\x04");
    }

    #[test]
    fn exhaustion_is_an_error_and_reseed_recovers() {
        let mut s = NonceSequence::with_counter([9; 8], u32::MAX);
        assert_eq!(s.remaining(), 1);
        assert_eq!(&s.next().unwrap()[8..], &[0xff; 4]);
        assert_eq!(s.remaining(), 0);
        assert_eq!(s.next(), Err(FormatError::NonceSpaceExhausted));
        assert_eq!(s.next(), Err(FormatError::NonceSpaceExhausted));
        s.reseed([1; 8]);
        assert_eq!(s.next().unwrap(), [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn nonce_source_reseeds_from_os_rng_on_exhaustion() {
        let mut s = NonceSequence::with_counter([9; 8], u32::MAX);
        let last = s.next_nonce().unwrap();
        let fresh = s.next_nonce().unwrap();
        assert_ne!(last[..8], fresh[..8]);
        assert_ne!(s.prefix(), [9; 8]);
        assert_eq!(fresh[8..], [0, 0, 0, 0]);
    }

    #[test]
    fn os_rng_prefixes_differ() {
        let a = NonceSequence::from_os_rng().unwrap();
        let b = NonceSequence::from_os_rng().unwrap();
        assert_ne!(a.prefix(), b.prefix());
        assert!(!format!("{a:?}").contains("prefix"));
    }
}
