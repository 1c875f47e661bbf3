//! The WAL key: a second protected page, born once per postmaster.
//!
//! WAL sealed before a crash-restart must stay readable afterwards: the
//! startup process that a crash-restart forks replays it (crash recovery).
//! So the `wal` class does not use the epoch key, which rotates at every
//! crash-restart ([`crate::secmem::start_epoch`]), but its own key on its own
//! page ([`KeyPage`]: `memfd_secret`, else `mlock` + `MADV_DONTDUMP`; never
//! in a file), created in the postmaster at start and wiped at postmaster
//! exit ([`wipe`]). Its epoch id names the *postmaster's* life: every sealed
//! WAL file of an ended postmaster carries another id and no live key can
//! read it (docs/DECISIONS.md: the start-up cleanup).
//!
//! Children inherit the page through fork and map it read-only, like the
//! epoch key's page. Unlike the epoch key, a process that outlives a
//! crash-restart (a `setsid()` grandchild) keeps this key: the WAL it could
//! read is the WAL the restarted server still needs (docs/THREAT_MODEL.md).

use std::sync::atomic::{AtomicPtr, Ordering};

use crate::error::InterposeError;
use crate::secmem::{AllocMode, KeyPage};

static WAL: AtomicPtr<KeyPage> = AtomicPtr::new(std::ptr::null_mut());

/// The WAL key's page, if this postmaster created one.
#[inline]
pub fn page() -> Option<&'static KeyPage> {
    let p = WAL.load(Ordering::Acquire);
    // SAFETY: pages are leaked boxes, never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Create the WAL key (once per process: a second call returns the first
/// page). Postmaster only, before any child exists.
pub fn start(mode: AllocMode, created_at_us: i64) -> Result<&'static KeyPage, InterposeError> {
    if let Some(p) = page() {
        return Ok(p);
    }
    let page = KeyPage::allocate(mode)?;
    if let Err(e) = page.new_epoch(created_at_us) {
        page.retire();
        return Err(e);
    }
    let page: &'static KeyPage = Box::leak(Box::new(page));
    WAL.store(page as *const KeyPage as *mut KeyPage, Ordering::Release);
    Ok(page)
}

/// Wipe the WAL key (postmaster exit). No-op in a child, which maps the
/// page read-only.
pub fn wipe() {
    if let Some(p) = page() {
        p.wipe();
    }
}

/// Fork child handler: the inherited page becomes read-only here.
pub(crate) fn protect_in_child() {
    if let Some(p) = page() {
        p.protect_read_only();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The rotation of the epoch key next to a live WAL key is tested in
    // tests/wal_shim.rs (its own process: the secmem tests rotate the
    // global epoch concurrently with the unit tests here).
    #[test]
    fn one_wal_page_per_process_wiped_at_exit() {
        let wal = start(AllocMode::LockedOnly, 2).unwrap();
        let key = *wal.key().unwrap();
        assert_eq!(wal.created_at_us(), 2);
        assert!(std::ptr::eq(start(AllocMode::LockedOnly, 4).unwrap(), wal));
        assert_eq!(page().unwrap().key().unwrap(), &key);
        wipe();
        assert!(page().unwrap().key().is_none());
        assert!(!page().unwrap().is_live());
    }
}
