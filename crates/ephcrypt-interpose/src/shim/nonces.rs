//! The per-process nonce stream (FORMAT.md §6): a random 8-byte prefix from
//! the kernel CSPRNG, then a counter. A fork child must draw its own prefix
//! before it seals anything, or parent and child would hand out the same
//! nonces; the fork handler only raises a flag, and the flag is cleared once
//! a new prefix has actually been drawn.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use ephcrypt_format::{FormatError, NonceSequence, NonceSource, NONCE_LEN};

use super::real::{errno, Errno};

/// Set at process start and in every fork child: draw a new prefix before
/// the next seal.
static RESEED: AtomicBool = AtomicBool::new(true);

/// The stream itself. Only reachable through [`super::table::Guard`], which
/// holds the process lock.
pub(crate) struct NonceCell(UnsafeCell<NonceSequence>);

// SAFETY: the cell is only accessed through `Guard::nonces`, with the
// process-wide lock held, so there is never more than one reference.
unsafe impl Sync for NonceCell {}

pub(crate) static NONCES: NonceCell = NonceCell(UnsafeCell::new(NonceSequence::new([0; 8])));

impl NonceCell {
    /// # Safety
    /// The caller holds the process lock (only `Guard` calls this) and no
    /// other reference to the stream exists.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_mut(&self) -> &mut NonceSequence {
        // SAFETY: exclusive access is guaranteed by the caller.
        unsafe { &mut *self.0.get() }
    }
}

/// Mark the stream stale (fork child handler).
pub(crate) fn reseed_after_fork() {
    RESEED.store(true, Ordering::Relaxed);
}

/// `N` bytes from the kernel CSPRNG (getrandom(2)). Used instead of aws-lc's
/// userspace RNG, whose first use in a process costs ~60 ms of entropy
/// gathering: every backend and parallel worker would pay it on its first
/// spill.
pub(crate) fn os_random<const N: usize>() -> Result<[u8; N], Errno> {
    #[cfg(test)]
    if tests::FAIL_RANDOM.load(Ordering::Relaxed) {
        return Err(Errno(libc::EAGAIN));
    }
    let mut out = [0u8; N];
    let mut done = 0usize;
    while done < N {
        // SAFETY: writing into our own buffer within its bounds.
        let n = unsafe { libc::getrandom(out[done..].as_mut_ptr().cast(), N - done, 0) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(Errno(e));
        }
        done += n as usize;
    }
    Ok(out)
}

/// The process's nonce source, borrowed from the guard.
pub(crate) struct ProcessNonces<'a>(pub(crate) &'a mut NonceSequence);

impl ProcessNonces<'_> {
    fn reseed(&mut self) -> ephcrypt_format::Result<()> {
        let prefix = os_random::<8>().map_err(|_| FormatError::RandomFailed)?;
        self.0.reseed(prefix);
        Ok(())
    }
}

impl NonceSource for ProcessNonces<'_> {
    fn next_nonce(&mut self) -> ephcrypt_format::Result<[u8; NONCE_LEN]> {
        if RESEED.load(Ordering::Relaxed) {
            // Clear the flag only after a new prefix is in place: a failed
            // draw must not leave the inherited stream in use.
            self.reseed()?;
            RESEED.store(false, Ordering::Relaxed);
        }
        match self.0.next() {
            Ok(n) => Ok(n),
            Err(FormatError::NonceSpaceExhausted) => {
                self.reseed()?;
                self.0.next()
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether the next seal draws a new prefix (tests).
pub fn reseed_pending() -> bool {
    RESEED.load(Ordering::Relaxed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) static FAIL_RANDOM: AtomicBool = AtomicBool::new(false);

    #[test]
    fn a_failed_reseed_keeps_the_flag_and_never_reuses_the_inherited_stream() {
        let mut seq = NonceSequence::new(*b"INHERIT!");
        let mut src = ProcessNonces(&mut seq);
        // As in a fork child: the inherited stream is stale.
        reseed_after_fork();
        FAIL_RANDOM.store(true, Ordering::Relaxed);
        assert_eq!(src.next_nonce(), Err(FormatError::RandomFailed));
        assert!(reseed_pending(), "flag kept after a failed draw");
        assert_eq!(
            src.next_nonce(),
            Err(FormatError::RandomFailed),
            "still refuses"
        );
        FAIL_RANDOM.store(false, Ordering::Relaxed);
        let n = src.next_nonce().unwrap();
        assert!(!reseed_pending());
        assert_ne!(
            &n[..8],
            b"INHERIT!",
            "a fresh prefix, not the inherited one"
        );
        assert_eq!(&n[8..], &[0, 0, 0, 0]);
        // Control: without a pending reseed the stream just counts.
        let m = src.next_nonce().unwrap();
        assert_eq!(&m[..8], &n[..8]);
        assert_eq!(&m[8..], &[0, 0, 0, 1]);
    }
}
