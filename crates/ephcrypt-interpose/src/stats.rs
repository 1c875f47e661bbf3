//! Counters, without a shared atomic per I/O.
//!
//! Each process counts in its own memory (plain loads and stores: processes
//! are single-threaded) and folds its counts into one shared page with one
//! atomic add per counter: when it closes a covered file, every
//! [`FOLD_EVERY`] operations, and at exit. The shared page is an anonymous
//! `MAP_SHARED` mapping created by the postmaster and inherited through
//! fork, like the key page: never PostgreSQL's shared memory, which the
//! logger detaches and the postmaster unmaps on its way out.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::error::InterposeError;
use ephcrypt_classify::ArtifactClass;

/// Counters kept per artifact class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Covered files opened (including created ones).
    FilesOpened = 0,
    /// Covered files created empty (new or O_TRUNC) and given a fresh id.
    FilesCreated = 1,
    /// Plaintext bytes handed to a write and sealed.
    BytesSealed = 2,
    /// Plaintext bytes returned to a read after authentication.
    BytesOpened = 3,
    /// Reads or opens refused because a block or header failed
    /// authentication, or came from another epoch.
    AuthFailures = 4,
    /// Other I/O errors on covered files (ENOSPC, EMFILE, ...).
    IoErrors = 5,
}

/// Number of counters per class.
pub const COUNTERS: usize = 6;
const CLASSES: usize = ArtifactClass::COUNT;
const SLOTS: usize = COUNTERS * CLASSES;
/// Global (class-less) slots after the per-class ones.
const GLOBAL_REFUSED: usize = SLOTS;
const SHARED_LEN: usize = SLOTS + 1;

/// Fold local counts into the shared page after this many operations.
pub const FOLD_EVERY: u32 = 256;

/// Process-local counts. Only this process writes them; Relaxed
/// load+store pairs compile to plain moves (no locked instruction).
static LOCAL: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static OPS_SINCE_FOLD: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The shared page (null until [`init_shared`]).
static SHARED: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());

/// Create the shared counter page. Postmaster only, before any fork.
pub fn init_shared() -> Result<(), InterposeError> {
    if !SHARED.load(Ordering::Acquire).is_null() {
        return Ok(());
    }
    let len = SHARED_LEN * std::mem::size_of::<u64>();
    let base = crate::secmem::map_shared_anonymous(len).map_err(InterposeError::SharedMap)?;
    SHARED.store(base.cast(), Ordering::Release);
    Ok(())
}

fn shared_slot(i: usize) -> Option<&'static AtomicU64> {
    let base = SHARED.load(Ordering::Acquire);
    if base.is_null() || i >= SHARED_LEN {
        return None;
    }
    // SAFETY: i < SHARED_LEN lies inside the zero-initialized, 8-byte
    // aligned mapping, which is never unmapped.
    Some(unsafe { &*base.add(i) })
}

/// Count `n` for `counter` of `class` in this process.
#[inline]
pub fn add(class: ArtifactClass, counter: Counter, n: u64) {
    let slot = &LOCAL[class.index() * COUNTERS + counter as usize];
    slot.store(
        slot.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Note one operation; folds every [`FOLD_EVERY`] operations.
#[inline]
pub fn tick() {
    let n = OPS_SINCE_FOLD.load(Ordering::Relaxed) + 1;
    if n >= FOLD_EVERY {
        fold();
    } else {
        OPS_SINCE_FOLD.store(n, Ordering::Relaxed);
    }
}

/// Move this process's counts into the shared page.
pub fn fold() {
    OPS_SINCE_FOLD.store(0, Ordering::Relaxed);
    for (i, local) in LOCAL.iter().enumerate() {
        let v = local.load(Ordering::Relaxed);
        if v != 0 {
            if let Some(shared) = shared_slot(i) {
                shared.fetch_add(v, Ordering::Relaxed);
                local.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Count a configuration the server refused or warned about.
pub fn count_refused_configuration() {
    if let Some(s) = shared_slot(GLOBAL_REFUSED) {
        s.fetch_add(1, Ordering::Relaxed);
    }
}

/// Refused/warned configurations since the postmaster started.
pub fn refused_configurations() -> u64 {
    shared_slot(GLOBAL_REFUSED).map_or(0, |s| s.load(Ordering::Relaxed))
}

/// Shared totals of one class (after folding this process's counts).
pub fn snapshot(class: ArtifactClass) -> [u64; COUNTERS] {
    fold();
    let mut out = [0u64; COUNTERS];
    for (c, v) in out.iter_mut().enumerate() {
        *v = shared_slot(class.index() * COUNTERS + c).map_or(0, |s| s.load(Ordering::Relaxed));
    }
    out
}

/// Zero the per-class shared counters (a new key epoch starts afresh).
/// Postmaster only, when no child is running.
pub fn reset_shared() {
    for i in 0..SLOTS {
        if let Some(s) = shared_slot(i) {
            s.store(0, Ordering::Relaxed);
        }
    }
}

/// Zero this process's local counts (a fork child starts from nothing).
pub fn reset_local() {
    for l in &LOCAL {
        l.store(0, Ordering::Relaxed);
    }
    OPS_SINCE_FOLD.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counts_fold_into_shared_totals_across_fork() {
        init_shared().unwrap();
        reset_shared();
        reset_local();
        add(ArtifactClass::TempFiles, Counter::BytesSealed, 100);
        add(ArtifactClass::TempFiles, Counter::BytesSealed, 23);
        add(ArtifactClass::LogicalSpill, Counter::AuthFailures, 1);
        // Not visible in the shared page before a fold...
        assert_eq!(
            shared_slot(Counter::BytesSealed as usize)
                .unwrap()
                .load(Ordering::Relaxed),
            0
        );
        let t = snapshot(ArtifactClass::TempFiles);
        assert_eq!(t[Counter::BytesSealed as usize], 123);
        assert_eq!(
            snapshot(ArtifactClass::LogicalSpill)[Counter::AuthFailures as usize],
            1
        );
        assert_eq!(snapshot(ArtifactClass::TempRelations), [0; COUNTERS]);
        // ...and folding twice does not double count.
        fold();
        assert_eq!(
            snapshot(ArtifactClass::TempFiles)[Counter::BytesSealed as usize],
            123
        );
        for _ in 0..FOLD_EVERY {
            add(ArtifactClass::TempRelations, Counter::FilesOpened, 1);
            tick();
        }
        assert_eq!(
            shared_slot(COUNTERS + Counter::FilesOpened as usize)
                .unwrap()
                .load(Ordering::Relaxed),
            u64::from(FOLD_EVERY),
            "tick folds on its own"
        );
        count_refused_configuration();
        assert_eq!(refused_configurations(), 1);

        // Children (PostgreSQL backends) fold into the same page.
        let before = snapshot(ArtifactClass::TempRelations)[Counter::IoErrors as usize];
        // SAFETY: fork in a test; the child only counts, folds and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            reset_local();
            add(ArtifactClass::TempRelations, Counter::IoErrors, 5);
            fold();
            // SAFETY: _exit runs no destructors.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(
            snapshot(ArtifactClass::TempRelations)[Counter::IoErrors as usize],
            before + 5
        );
    }
}
