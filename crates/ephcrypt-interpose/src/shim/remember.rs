//! What this process knows about the private files it wrote, after their
//! fds are closed (FORMAT.md §9): PostgreSQL's VFD cache closes and reopens
//! kernel fds all the time, and a file cut at a group boundary, emptied or
//! rolled back to an older consistent version while its fd was closed must
//! still be an error at the next open, not a shorter file.
//!
//! Keyed by the path exactly as PostgreSQL passes it (it always reaches one
//! file through the same path). An entry leaves when the file is unlinked
//! through the `unlink` shim or recreated (`O_TRUNC`, or `O_CREAT` on a file
//! that is not there); files removed by another process linger until then,
//! and a lingering entry can only make an open fail (other file id), never
//! succeed. Memory: the path plus 40 bytes plus 16 per 2 MiB group of the
//! file (≤ 8 KiB for a 1 GiB segment). Only reached with the process lock
//! held ([`super::table::Guard`]); allocation failures are ENOMEM, never an
//! abort.

use std::cell::UnsafeCell;
use std::collections::HashMap;

use ephcrypt_format::Remembered;

use super::real::Errno;

pub(crate) struct Registry(UnsafeCell<Option<HashMap<Box<[u8]>, Remembered>>>);

// SAFETY: only reached through `Guard::registry`, with the process lock
// held, so there is never more than one reference.
unsafe impl Sync for Registry {}

pub(crate) static REGISTRY: Registry = Registry(UnsafeCell::new(None));

impl Registry {
    /// # Safety
    /// The caller holds the process lock and no other reference exists.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_mut(&self) -> &mut Option<HashMap<Box<[u8]>, Remembered>> {
        // SAFETY: exclusive access is guaranteed by the caller.
        unsafe { &mut *self.0.get() }
    }
}

/// The map, created on first use.
pub(crate) fn map(
    slot: &mut Option<HashMap<Box<[u8]>, Remembered>>,
) -> &mut HashMap<Box<[u8]>, Remembered> {
    slot.get_or_insert_with(HashMap::new)
}

/// Remember `state` for `path`.
pub(crate) fn insert(
    slot: &mut Option<HashMap<Box<[u8]>, Remembered>>,
    path: &[u8],
    state: Remembered,
) -> Result<(), Errno> {
    let m = map(slot);
    if let Some(old) = m.get_mut(path) {
        *old = state;
        return Ok(());
    }
    let mut key: Vec<u8> = Vec::new();
    key.try_reserve_exact(path.len())
        .map_err(|_| Errno(libc::ENOMEM))?;
    key.extend_from_slice(path);
    m.try_reserve(1).map_err(|_| Errno(libc::ENOMEM))?;
    m.insert(key.into_boxed_slice(), state);
    Ok(())
}
