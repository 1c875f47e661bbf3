//! Append write-back for `O_APPEND` streams (logical-decoding spill files).
//!
//! PostgreSQL appends one small record per `write()`; sealing the tail
//! block for each would multiply the crypto work ~50x. So bytes are
//! collected up to the next block boundary and sealed as whole blocks; the
//! not-yet-sealed tail is sealed at close, `fsync`/`fdatasync`, before any
//! other operation on a covered file in this process, and at process exit
//! (docs/DECISIONS.md #4). Bytes `write()` reported as written live only
//! here until then: if sealing them fails, the caller poisons the file
//! ([`super::poison`]), so that the loss surfaces as an error instead of a
//! stream with a hole.

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use ephcrypt_format::{SealedFile, BLOCK_SIZE};

use super::fdio::FdIo;
use super::nonces::ProcessNonces;
use super::real::Errno;

/// The tail buffer of one append stream, allocated once at open.
pub(crate) struct AppendBuf {
    /// Logical offset of `data[0]`; meaningful only while `active`.
    start: u64,
    /// Bytes held.
    len: usize,
    /// `start` is the file's logical end as of the last append.
    active: bool,
    data: Box<[u8; BLOCK_SIZE]>,
}

impl AppendBuf {
    /// A buffer, or ENOMEM (never an abort inside a shim).
    pub(crate) fn try_new() -> Result<AppendBuf, Errno> {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(BLOCK_SIZE)
            .map_err(|_| Errno(libc::ENOMEM))?;
        v.resize(BLOCK_SIZE, 0);
        let data: Box<[u8; BLOCK_SIZE]> = v
            .into_boxed_slice()
            .try_into()
            .map_err(|_| Errno(libc::ENOMEM))?;
        Ok(AppendBuf {
            start: 0,
            len: 0,
            active: false,
            data,
        })
    }

    /// Unsealed bytes are held.
    pub(crate) fn is_pending(&self) -> bool {
        self.active && self.len > 0
    }

    /// Forget the position (the file changed size through another path).
    pub(crate) fn reset(&mut self) {
        self.wipe();
        self.active = false;
    }

    fn wipe(&mut self) {
        // Plaintext: wipe before anything else can reuse the memory.
        for b in self.data[..self.len].iter_mut() {
            // SAFETY: a valid &mut u8.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        self.len = 0;
    }
}

impl Drop for AppendBuf {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Append `src` at the logical end of the stream: whole blocks are sealed
/// as they fill, the rest is held.
pub(crate) fn append(
    sealed: &mut SealedFile,
    io: &mut FdIo<'_>,
    buf: &mut AppendBuf,
    nonces: &mut ProcessNonces<'_>,
    mut src: &[u8],
) -> Result<u64, Errno> {
    if !buf.active {
        buf.start = sealed.len(io)?;
        buf.len = 0;
        buf.active = true;
    }
    while !src.is_empty() {
        let end = buf.start + buf.len as u64;
        let room = BLOCK_SIZE - (end % BLOCK_SIZE as u64) as usize;
        let take = room.min(src.len());
        buf.data[buf.len..buf.len + take].copy_from_slice(&src[..take]);
        buf.len += take;
        src = &src[take..];
        if take == room {
            // Reached a block boundary: seal what we hold and go on.
            seal(sealed, io, buf, nonces)?;
        }
    }
    Ok(buf.start + buf.len as u64)
}

/// Seal the held bytes (no-op when nothing is held).
pub(crate) fn seal(
    sealed: &mut SealedFile,
    io: &mut FdIo<'_>,
    buf: &mut AppendBuf,
    nonces: &mut ProcessNonces<'_>,
) -> Result<(), Errno> {
    if !buf.is_pending() {
        return Ok(());
    }
    #[cfg(test)]
    if tests::PANIC_IN_SEAL.load(Ordering::Relaxed) {
        panic!("injected fault while sealing a tail");
    }
    sealed.write_at(io, nonces, &buf.data[..buf.len], buf.start)?;
    buf.start += buf.len as u64;
    buf.wipe();
    Ok(())
}

// ---------------------------------------------------------------------------
// The set of fds with held bytes, so that other operations can seal them
// first. A process has at most a few append streams open at once.

/// Fds with held bytes (-1 = free slot).
pub(crate) const MAX_DIRTY: usize = 8;
static DIRTY_FDS: [AtomicI32; MAX_DIRTY] = [const { AtomicI32::new(-1) }; MAX_DIRTY];
static DIRTY_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Note that `fd` holds bytes. `false` when the set is full (the caller
/// then seals at once).
pub(crate) fn mark_dirty(fd: c_int) -> bool {
    if DIRTY_FDS.iter().any(|s| s.load(Ordering::Relaxed) == fd) {
        return true;
    }
    for slot in &DIRTY_FDS {
        if slot
            .compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            DIRTY_COUNT.fetch_add(1, Ordering::Relaxed);
            return true;
        }
    }
    false
}

/// `fd` holds nothing any more. Called on nearly every operation: plain
/// loads first, a locked exchange only on the slot that holds `fd` (the
/// set is this process's alone; the atomics are for the signal-free
/// re-entrancy of the shims, not for other threads).
#[inline]
pub(crate) fn clear_dirty(fd: c_int) {
    if !any_dirty() {
        return;
    }
    for slot in &DIRTY_FDS {
        if slot.load(Ordering::Relaxed) == fd
            && slot
                .compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            DIRTY_COUNT.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Any fd holds bytes (one relaxed load: the common answer is no).
#[inline]
pub(crate) fn any_dirty() -> bool {
    DIRTY_COUNT.load(Ordering::Relaxed) != 0
}

/// The dirty fds, for the caller to seal (a copy: sealing edits the set).
pub(crate) fn dirty_fds() -> [c_int; MAX_DIRTY] {
    let mut out = [-1; MAX_DIRTY];
    for (o, s) in out.iter_mut().zip(&DIRTY_FDS) {
        *o = s.load(Ordering::Relaxed);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicBool;

    pub(crate) static PANIC_IN_SEAL: AtomicBool = AtomicBool::new(false);
}
