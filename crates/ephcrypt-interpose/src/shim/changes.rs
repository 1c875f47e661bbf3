//! Cross-process change counters of shared covered files (FORMAT.md §8.2,
//! DECISIONS.md #64).
//!
//! A shared handle (file-set member, WAL segment) used to revalidate its
//! cached length and metadata at every call: one `fstat` and one 28-byte
//! trailer `pread` before PostgreSQL's own read or write. Most of those calls
//! follow the same handle's previous call with no other process having
//! touched the file in between. This table, mapped once in the postmaster
//! before any fork and so shared by every process of the cluster, lets a
//! handle know that: every handle that writes a shared file bumps the file's
//! counter before its first physical write and again after its last one; a
//! handle whose previous call returned successfully, and whose file's
//! counter moved only by its own bumps since that call began, skips the
//! revalidation.
//!
//! The counters are indexed by a hash of the file's (device, inode): two
//! files that share a counter only see each other's bumps as changes (a
//! revalidation that was not needed). They hold no secret, so the mapping
//! is ordinary shared memory. Without the table (not installed) every call
//! revalidates, as before.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use super::poison::FileId;
use crate::error::InterposeError;

/// Counters in the table (a power of two).
const SLOTS: usize = 4096;

/// One counter per cache line: handles of different files in different
/// processes never contend for a line.
#[repr(C, align(64))]
struct Line {
    count: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Line>() == 64);
const _: () = assert!(SLOTS.is_power_of_two());

/// The table (null until [`init_shared`]).
static TABLE: AtomicPtr<Line> = AtomicPtr::new(std::ptr::null_mut());

/// Calls of this process that skipped revalidation (tests, diagnostics).
static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// Test control only: this process stops bumping counters, as a writer
/// outside the shims would (the check that other handles then go stale).
static BUMPS_OFF: AtomicBool = AtomicBool::new(false);

/// How many calls of this process skipped revalidation.
pub fn skipped() -> u64 {
    SKIPPED.load(Ordering::Relaxed)
}

/// Under the process lock of the shims: a plain load and store, no locked
/// add on the hot path (as `stats::add`).
#[inline]
pub(crate) fn note_skipped() {
    SKIPPED.store(
        SKIPPED.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Test control: stop (or resume) bumping change counters in this process.
/// Never for a server: other processes would then use stale state.
#[doc(hidden)]
pub fn disable_bumps_for_tests(off: bool) {
    BUMPS_OFF.store(off, Ordering::Relaxed);
}

/// Map the table. Postmaster only, before any fork (a process that mapped
/// its own table would not see other processes' bumps: never call this in a
/// backend). Idempotent.
pub(crate) fn init_shared() -> Result<(), InterposeError> {
    if !TABLE.load(Ordering::Acquire).is_null() {
        return Ok(());
    }
    let len = SLOTS * std::mem::size_of::<Line>();
    let base = crate::secmem::map_shared_anonymous(len).map_err(InterposeError::SharedMap)?;
    TABLE.store(base.cast(), Ordering::Release);
    Ok(())
}

fn counter_of(id: FileId) -> Option<&'static AtomicU64> {
    let base = TABLE.load(Ordering::Acquire);
    if base.is_null() {
        return None;
    }
    let h = (id.ino ^ id.dev.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let i = (h >> (64 - SLOTS.trailing_zeros())) as usize;
    // SAFETY: i < SLOTS lies inside the zero-initialized mapping of SLOTS
    // 64-byte-aligned lines, which is never unmapped.
    Some(unsafe { &(*base.add(i)).count })
}

/// One handle's view of its file's counter.
#[derive(Debug)]
pub(crate) struct Watch {
    counter: Option<&'static AtomicU64>,
    /// The counter when the current call began.
    begin: u64,
    /// Bumps this handle made since then.
    own: u64,
    /// The counter when this handle's last call returned successfully, if
    /// only this handle's own bumps had moved it during that call.
    seen: Option<u64>,
    /// Bumped before a write that [`Self::finish`] has not closed yet.
    writing: bool,
}

impl Watch {
    pub(crate) fn of(id: FileId) -> Self {
        Self {
            counter: counter_of(id),
            begin: 0,
            own: 0,
            seen: None,
            writing: false,
        }
    }

    /// A handle that never skips and never bumps (tests, no table).
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Self {
            counter: None,
            begin: 0,
            own: 0,
            seen: None,
            writing: false,
        }
    }

    /// Start of a call: whether no handle has changed the file since this
    /// one's last successful call returned.
    #[inline]
    pub(crate) fn begin(&mut self) -> bool {
        // (Every path that writes finishes; this only keeps a forgotten
        // one from leaving the counter open.)
        self.finish();
        let Some(c) = self.counter else {
            return false;
        };
        // Acquire (SeqCst): the call's reads of the file come after it.
        self.begin = c.load(Ordering::SeqCst);
        self.own = 0;
        self.seen == Some(self.begin)
    }

    /// End of a call: remember the counter if the call succeeded and nobody
    /// else bumped it meanwhile.
    #[inline]
    pub(crate) fn end(&mut self, ok: bool) {
        self.finish();
        self.seen = match self.counter {
            Some(c) if ok => {
                let now = c.load(Ordering::SeqCst);
                (now == self.begin.wrapping_add(self.own)).then_some(now)
            }
            _ => None,
        };
    }

    /// Before a physical write: the first one since [`Self::finish`] bumps.
    #[inline]
    pub(crate) fn start_write(&mut self) {
        if !self.writing {
            self.bump();
            self.writing = true;
        }
    }

    /// After the last physical write of a call (or of a close, sync or
    /// seal outside calls): bump again if [`Self::start_write`] did.
    #[inline]
    pub(crate) fn finish(&mut self) {
        if self.writing {
            self.writing = false;
            self.bump();
        }
    }

    /// One bump (a change made outside [`FdIo`](super::fdio::FdIo)).
    #[inline]
    pub(crate) fn bump(&mut self) {
        if let Some(c) = self.counter.filter(|_| !BUMPS_OFF.load(Ordering::Relaxed)) {
            // What correctness rests on is the bump after a write: a
            // release after the write's syscalls returned, paired with the
            // acquire load in `begin`, so a call that sees it reads what
            // the write left. (The bump before a write only narrows the
            // window a call that overlaps the write has anyway: on aarch64
            // it is not ordered before the write's stores; DECISIONS #64.)
            c.fetch_add(1, Ordering::SeqCst);
            self.own = self.own.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(counter: &'static AtomicU64) -> Watch {
        Watch {
            counter: Some(counter),
            begin: 0,
            own: 0,
            seen: None,
            writing: false,
        }
    }

    #[test]
    fn a_call_skips_only_after_a_successful_call_and_no_foreign_bump() {
        static C: AtomicU64 = AtomicU64::new(7);
        let mut a = watch(&C);
        let mut b = watch(&C);
        assert!(!a.begin(), "no earlier call");
        a.end(true);
        assert!(a.begin(), "unchanged since a's last call");
        // a writes: its own bumps keep its view.
        a.start_write();
        a.start_write();
        a.end(true);
        assert_eq!(C.load(Ordering::SeqCst), 9, "one bump before, one after");
        assert!(a.begin());
        a.end(true);
        // b writes between a's calls: a must revalidate (control).
        assert!(!b.begin());
        b.start_write();
        b.end(true);
        assert!(!a.begin(), "b's bumps are a change for a");
        a.end(true);
        assert!(a.begin());
        // b writes while a's call runs: a's next call revalidates.
        b.start_write();
        a.end(true);
        b.finish();
        assert!(!a.begin());
        // A failed call is never trusted.
        a.end(false);
        assert!(!a.begin());
        // b's bumps outside a call (close, sync) make its own next call
        // revalidate too.
        assert!(!b.begin());
        b.end(true);
        b.start_write();
        b.finish();
        assert!(!b.begin());
        // A write a path forgot to finish is finished by the next begin.
        let before = C.load(Ordering::SeqCst);
        b.start_write();
        assert!(!b.begin());
        assert_eq!(C.load(Ordering::SeqCst), before + 2);
    }

    #[test]
    fn without_the_table_nothing_is_skipped() {
        let mut w = Watch::none();
        w.end(true);
        assert!(!w.begin());
        w.start_write();
        w.end(true);
        assert!(!w.begin());
    }
}
