//! fd shims: data movement, sizes, sync, close, duplication, and every other
//! call that could move file data around the layout or hand out an fd
//! number we track.
//!
//! Each shim starts with one relaxed load ([`is_ours`]); an fd that is not
//! ours goes straight to libc. Lengths above `isize::MAX` are EINVAL before
//! any slice is built.

use std::ffi::{c_int, c_uint, c_void};

use ephcrypt_classify::ArtifactClass;
use libc::{iovec, off_t, size_t, ssize_t, FILE};

use super::real::{errno, real, set_errno, Errno};
use super::table::{forget_stale, is_ours, with_file, Guard, OwnTail};
use super::writeback;
use crate::stats::{self, Counter};

const MAX_IO: usize = isize::MAX as usize;

/// Linux's `UIO_MAXIOV` (what `sysconf(_SC_IOV_MAX)` reports).
const IOV_MAX: c_int = 1024;

/// # Safety
/// `p` must be valid for writes of `n` bytes (or `n == 0`), `n <= isize::MAX`.
unsafe fn slice_mut<'a>(p: *mut c_void, n: size_t) -> &'a mut [u8] {
    if n == 0 || p.is_null() {
        return &mut [];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(p.cast(), n) }
}

/// # Safety
/// `p` must be valid for reads of `n` bytes (or `n == 0`), `n <= isize::MAX`.
unsafe fn slice<'a>(p: *const c_void, n: size_t) -> &'a [u8] {
    if n == 0 || p.is_null() {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(p.cast(), n) }
}

/// The iovec array of a vectored call, checked like the kernel does:
/// `iovcnt` in 0..=IOV_MAX and a total length that fits in `ssize_t`.
///
/// # Safety
/// `iov` must point to `iovcnt` valid entries when it is non-null.
unsafe fn iovecs<'a>(iov: *const iovec, iovcnt: c_int) -> Result<&'a [iovec], Errno> {
    if !(0..=IOV_MAX).contains(&iovcnt) || (iov.is_null() && iovcnt > 0) {
        return Err(Errno(libc::EINVAL));
    }
    if iovcnt == 0 {
        return Ok(&[]);
    }
    // SAFETY: guaranteed by the caller.
    let v = unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) };
    let mut total = 0usize;
    for e in v {
        total = total.checked_add(e.iov_len).ok_or(Errno(libc::EINVAL))?;
        if total > MAX_IO {
            return Err(Errno(libc::EINVAL));
        }
    }
    Ok(v)
}

/// Run `f` on the caller's checked iovec array; -1/EINVAL for a bad one.
///
/// # Safety
/// As [`iovecs`].
unsafe fn with_iovecs(
    iov: *const iovec,
    iovcnt: c_int,
    f: impl FnOnce(&[iovec]) -> ssize_t,
) -> ssize_t {
    // SAFETY: forwarded from the caller.
    match unsafe { iovecs(iov, iovcnt) } {
        Ok(v) => f(v),
        Err(Errno(e)) => {
            set_errno(e);
            -1
        }
    }
}

fn einval<R>(fail: R) -> R {
    set_errno(libc::EINVAL);
    fail
}

// ---------------------------------------------------------------------------
// Reads.

/// Read into `dst` at `off` (the logical position for read()).
fn read_at(fd: c_int, dst: &mut [u8], off: Option<u64>) -> ssize_t {
    with_file(fd, -1, OwnTail::Seal, |f, nonces| {
        let class = f.class;
        let at = off.unwrap_or(f.pos);
        let (s, mut io) = f.parts(fd)?;
        let got = s.read_at_mut(&mut io, nonces, dst, at)?;
        if off.is_none() {
            f.pos = at + got as u64;
        }
        stats::add(class, Counter::BytesOpened, got as u64);
        Ok(got as ssize_t)
    })
}

/// Read into iovecs at `off` (or the position).
fn read_vectored(fd: c_int, iovs: &[iovec], off: Option<u64>) -> ssize_t {
    with_file(fd, -1, OwnTail::Seal, |f, nonces| {
        let class = f.class;
        let start = off.unwrap_or(f.pos);
        let mut total = 0u64;
        {
            let (s, mut io) = f.parts(fd)?;
            for v in iovs {
                // SAFETY: each iovec describes writable caller memory; the
                // total was checked against isize::MAX.
                let dst = unsafe { slice_mut(v.iov_base, v.iov_len) };
                let got = s.read_at_mut(&mut io, nonces, dst, start + total)?;
                total += got as u64;
                if got < v.iov_len {
                    break;
                }
            }
        }
        if off.is_none() {
            f.pos = start + total;
        }
        stats::add(class, Counter::BytesOpened, total);
        Ok(total as ssize_t)
    })
}

/// # Safety
/// libc `read` contract.
pub(crate) unsafe extern "C" fn shim_read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().read)(fd, buf, n) };
    }
    if n > MAX_IO {
        return einval(-1);
    }
    // SAFETY: the caller guarantees buf is writable for n bytes.
    read_at(fd, unsafe { slice_mut(buf, n) }, None)
}

/// # Safety
/// glibc `__read_chk` contract (fortified `read`).
pub(crate) unsafe extern "C" fn shim_read_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
) -> ssize_t {
    if !is_ours(fd) || n > buflen {
        // The real one also reports the overflow (it aborts, as fortify does).
        // SAFETY: pass-through.
        return unsafe { (real().read_chk)(fd, buf, n, buflen) };
    }
    // SAFETY: same contract as read.
    unsafe { shim_read(fd, buf, n) }
}

/// # Safety
/// libc `pread` contract.
pub(crate) unsafe extern "C" fn shim_pread(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    off: off_t,
) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().pread)(fd, buf, n, off) };
    }
    if off < 0 || n > MAX_IO {
        return einval(-1);
    }
    // SAFETY: the caller guarantees buf is writable for n bytes.
    read_at(fd, unsafe { slice_mut(buf, n) }, Some(off as u64))
}

/// # Safety
/// glibc `__pread64_chk` contract (fortified `pread`).
pub(crate) unsafe extern "C" fn shim_pread_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    off: off_t,
    buflen: size_t,
) -> ssize_t {
    if !is_ours(fd) || n > buflen {
        // SAFETY: pass-through (fortify's verdict on an overflow).
        return unsafe { (real().pread_chk)(fd, buf, n, off, buflen) };
    }
    // SAFETY: same contract as pread.
    unsafe { shim_pread(fd, buf, n, off) }
}

/// # Safety
/// libc `readv` contract.
pub(crate) unsafe extern "C" fn shim_readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().readv)(fd, iov, iovcnt) };
    }
    // SAFETY: the caller's iovec array.
    unsafe { with_iovecs(iov, iovcnt, |v| read_vectored(fd, v, None)) }
}

/// # Safety
/// libc `preadv` contract.
pub(crate) unsafe extern "C" fn shim_preadv(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    off: off_t,
) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().preadv)(fd, iov, iovcnt, off) };
    }
    if off < 0 {
        return einval(-1);
    }
    // SAFETY: the caller's iovec array.
    unsafe { with_iovecs(iov, iovcnt, |v| read_vectored(fd, v, Some(off as u64))) }
}

/// `RWF_*` flags we accept on our files: hints without data semantics.
const RWF_HINTS: c_int = libc::RWF_HIPRI | libc::RWF_DSYNC | libc::RWF_SYNC;

/// # Safety
/// libc `preadv2` contract.
pub(crate) unsafe extern "C" fn shim_preadv2(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    off: off_t,
    flags: c_int,
) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().preadv2)(fd, iov, iovcnt, off, flags) };
    }
    if flags & !RWF_HINTS != 0 {
        set_errno(libc::EOPNOTSUPP);
        return -1;
    }
    if off < -1 {
        return einval(-1);
    }
    // SAFETY: the caller's iovec array.
    unsafe {
        with_iovecs(iov, iovcnt, |v| {
            read_vectored(fd, v, (off >= 0).then_some(off as u64))
        })
    }
}

// ---------------------------------------------------------------------------
// Writes.

/// Write `src` at `off` (the logical position for write()).
fn write_at(fd: c_int, src: &[u8], off: Option<u64>) -> ssize_t {
    with_file(fd, -1, OwnTail::Seal, |f, nonces| {
        let class = f.class;
        let at = off.unwrap_or(f.pos);
        let (s, mut io) = f.parts(fd)?;
        let wrote = s.write_at(&mut io, nonces, src, at)?;
        if off.is_none() {
            f.pos = at + wrote as u64;
        }
        stats::add(class, Counter::BytesSealed, wrote as u64);
        Ok(wrote as ssize_t)
    })
}

/// Write iovecs at `off` (or the position; an O_APPEND fd appends, one
/// iovec at a time through the tail buffer).
fn write_vectored(fd: c_int, iovs: &[iovec], off: Option<u64>) -> ssize_t {
    if off.is_none() && is_append(fd) {
        let mut total = 0isize;
        for e in iovs {
            // SAFETY: readable caller memory; the total was checked.
            let r = append_or_write(fd, unsafe { slice(e.iov_base, e.iov_len) });
            if r < 0 {
                return r;
            }
            total += r;
        }
        return total;
    }
    with_file(fd, -1, OwnTail::Seal, |f, nonces| {
        let class = f.class;
        let start = off.unwrap_or(f.pos);
        let mut total = 0u64;
        {
            let (s, mut io) = f.parts(fd)?;
            if class == ArtifactClass::Wal {
                if let Some(n) = super::wal::zero_extension(s, &mut io, nonces, iovs, start)? {
                    if off.is_none() {
                        f.pos = start + n;
                    }
                    stats::add(class, Counter::BytesSealed, n);
                    return Ok(n as ssize_t);
                }
            }
            for v in iovs {
                // SAFETY: each iovec describes readable caller memory
                // (possibly one shared static zero page: we never encrypt in
                // place); the total was checked against isize::MAX.
                let src = unsafe { slice(v.iov_base, v.iov_len) };
                total += s.write_at(&mut io, nonces, src, start + total)? as u64;
            }
        }
        if off.is_none() {
            f.pos = start + total;
        }
        stats::add(class, Counter::BytesSealed, total);
        Ok(total as ssize_t)
    })
}

/// write(): at the position, or on an O_APPEND fd through the tail buffer.
/// (The fd's own tail is left alone: only an append extends it, and a
/// non-append fd has none.)
fn append_or_write(fd: c_int, src: &[u8]) -> ssize_t {
    with_file(fd, -1, OwnTail::Keep, |f, nonces| {
        let class = f.class;
        if f.append.is_none() {
            let at = f.pos;
            let (s, mut io) = f.parts(fd)?;
            let wrote = s.write_at(&mut io, nonces, src, at)?;
            f.pos = at + wrote as u64;
            stats::add(class, Counter::BytesSealed, wrote as u64);
            return Ok(wrote as ssize_t);
        }
        let n = src.len();
        let mut buf = f.append.take().ok_or(Errno(libc::EIO))?;
        let result = match f.parts(fd) {
            Ok((s, mut io)) => writeback::append(s, &mut io, &mut buf, nonces, src),
            Err(e) => Err(e),
        };
        let end = match result {
            Ok(end) => end,
            Err(e) => {
                // Bytes of earlier write() calls may have been in the
                // block that failed: the file lost data.
                f.poison(e);
                writeback::clear_dirty(fd);
                return Err(e);
            }
        };
        let pending = buf.is_pending();
        f.append = Some(buf);
        f.pos = end;
        stats::add(class, Counter::BytesSealed, n as u64);
        if pending && !writeback::mark_dirty(fd) {
            // No room to track it: seal now rather than risk it at exit.
            // (The guard seals it on the next operation; do it here.)
            let mut buf = f.append.take().ok_or(Errno(libc::EIO))?;
            let sealed = match f.parts(fd) {
                Ok((s, mut io)) => writeback::seal(s, &mut io, &mut buf, nonces),
                Err(e) => Err(e),
            };
            f.append = Some(buf);
            sealed?;
        }
        Ok(n as ssize_t)
    })
}

/// # Safety
/// libc `write` contract.
pub(crate) unsafe extern "C" fn shim_write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().write)(fd, buf, n) };
    }
    if n > MAX_IO {
        return einval(-1);
    }
    // SAFETY: the caller guarantees buf is readable for n bytes.
    append_or_write(fd, unsafe { slice(buf, n) })
}

/// Whether our `fd` was opened O_APPEND.
fn is_append(fd: c_int) -> bool {
    Guard::acquire().is_ok_and(|mut g| g.file(fd).is_some_and(|f| f.append.is_some()))
}

/// # Safety
/// libc `pwrite` contract.
pub(crate) unsafe extern "C" fn shim_pwrite(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    off: off_t,
) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().pwrite)(fd, buf, n, off) };
    }
    if off < 0 || n > MAX_IO {
        return einval(-1);
    }
    // SAFETY: the caller guarantees buf is readable for n bytes.
    write_at(fd, unsafe { slice(buf, n) }, Some(off as u64))
}

/// # Safety
/// libc `writev` contract.
pub(crate) unsafe extern "C" fn shim_writev(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().writev)(fd, iov, iovcnt) };
    }
    // SAFETY: the caller's iovec array.
    unsafe { with_iovecs(iov, iovcnt, |v| write_vectored(fd, v, None)) }
}

/// # Safety
/// libc `pwritev` contract.
pub(crate) unsafe extern "C" fn shim_pwritev(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    off: off_t,
) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().pwritev)(fd, iov, iovcnt, off) };
    }
    if off < 0 {
        return einval(-1);
    }
    // SAFETY: the caller's iovec array.
    unsafe { with_iovecs(iov, iovcnt, |v| write_vectored(fd, v, Some(off as u64))) }
}

/// # Safety
/// libc `pwritev2` contract.
pub(crate) unsafe extern "C" fn shim_pwritev2(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    off: off_t,
    flags: c_int,
) -> ssize_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().pwritev2)(fd, iov, iovcnt, off, flags) };
    }
    if flags & !RWF_HINTS != 0 {
        set_errno(libc::EOPNOTSUPP);
        return -1;
    }
    if off < -1 {
        return einval(-1);
    }
    if off == -1 {
        // SAFETY: the caller's iovec array, under the writev contract.
        return unsafe { shim_writev(fd, iov, iovcnt) };
    }
    // SAFETY: the caller's iovec array.
    unsafe { with_iovecs(iov, iovcnt, |v| write_vectored(fd, v, Some(off as u64))) }
}

// ---------------------------------------------------------------------------
// Position and size.

/// # Safety
/// libc `lseek` contract.
pub(crate) unsafe extern "C" fn shim_lseek(fd: c_int, off: off_t, whence: c_int) -> off_t {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().lseek)(fd, off, whence) };
    }
    with_file(fd, -1, OwnTail::Seal, |f, _| {
        let base: i128 = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => f.pos as i128,
            libc::SEEK_END => {
                let (s, mut io) = f.parts(fd)?;
                s.len(&mut io)? as i128
            }
            _ => return Err(Errno(libc::EINVAL)),
        };
        let new = base + off as i128;
        if new < 0 || new > off_t::MAX as i128 {
            return Err(Errno(libc::EINVAL));
        }
        f.pos = new as u64;
        Ok(new as off_t)
    })
}

/// # Safety
/// libc `ftruncate` contract.
pub(crate) unsafe extern "C" fn shim_ftruncate(fd: c_int, len: off_t) -> c_int {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().ftruncate)(fd, len) };
    }
    if len < 0 {
        return einval(-1);
    }
    with_file(fd, -1, OwnTail::Seal, |f, nonces| {
        if let Some(b) = f.append.as_mut() {
            b.reset();
        }
        let (s, mut io) = f.parts(fd)?;
        s.set_len(&mut io, nonces, len as u64)?;
        if len == 0 {
            super::poison::clear(f.id);
        }
        Ok(0)
    })
}

/// # Safety
/// libc `fstat` contract.
pub(crate) unsafe extern "C" fn shim_fstat(fd: c_int, buf: *mut libc::stat) -> c_int {
    if !is_ours(fd) || buf.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().fstat)(fd, buf) };
    }
    // Held bytes are sealed first, so the size includes them.
    with_file(fd, -1, OwnTail::Seal, |f, _| {
        // SAFETY: the caller's out-pointer.
        if unsafe { (real().fstat)(fd, buf) } != 0 {
            return Err(Errno(errno()));
        }
        // SAFETY: the real fstat filled *buf.
        let st = unsafe { &mut *buf };
        if let Ok((s, mut io)) = f.parts(fd) {
            // The authenticated length, not a function of the physical size.
            st.st_size = s.len(&mut io)? as off_t;
        }
        Ok(0)
    })
}

/// statx(fd, "", AT_EMPTY_PATH) on our fd: held bytes first, then the
/// logical size.
pub(crate) fn statx_ours(fd: c_int, flags: c_int, mask: c_uint, buf: *mut libc::statx) -> c_int {
    with_file(fd, -1, OwnTail::Seal, |f, _| {
        // SAFETY: the caller's out-pointer and an empty path.
        if unsafe { (real().statx)(fd, c"".as_ptr(), flags, mask, buf) } != 0 {
            return Err(Errno(errno()));
        }
        if buf.is_null() {
            return Ok(0);
        }
        // SAFETY: the real statx filled *buf.
        let st = unsafe { &mut *buf };
        if st.stx_mask & libc::STATX_SIZE != 0 {
            if let Ok((s, mut io)) = f.parts(fd) {
                st.stx_size = s.len(&mut io)?;
            }
        }
        Ok(0)
    })
}

/// Grow our file to at least `off + len` logical bytes with sealed zeros.
fn extend(fd: c_int, off: off_t, len: off_t) -> Result<(), c_int> {
    let saved = errno();
    let rc = with_file(fd, -1, OwnTail::Seal, |f, nonces| {
        let (s, mut io) = f.parts(fd)?;
        let want = (off as u64).saturating_add(len as u64);
        if want > s.len(&mut io)? {
            s.set_len(&mut io, nonces, want)?;
        }
        Ok(0)
    });
    let result = if rc == 0 { Ok(()) } else { Err(errno()) };
    set_errno(saved);
    result
}

/// # Safety
/// libc `posix_fallocate` contract (returns an error number, not -1).
pub(crate) unsafe extern "C" fn shim_posix_fallocate(fd: c_int, off: off_t, len: off_t) -> c_int {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().posix_fallocate)(fd, off, len) };
    }
    if off < 0 || len <= 0 {
        return libc::EINVAL;
    }
    // Extending writes sealed zero blocks: no holes, and an all-zero
    // physical block never authenticates.
    match extend(fd, off, len) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

/// # Safety
/// libc `fallocate` contract.
pub(crate) unsafe extern "C" fn shim_fallocate(
    fd: c_int,
    mode: c_int,
    off: off_t,
    len: off_t,
) -> c_int {
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().fallocate)(fd, mode, off, len) };
    }
    // Only plain allocation keeps the layout; punching or collapsing
    // ranges of the physical file would not.
    if mode != 0 {
        set_errno(libc::EOPNOTSUPP);
        return -1;
    }
    if off < 0 || len <= 0 {
        return einval(-1);
    }
    match extend(fd, off, len) {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

// ---------------------------------------------------------------------------
// Sync and close.

/// Make our `fd` complete on disk before a sync: seal what it holds and
/// write its metadata back (errno set on failure; the file is poisoned).
fn sync_ours(fd: c_int) -> bool {
    if !is_ours(fd) {
        return true;
    }
    let r = Guard::acquire().and_then(|mut g| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.seal_all_held(fd)?;
            g.sync(fd)
        }))
        .unwrap_or(Err(Errno(libc::EIO)))
    });
    match r {
        Ok(()) => true,
        Err(Errno(e)) => {
            set_errno(e);
            false
        }
    }
}

/// # Safety
/// libc `fsync` contract.
pub(crate) unsafe extern "C" fn shim_fsync(fd: c_int) -> c_int {
    if !sync_ours(fd) {
        return -1;
    }
    // SAFETY: pass-through.
    unsafe { (real().fsync)(fd) }
}

/// # Safety
/// libc `fdatasync` contract.
pub(crate) unsafe extern "C" fn shim_fdatasync(fd: c_int) -> c_int {
    if !sync_ours(fd) {
        return -1;
    }
    // SAFETY: pass-through.
    unsafe { (real().fdatasync)(fd) }
}

/// Tear down our state of `fd` (sealing what it holds). The error of a
/// failed seal, if any.
fn teardown(fd: c_int) -> Result<(), c_int> {
    if !is_ours(fd) {
        return Ok(());
    }
    let mut guard = Guard::acquire().map_err(|Errno(e)| e)?;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard.close(fd)));
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Errno(e))) => Err(e),
        Err(_) => Err(libc::EIO),
    }
}

/// # Safety
/// libc `close` contract.
pub(crate) unsafe extern "C" fn shim_close(fd: c_int) -> c_int {
    crate::memory::forget_fd(fd);
    if !is_ours(fd) {
        // SAFETY: pass-through.
        return unsafe { (real().close)(fd) };
    }
    // Seal a pending append tail; report its failure (ENOSPC...) as close's.
    let sealed = teardown(fd);
    // SAFETY: pass-through.
    let rc = unsafe { (real().close)(fd) };
    match sealed {
        Ok(()) => rc,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

// ---------------------------------------------------------------------------
// Duplication: a duplicate would share the file but not our state, so its
// writes would bypass the layout. PostgreSQL never duplicates these fds.

/// # Safety
/// libc `dup` contract.
pub(crate) unsafe extern "C" fn shim_dup(fd: c_int) -> c_int {
    if is_ours(fd) {
        return einval(-1);
    }
    // SAFETY: pass-through.
    let new = unsafe { (real().dup)(fd) };
    forget_stale(new);
    new
}

/// # Safety
/// libc `dup2` contract.
pub(crate) unsafe extern "C" fn shim_dup2(fd: c_int, newfd: c_int) -> c_int {
    if is_ours(fd) && fd != newfd {
        return einval(-1);
    }
    if fd != newfd {
        // The kernel is about to close newfd: seal what it holds first (a
        // failure poisons it, so the loss still surfaces later).
        let _ = teardown(newfd);
    }
    // SAFETY: pass-through.
    unsafe { (real().dup2)(fd, newfd) }
}

/// # Safety
/// libc `dup3` contract.
pub(crate) unsafe extern "C" fn shim_dup3(fd: c_int, newfd: c_int, flags: c_int) -> c_int {
    if is_ours(fd) {
        return einval(-1);
    }
    if fd != newfd {
        let _ = teardown(newfd);
    }
    // SAFETY: pass-through.
    unsafe { (real().dup3)(fd, newfd, flags) }
}

/// # Safety
/// libc `fcntl` contract (the third argument is passed through as a word).
pub(crate) unsafe extern "C" fn shim_fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    if is_ours(fd) {
        match cmd {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => return einval(-1),
            // O_APPEND and O_DIRECT change how the kernel places writes.
            libc::F_SETFL if arg as c_int & (libc::O_APPEND | libc::O_DIRECT) != 0 => {
                return einval(-1)
            }
            _ => {}
        }
    }
    // SAFETY: pass-through.
    let rc = unsafe { (real().fcntl)(fd, cmd, arg) };
    if matches!(cmd, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
        forget_stale(rc);
    }
    rc
}

// ---------------------------------------------------------------------------
// Calls that move file data without read/write: never on our files.

/// # Safety
/// libc `mmap` contract.
pub(crate) unsafe extern "C" fn shim_mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    if flags & libc::MAP_ANONYMOUS == 0 && is_ours(fd) {
        // A mapping would show ciphertext, and stores to it would bypass
        // the layout.
        set_errno(libc::EACCES);
        return libc::MAP_FAILED;
    }
    // SAFETY: pass-through.
    let mapped = unsafe { (real().mmap)(addr, len, prot, flags, fd, off) };
    // Dynamic shared memory is excluded from core dumps (issue #15).
    crate::memory::after_mmap(mapped, len, flags, fd)
}

/// # Safety
/// libc `copy_file_range` contract.
pub(crate) unsafe extern "C" fn shim_copy_file_range(
    fd_in: c_int,
    off_in: *mut off_t,
    fd_out: c_int,
    off_out: *mut off_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    if is_ours(fd_in) || is_ours(fd_out) {
        // The kernel would copy physical bytes: plaintext into our file, or
        // our ciphertext under another file's name. EXDEV makes careful
        // callers fall back to read/write, which we handle.
        set_errno(libc::EXDEV);
        return -1;
    }
    // SAFETY: pass-through.
    unsafe { (real().copy_file_range)(fd_in, off_in, fd_out, off_out, len, flags) }
}

/// # Safety
/// libc `sendfile` contract.
pub(crate) unsafe extern "C" fn shim_sendfile(
    out_fd: c_int,
    in_fd: c_int,
    off: *mut off_t,
    count: size_t,
) -> ssize_t {
    if is_ours(out_fd) || is_ours(in_fd) {
        return einval(-1);
    }
    // SAFETY: pass-through.
    unsafe { (real().sendfile)(out_fd, in_fd, off, count) }
}

/// # Safety
/// libc `splice` contract.
pub(crate) unsafe extern "C" fn shim_splice(
    fd_in: c_int,
    off_in: *mut off_t,
    fd_out: c_int,
    off_out: *mut off_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    if is_ours(fd_in) || is_ours(fd_out) {
        return einval(-1);
    }
    // SAFETY: pass-through.
    unsafe { (real().splice)(fd_in, off_in, fd_out, off_out, len, flags) }
}

/// # Safety
/// libc `fdopen` contract.
pub(crate) unsafe extern "C" fn shim_fdopen(fd: c_int, mode: *const libc::c_char) -> *mut FILE {
    if is_ours(fd) {
        // stdio would read and write the physical bytes.
        set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    // SAFETY: pass-through.
    unsafe { (real().fdopen)(fd, mode) }
}

// ---------------------------------------------------------------------------
// Calls that hand out new fd numbers: a number we still track is stale.

macro_rules! fd_creator {
    ($(#[$doc:meta])* $name:ident => $field:ident ($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        /// # Safety
        /// The libc function's contract.
        pub(crate) unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            // SAFETY: pass-through.
            let fd = unsafe { (real().$field)($($arg),*) };
            forget_stale(fd);
            fd
        }
    };
}

fd_creator!(shim_socket => socket(domain: c_int, ty: c_int, proto: c_int));
fd_creator!(shim_accept => accept(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t));
fd_creator!(shim_accept4 => accept4(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t, flags: c_int));
fd_creator!(shim_epoll_create => epoll_create(size: c_int));
fd_creator!(shim_epoll_create1 => epoll_create1(flags: c_int));
fd_creator!(shim_signalfd => signalfd(fd: c_int, mask: *const libc::sigset_t, flags: c_int));
fd_creator!(shim_eventfd => eventfd(init: c_uint, flags: c_int));
fd_creator!(shim_timerfd_create => timerfd_create(clock: c_int, flags: c_int));
fd_creator!(shim_inotify_init1 => inotify_init1(flags: c_int));

/// # Safety
/// libc `shm_open` contract.
pub(crate) unsafe extern "C" fn shim_shm_open(
    name: *const libc::c_char,
    oflag: c_int,
    mode: libc::mode_t,
) -> c_int {
    // SAFETY: pass-through.
    let fd = unsafe { (real().shm_open)(name, oflag, mode) };
    forget_stale(fd);
    if !crate::memory::note_shm_fd(fd) {
        // Too high to remember: its mapping would not be marked (issue #15).
        // SAFETY: closing the fd just created for this call; unlinking the
        // object only if this call created it (O_CREAT|O_EXCL).
        unsafe {
            (real().close)(fd);
            if oflag & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL {
                libc::shm_unlink(name);
            }
        }
        set_errno(libc::EMFILE);
        return -1;
    }
    fd
}
fd_creator!(shim_memfd_create => memfd_create(name: *const libc::c_char, flags: c_uint));

/// Forget stale entries for both ends of a new pair.
///
/// # Safety
/// `fds` points to two ints when `rc == 0`.
unsafe fn forget_pair(rc: c_int, fds: *mut c_int) -> c_int {
    if rc == 0 && !fds.is_null() {
        // SAFETY: per the contract.
        unsafe {
            forget_stale(*fds);
            forget_stale(*fds.add(1));
        }
    }
    rc
}

/// # Safety
/// libc `pipe` contract.
pub(crate) unsafe extern "C" fn shim_pipe(fds: *mut c_int) -> c_int {
    // SAFETY: pass-through, then the pair it filled.
    unsafe { forget_pair((real().pipe)(fds), fds) }
}

/// # Safety
/// libc `pipe2` contract.
pub(crate) unsafe extern "C" fn shim_pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    // SAFETY: pass-through, then the pair it filled.
    unsafe { forget_pair((real().pipe2)(fds, flags), fds) }
}

/// # Safety
/// libc `socketpair` contract.
pub(crate) unsafe extern "C" fn shim_socketpair(
    d: c_int,
    t: c_int,
    p: c_int,
    sv: *mut c_int,
) -> c_int {
    // SAFETY: pass-through, then the pair it filled.
    unsafe { forget_pair((real().socketpair)(d, t, p, sv), sv) }
}
