//! The summary of the last on-disk scan, in shared memory, for monitoring
//! (`pg_ephcrypt_last_scan()`; docs/metrics). Every full scan records it:
//! `pg_ephcrypt_scan()` and `pg_ephcrypt_attest()`. Like the counters, it
//! belongs to the epoch: shared memory is re-created at a crash-restart.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::scan::{FileStatus, ScannedFile};

/// One scan's summary.
#[derive(Clone, Copy, Default)]
pub struct LastScan {
    /// Microseconds since the Unix epoch; 0 = no scan yet in this epoch.
    pub finished_at_us: i64,
    /// How long the walk took.
    pub duration_us: i64,
    /// Files per status, in `FileStatus::ALL` order.
    pub counts: [i64; 6],
    /// Scans recorded in this epoch.
    pub scans: i64,
}

// SAFETY: plain-old-data with no pointers.
unsafe impl PGRXSharedMemory for LastScan {}

static LAST_SCAN: PgLwLock<LastScan> =
    // SAFETY: the name is unique to this extension and 'static.
    unsafe { PgLwLock::new(c"pg_ephcrypt_last_scan") };

/// Reserve the shared memory. From `_PG_init` under shared_preload_libraries.
pub fn init() {
    pg_shmem_init!(LAST_SCAN);
}

/// Record a finished scan that started at `started_us`.
pub fn record(files: &[ScannedFile], started_us: i64) {
    let now = crate::time::now_unix_us();
    let mut counts = [0i64; 6];
    for f in files {
        if let Some(i) = FileStatus::ALL.iter().position(|s| *s == f.status) {
            counts[i] += 1;
        }
    }
    let mut s = LAST_SCAN.exclusive();
    s.finished_at_us = now;
    s.duration_us = now.saturating_sub(started_us).max(0);
    s.counts = counts;
    s.scans += 1;
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_last_scan() -> TableIterator<
    'static,
    (
        name!(finished_at, Option<TimestampWithTimeZone>),
        name!(duration_ms, Option<i64>),
        name!(files, Option<i64>),
        name!(encrypted_current, Option<i64>),
        name!(encrypted_stale, Option<i64>),
        name!(plaintext, Option<i64>),
        name!(unreadable, Option<i64>),
        name!(empty, Option<i64>),
        name!(unexpected, Option<i64>),
        name!(scans, i64),
    ),
> {
    crate::epoch::require_preloaded();
    let s = *LAST_SCAN.share();
    let some = |v: i64| (s.finished_at_us != 0).then_some(v);
    let c = |status: FileStatus| {
        let i = FileStatus::ALL
            .iter()
            .position(|x| *x == status)
            .unwrap_or(0);
        some(s.counts[i])
    };
    TableIterator::once((
        if s.finished_at_us == 0 {
            None
        } else {
            crate::time::timestamptz_from_unix_us(s.finished_at_us)
        },
        some(s.duration_us / 1000),
        some(s.counts.iter().sum()),
        c(FileStatus::EncryptedCurrent),
        c(FileStatus::EncryptedStale),
        c(FileStatus::Plaintext),
        c(FileStatus::Unreadable),
        c(FileStatus::Empty),
        c(FileStatus::Unexpected),
        s.scans,
    ))
}
