//! Files that lost acknowledged data in this process.
//!
//! When bytes that `write()` already reported as written cannot be sealed
//! (an append tail at close: ENOSPC, EDQUOT, EIO, EFBIG), PostgreSQL may
//! never learn of it: `ReorderBufferSerializeTXN` ignores the result of
//! `CloseTransientFile`. So the file is remembered here by (device, inode),
//! and every later open of it in this process fails with EIO, until it is
//! unlinked or recreated with `O_TRUNC`. The reader (the same walsender or
//! backend restoring the spilled transaction) then raises PostgreSQL's own
//! "could not open file" ERROR instead of decoding a stream with a hole.
//!
//! The set is small and fixed; if it ever fills, every covered open of the
//! process fails from then on (fail closed rather than forget a loss).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

const CAPACITY: usize = 64;

/// (device, inode) pairs; (0, 0) = free. Only touched with the process
/// lock held (see `table::Guard`); atomics only to keep it a plain static.
static DEV: [AtomicU64; CAPACITY] = [const { AtomicU64::new(0) }; CAPACITY];
static INO: [AtomicU64; CAPACITY] = [const { AtomicU64::new(0) }; CAPACITY];
static COUNT: AtomicUsize = AtomicUsize::new(0);
static OVERFLOW: AtomicBool = AtomicBool::new(false);

/// Identity of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    pub(crate) fn of(st: &libc::stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

fn find(id: FileId) -> Option<usize> {
    (0..CAPACITY).find(|&i| {
        DEV[i].load(Ordering::Relaxed) == id.dev && INO[i].load(Ordering::Relaxed) == id.ino
    })
}

/// Remember that `id` lost data.
pub(crate) fn add(id: FileId) {
    if id.ino == 0 || find(id).is_some() {
        return;
    }
    for i in 0..CAPACITY {
        if INO[i].load(Ordering::Relaxed) == 0 {
            DEV[i].store(id.dev, Ordering::Relaxed);
            INO[i].store(id.ino, Ordering::Relaxed);
            COUNT.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    OVERFLOW.store(true, Ordering::Relaxed);
}

/// Whether opening `id` must fail.
#[inline]
pub(crate) fn is_poisoned(id: FileId) -> bool {
    if OVERFLOW.load(Ordering::Relaxed) {
        return true;
    }
    COUNT.load(Ordering::Relaxed) != 0 && find(id).is_some()
}

/// `id` was unlinked or truncated to nothing: its loss no longer matters.
pub(crate) fn clear(id: FileId) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(i) = find(id) {
        DEV[i].store(0, Ordering::Relaxed);
        INO[i].store(0, Ordering::Relaxed);
        COUNT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Any file is poisoned (a cheap test before a path lookup).
#[inline]
pub(crate) fn any() -> bool {
    COUNT.load(Ordering::Relaxed) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_find_clear_and_overflow_fails_closed() {
        let a = FileId { dev: 1, ino: 10 };
        let b = FileId { dev: 1, ino: 11 };
        assert!(!is_poisoned(a));
        add(a);
        add(a);
        assert!(is_poisoned(a));
        assert!(!is_poisoned(b), "only the file that lost data");
        assert_eq!(COUNT.load(Ordering::Relaxed), 1);
        clear(a);
        assert!(!is_poisoned(a));
        for i in 0..CAPACITY as u64 {
            add(FileId {
                dev: 2,
                ino: 100 + i,
            });
        }
        assert!(!OVERFLOW.load(Ordering::Relaxed));
        add(FileId { dev: 2, ino: 1 });
        assert!(OVERFLOW.load(Ordering::Relaxed));
        assert!(is_poisoned(b), "a full set refuses every open");
        OVERFLOW.store(false, Ordering::Relaxed);
        for i in 0..CAPACITY as u64 {
            clear(FileId {
                dev: 2,
                ino: 100 + i,
            });
        }
        assert!(!any());
    }
}
