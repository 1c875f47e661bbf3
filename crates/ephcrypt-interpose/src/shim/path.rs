//! Path shims: the open family, stat family, truncate, unlink, and the
//! stdio/dirent calls that create fds.
//!
//! A path that is not covered goes to libc after the allocation-free
//! classifier has looked at it. A covered path is opened with `O_NOFOLLOW`
//! (a symlink at a covered name is ELOOP, never followed) and `O_NONBLOCK`
//! (a FIFO at a covered name cannot block the open), and anything that is
//! not a regular file is refused with EIO: plaintext never goes to a FIFO,
//! a device or a file behind a link.

use std::ffi::{c_char, c_int, CStr};

use ephcrypt_classify::{ArtifactClass, Classified};
use ephcrypt_format::{physical_to_logical_size, FileName, Mode, SealedFile, MAX_NAME_LEN};
use libc::{mode_t, off_t, FILE};

use super::changes::Watch;
use super::config::{self, covered};
use super::fd::{shim_close, shim_ftruncate};
use super::fdio::{fstat, FdIo, Pooled};
use super::nonces::os_random;
use super::poison::{self, FileId};
use super::real::{errno, real, set_errno, Errno};
use super::table::{forget_stale, FileState, Guard, OpenFile, MAX_TRACKED_FDS};
use super::writeback::{self, AppendBuf};
use crate::secmem;
use crate::stats::{self, Counter};

/// How the caller reached us (which real function to call for a path that
/// is not ours).
#[derive(Clone, Copy)]
enum Via {
    Open,
    OpenAt(c_int),
}

unsafe fn real_open(via: Via, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: the caller's path and flags, to the real function.
    unsafe {
        match via {
            Via::Open => (real().open)(path, flags, mode),
            Via::OpenAt(dirfd) => (real().openat)(dirfd, path, flags, mode),
        }
    }
}

/// # Safety
/// libc `open` contract (`mode` is read only with O_CREAT or O_TMPFILE).
pub(crate) unsafe extern "C" fn shim_open(
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    // SAFETY: forwarded under the same contract.
    unsafe { open_common(Via::Open, path, flags, mode) }
}

/// # Safety
/// libc `openat` contract.
pub(crate) unsafe extern "C" fn shim_openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    // SAFETY: forwarded under the same contract.
    unsafe { open_common(Via::OpenAt(dirfd), path, flags, mode) }
}

/// # Safety
/// glibc `__open_2` contract (fortified open without a mode).
pub(crate) unsafe extern "C" fn shim_open_2(path: *const c_char, flags: c_int) -> c_int {
    if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        // Fortify's own verdict on a missing mode (it aborts).
        // SAFETY: pass-through.
        return unsafe { (real().open_2)(path, flags) };
    }
    // SAFETY: forwarded under the open contract (no mode needed).
    unsafe { open_common(Via::Open, path, flags, 0) }
}

/// # Safety
/// glibc `__openat_2` contract.
pub(crate) unsafe extern "C" fn shim_openat_2(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
) -> c_int {
    if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        // SAFETY: pass-through.
        return unsafe { (real().openat_2)(dirfd, path, flags) };
    }
    // SAFETY: forwarded under the openat contract.
    unsafe { open_common(Via::OpenAt(dirfd), path, flags, 0) }
}

/// # Safety
/// libc `creat` contract.
pub(crate) unsafe extern "C" fn shim_creat(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: creat is open with these flags.
    unsafe {
        open_common(
            Via::Open,
            path,
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            mode,
        )
    }
}

/// Longest path we resolve for `openat` relative to a directory fd.
const RESOLVE_MAX: usize = 8192;

/// `openat(dirfd, "relative")`: the directory's path from /proc, joined
/// with `path`, so that a covered file cannot be reached around the
/// classifier. PostgreSQL never does this; the cost (a readlink) is only
/// paid by callers that do.
fn resolve_at(dirfd: c_int, path: &[u8], out: &mut [u8; RESOLVE_MAX]) -> Result<usize, Errno> {
    let mut link = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut n = 14;
    let mut digits = [0u8; 10];
    let mut d = dirfd as u32;
    let mut k = 0;
    loop {
        digits[k] = b'0' + (d % 10) as u8;
        d /= 10;
        k += 1;
        if d == 0 {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        link[n] = digits[k];
        n += 1;
    }
    // SAFETY: `link` is NUL-terminated (zero-filled tail); `out` is a
    // writable buffer of the given length. readlink is not interposed.
    let len = unsafe { libc::readlink(link.as_ptr().cast(), out.as_mut_ptr().cast(), RESOLVE_MAX) };
    if len < 0 {
        return Err(Errno(errno()));
    }
    let len = len as usize;
    let total = len + 1 + path.len();
    if total >= RESOLVE_MAX {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    out[len] = b'/';
    out[len + 1..total].copy_from_slice(path);
    Ok(total)
}

unsafe fn open_common(via: Via, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    if path.is_null() || !config::any_enabled() {
        // SAFETY: pass-through.
        let fd = unsafe { real_open(via, path, flags, mode) };
        forget_stale(fd);
        return fd;
    }
    // SAFETY: libc callers pass a NUL-terminated path.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    let mut resolved = [0u8; RESOLVE_MAX];
    let target: &[u8] = match via {
        Via::OpenAt(dirfd) if dirfd != libc::AT_FDCWD && bytes.first() != Some(&b'/') => {
            match resolve_at(dirfd, bytes, &mut resolved) {
                Ok(n) => &resolved[..n],
                // Cannot tell what it is: let libc report the real error.
                Err(_) => bytes,
            }
        }
        _ => bytes,
    };
    let Some(classified) = config::covered_bytes(target) else {
        // SAFETY: pass-through.
        let fd = unsafe { real_open(via, path, flags, mode) };
        forget_stale(fd);
        return fd;
    };
    // SAFETY: forwarded under the open contract.
    match unsafe { open_covered(via, path, flags, mode, &classified) } {
        Ok(fd) => fd,
        Err(Errno(e)) => {
            set_errno(e);
            -1
        }
    }
}

/// Open a covered file and track it.
unsafe fn open_covered(
    via: Via,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
    classified: &Classified<'_>,
) -> Result<c_int, Errno> {
    let mut guard = Guard::acquire()?;
    guard.seal_all_held(-1)?;
    // We read what we write (headers, read-modify-write), we place every
    // write ourselves (O_APPEND would make the kernel ignore pwrite
    // offsets), and O_DIRECT's alignment rules don't fit the layout.
    let append = flags & libc::O_APPEND != 0;
    let mut real_flags = flags & !(libc::O_APPEND | libc::O_DIRECT);
    if real_flags & libc::O_ACCMODE == libc::O_WRONLY {
        real_flags = (real_flags & !libc::O_ACCMODE) | libc::O_RDWR;
    }
    real_flags |= libc::O_NOFOLLOW | libc::O_NONBLOCK;
    // A shared file may be open, with cached state, in other processes: it
    // is truncated below, between the bumps of its change counter
    // (shim/changes.rs), not by open().
    let truncate_shared = classified.shared
        && flags & libc::O_TRUNC != 0
        && real_flags & libc::O_ACCMODE == libc::O_RDWR;
    if truncate_shared {
        real_flags &= !libc::O_TRUNC;
    }
    // SAFETY: the caller's path with adjusted flags.
    let fd = unsafe { real_open(via, path, real_flags, mode) };
    if fd < 0 {
        let e = errno();
        // A private file this process wrote and did not unlink is gone: it
        // was removed behind our back (a relation segment, say), and
        // PostgreSQL would take the missing file for a shorter relation.
        // SAFETY: the caller's NUL-terminated path.
        let p = unsafe { CStr::from_ptr(path) }.to_bytes();
        if e == libc::ENOENT && !classified.shared && guard.registry().contains_key(p) {
            stats::add(classified.class, Counter::AuthFailures, 1);
            return Err(Errno(libc::EIO));
        }
        return Err(Errno(e));
    }
    let close_with = |e: c_int| -> Result<c_int, Errno> {
        // SAFETY: closing the fd we just opened (not tracked yet).
        unsafe { (real().close)(fd) };
        Err(Errno(e))
    };
    // The number may have been ours before (closed behind our back).
    guard.forget(fd);
    let mut st = match fstat(fd) {
        Ok(st) => st,
        Err(Errno(e)) => return close_with(e),
    };
    let mut change = Watch::of(FileId::of(&st));
    if truncate_shared && st.st_size != 0 {
        // The truncation between two bumps: a handle elsewhere that kept
        // state of the old content revalidates at its next call, whatever
        // happens to this open afterwards.
        change.bump();
        // SAFETY: plain syscall wrapper on the fd we just opened.
        let rc = unsafe { (real().ftruncate)(fd, 0) };
        let e = errno();
        change.bump();
        if rc != 0 {
            return close_with(e);
        }
        st.st_size = 0;
    } else if classified.shared && flags & libc::O_TRUNC != 0 {
        // Truncated by open() itself (read-only with O_TRUNC): the bump
        // after it still makes every kept handle revalidate.
        change.bump();
    }
    let class = classified.class;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        stats::add(class, Counter::IoErrors, 1);
        return close_with(libc::EIO);
    }
    let id = FileId::of(&st);
    if flags & libc::O_TRUNC != 0 {
        poison::clear(id);
    } else if poison::is_poisoned(id) {
        stats::add(class, Counter::IoErrors, 1);
        return close_with(libc::EIO);
    }
    if fd as usize >= MAX_TRACKED_FDS {
        return close_with(libc::EMFILE);
    }
    let append_buf = if append {
        match AppendBuf::try_new() {
            Ok(b) => Some(b),
            Err(Errno(e)) => return close_with(e),
        }
    } else {
        None
    };
    // SAFETY: the caller's NUL-terminated path.
    let path_bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    let path_copy = match copy_bytes(path_bytes) {
        Ok(p) => p,
        Err(Errno(e)) => return close_with(e),
    };
    let mut shared = classified.shared;
    let created = flags & libc::O_CREAT != 0;
    let writable = real_flags & libc::O_ACCMODE != libc::O_RDONLY;
    let mut mode = mode_for(classified);
    if !shared {
        let others = guard.fds_of(id);
        if !others.fds().is_empty() {
            // This process has the file open already. A second writer would
            // keep its own metadata cache: refuse (PostgreSQL never does
            // this). A reader gets the disk's view: the other fds write
            // their metadata back now and after every operation from here on.
            if writable {
                return close_with(libc::EBUSY);
            }
            for &other in others.fds() {
                if let Err(Errno(e)) = guard.sync(other) {
                    return close_with(e);
                }
                if let Some(f) = guard.file(other) {
                    f.aliased = true;
                }
            }
            shared = true;
            mode = Mode::Shared;
        }
    }
    // Taken out for the open and put back whatever happens: a failed open
    // must not let a retry trust the disk instead.
    let remembered = if shared {
        None
    } else {
        guard.registry().remove_entry(path_bytes)
    };
    let private_alias = !classified.shared;
    // A 0-byte file is new when this open made it so (O_TRUNC) or created
    // it; a file this process wrote before and finds empty lost its data.
    let fresh = st.st_size == 0
        && writable
        && (flags & libc::O_TRUNC != 0 || (created && remembered.is_none()));
    let remembered = if fresh { None } else { remembered };
    let mut nonces = guard.nonces();
    // A file-set member's or WAL segment's pages may be in the shared pool
    // (FORMAT.md §8.3); an alias reader of a private file reads the disk.
    let pooled = classified.shared;
    let state = open_state(
        fd,
        pooled.then_some(id),
        // A shared handle asks the size itself: aliases synced above may
        // have grown the file since the fstat.
        (!shared).then_some(st.st_size as u64),
        classified,
        mode,
        fresh,
        remembered.as_ref().map(|(_, r)| r),
        &mut nonces,
    );
    if shared && fresh {
        // After the new header and page 0 (written unwatched above).
        change.bump();
    }
    if let Some((k, r)) = remembered {
        // The map still has room for the entry it just gave up.
        guard.registry().insert(k, r);
    }
    stats::add(class, Counter::FilesOpened, 1);
    match state {
        FileState::Sealed(_) if fresh => stats::add(class, Counter::FilesCreated, 1),
        FileState::Sealed(_) => {}
        FileState::Poisoned(libc::EIO) => stats::add(class, Counter::AuthFailures, 1),
        FileState::Poisoned(_) => stats::add(class, Counter::IoErrors, 1),
    }
    let file = OpenFile {
        class,
        state,
        id,
        // Private files change size only through this process.
        known_len: (!shared).then_some(st.st_size as u64),
        pos: 0,
        append: append_buf,
        shared,
        path: path_copy,
        aliased: false,
        change,
        pooled,
        writable,
    };
    if let Err(Errno(e)) = guard.insert(fd, file) {
        return close_with(e);
    }
    if private_alias {
        if let Err(Errno(e)) = guard.add_alias(id, fd) {
            guard.forget(fd);
            return close_with(e);
        }
    }
    Ok(fd)
}

/// A heap copy of `b`, or ENOMEM.
fn copy_bytes(b: &[u8]) -> Result<Box<[u8]>, Errno> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(b.len())
        .map_err(|_| Errno(libc::ENOMEM))?;
    v.extend_from_slice(b);
    Ok(v.into_boxed_slice())
}

/// Metadata pages a private file's cache may grow to on reloads
/// (`SealedFile::set_cache_limit`): 128 KiB per file at most, reached only
/// by files read back and forth across 16 groups (32 MiB).
const PRIVATE_CACHE_LIMIT: u8 = 16;

/// Metadata mode per kind of file (FORMAT.md §8): file-set members are
/// shared; temp relations are read and rewritten at random (local buffer
/// eviction), so they cache more metadata pages; temp files and spill files
/// are written and read sequentially.
fn mode_for(c: &Classified<'_>) -> Mode {
    if c.shared {
        Mode::Shared
    } else if c.class == ArtifactClass::TempRelations {
        Mode::Private { cache_groups: 8 }
    } else {
        Mode::Private { cache_groups: 2 }
    }
}

#[allow(clippy::too_many_arguments)] // one per input of the open; called once
fn open_state(
    fd: c_int,
    pool_id: Option<FileId>,
    physical_len: Option<u64>,
    classified: &Classified<'_>,
    mode: Mode,
    fresh: bool,
    remembered: Option<&ephcrypt_format::Remembered>,
    nonces: &mut super::nonces::ProcessNonces<'_>,
) -> FileState {
    // WAL lives under the postmaster-lifetime WAL key (crash recovery reads
    // what was sealed before a crash-restart); everything else under the
    // current epoch key.
    let page = if classified.class == ArtifactClass::Wal {
        crate::walkey::page()
    } else {
        secmem::current()
    };
    let Some(page) = page else {
        return FileState::Poisoned(libc::EIO);
    };
    let Some(key) = page.epoch_key() else {
        return FileState::Poisoned(libc::EIO);
    };
    let epoch_id = page.epoch_id();
    // The canonical name, contiguous, on the stack.
    let mut buf = [0u8; MAX_NAME_LEN];
    let Some(n) = classified.name.write_to(&mut buf) else {
        return FileState::Poisoned(libc::ENAMETOOLONG);
    };
    let Ok(name) = FileName::new(classified.class.index() as u8, &buf[..n]) else {
        return FileState::Poisoned(libc::ENAMETOOLONG);
    };
    let mut len = physical_len;
    // Opening never publishes (create writes page 0 through).
    let mut io = FdIo::new(fd, &mut len);
    if let Some(id) = pool_id {
        io = io.with_pool(Pooled {
            id,
            wal: classified.class == ArtifactClass::Wal,
        });
    }
    let opened = if fresh {
        let Ok(file_id) = os_random::<16>() else {
            return FileState::Poisoned(libc::EIO);
        };
        SealedFile::create(&mut io, nonces, key, &epoch_id, &file_id, &name, mode)
    } else if classified.class == ArtifactClass::Wal {
        // Another process may be rewriting the page that gives the length
        // (shim/wal.rs): retry a failed authentication, bounded.
        super::wal::retrying(|| {
            *io.len = None;
            SealedFile::open(&mut io, key, &epoch_id, &name, mode, None)
        })
    } else {
        // A 0-byte file that should have content (or was never written):
        // `open` reports EmptyFile, which is EIO for every data access.
        SealedFile::open(&mut io, key, &epoch_id, &name, mode, remembered)
    };
    match opened {
        Ok(mut s) => {
            if classified.class == ArtifactClass::Wal {
                // A tail-page rewrite keeps the page's previous version
                // readable until its data is written; and a segment's length
                // never changes after its creation, which only its creator
                // sees (FORMAT.md §14).
                s.set_write_ahead(super::wal::write_ahead());
                s.set_fixed_len(true);
            } else {
                // Logical tapes and tuplestores come back to earlier groups:
                // let the metadata cache grow for them (8 KiB a page, only on
                // reloads; a no-op for shared file-set members).
                s.set_cache_limit(PRIVATE_CACHE_LIMIT);
            }
            FileState::Sealed(s)
        }
        Err(Errno(e)) => FileState::Poisoned(e),
    }
}

// ---------------------------------------------------------------------------
// stat family.

/// Before a path-level size query of a covered file: seal held bytes.
/// One relaxed load when nothing is held (the usual case).
unsafe fn seal_before_path_op(path: *const c_char) {
    // SAFETY: the caller's path.
    if writeback::any_dirty() && unsafe { covered(path) }.is_some() {
        if let Ok(mut g) = Guard::acquire() {
            let _ = g.seal_all_held(-1);
        }
    }
}

/// Report the logical size of a covered regular file (a pure function of
/// the physical size; no need to open it).
unsafe fn fix_path_stat(rc: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int {
    // SAFETY: the caller's path.
    if rc != 0 || buf.is_null() || unsafe { covered(path) }.is_none() {
        return rc;
    }
    // SAFETY: the real stat filled *buf.
    let st = unsafe { &mut *buf };
    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
        if let Ok(logical) = physical_to_logical_size(st.st_size as u64) {
            st.st_size = logical as off_t;
        }
    }
    rc
}

/// # Safety
/// libc `stat` contract.
pub(crate) unsafe extern "C" fn shim_stat(path: *const c_char, buf: *mut libc::stat) -> c_int {
    // SAFETY: the caller's arguments, forwarded.
    unsafe {
        seal_before_path_op(path);
        let rc = (real().stat)(path, buf);
        fix_path_stat(rc, path, buf)
    }
}

/// # Safety
/// libc `lstat` contract.
pub(crate) unsafe extern "C" fn shim_lstat(path: *const c_char, buf: *mut libc::stat) -> c_int {
    // SAFETY: the caller's arguments, forwarded.
    unsafe {
        seal_before_path_op(path);
        let rc = (real().lstat)(path, buf);
        fix_path_stat(rc, path, buf)
    }
}

/// # Safety
/// libc `fstatat` contract.
pub(crate) unsafe extern "C" fn shim_fstatat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> c_int {
    // Only paths we can classify as given (absolute or cwd-relative) are
    // corrected; PostgreSQL does not call fstatat.
    // SAFETY: the caller's path.
    let plain = dirfd == libc::AT_FDCWD || (!path.is_null() && unsafe { *path } == b'/' as c_char);
    // SAFETY: the caller's arguments, forwarded.
    unsafe {
        if plain {
            seal_before_path_op(path);
        }
        let rc = (real().fstatat)(dirfd, path, buf, flags);
        if plain {
            fix_path_stat(rc, path, buf)
        } else {
            rc
        }
    }
}

/// # Safety
/// libc `statx` contract.
pub(crate) unsafe extern "C" fn shim_statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: libc::c_uint,
    buf: *mut libc::statx,
) -> c_int {
    // SAFETY: the caller's path (NUL-terminated when non-null).
    let empty = path.is_null() || unsafe { *path } == 0;
    if empty && flags & libc::AT_EMPTY_PATH != 0 && super::table::is_ours(dirfd) {
        // statx on our fd itself: like fstat, held bytes first, then the
        // logical size.
        return super::fd::statx_ours(dirfd, flags, mask, buf);
    }
    // SAFETY: the caller's path.
    let plain = !empty && (dirfd == libc::AT_FDCWD || unsafe { *path } == b'/' as c_char);
    // SAFETY: the caller's arguments, forwarded.
    unsafe {
        if plain {
            seal_before_path_op(path);
        }
        let rc = (real().statx)(dirfd, path, flags, mask, buf);
        if rc == 0 && plain && !buf.is_null() && covered(path).is_some() {
            let st = &mut *buf;
            if u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFREG
                && st.stx_mask & libc::STATX_SIZE != 0
            {
                if let Ok(logical) = physical_to_logical_size(st.stx_size) {
                    st.stx_size = logical;
                }
            }
        }
        rc
    }
}

// ---------------------------------------------------------------------------
// truncate, unlink.

/// # Safety
/// libc `truncate` contract.
pub(crate) unsafe extern "C" fn shim_truncate(path: *const c_char, len: off_t) -> c_int {
    // SAFETY: the caller's path.
    if unsafe { covered(path) }.is_none() {
        // SAFETY: pass-through.
        return unsafe { (real().truncate)(path, len) };
    }
    // Through our own open/ftruncate/close so the layout is kept.
    // SAFETY: the caller's path.
    let fd = unsafe { shim_open(path, libc::O_RDWR, 0) };
    if fd < 0 {
        return -1;
    }
    // SAFETY: our fd.
    let rc = unsafe { shim_ftruncate(fd, len) };
    let e = errno();
    // SAFETY: our fd.
    let closed = unsafe { shim_close(fd) };
    if rc != 0 {
        set_errno(e);
        return rc;
    }
    closed
}

/// # Safety
/// libc `unlink` contract.
pub(crate) unsafe extern "C" fn shim_unlink(path: *const c_char) -> c_int {
    // A poisoned file that is removed no longer matters (and its inode
    // number may be reused by a new file).
    // SAFETY: the caller's path.
    let id = if poison::any() && unsafe { covered(path) }.is_some() {
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: valid path and out-pointer.
        if unsafe { (real().lstat)(path, st.as_mut_ptr()) } == 0 {
            // SAFETY: lstat succeeded.
            Some(FileId::of(&unsafe { st.assume_init() }))
        } else {
            None
        }
    } else {
        None
    };
    // SAFETY: pass-through.
    let rc = unsafe { (real().unlink)(path) };
    // SAFETY: the caller's path.
    if rc == 0 && unsafe { covered(path) }.is_some() {
        if let Ok(mut g) = Guard::acquire() {
            if let Some(id) = id {
                poison::clear(id);
            }
            // SAFETY: a NUL-terminated path (covered() read it).
            g.registry()
                .remove(unsafe { CStr::from_ptr(path) }.to_bytes());
        }
    }
    rc
}

// ---------------------------------------------------------------------------
// stdio and dirent: libc opens these fds internally (not through any GOT),
// so a number we track may come back here; and stdio would write plaintext.

/// A stdio mode that writes (`w`, `a` or `+`).
unsafe fn mode_writes(mode: *const c_char) -> bool {
    if mode.is_null() {
        return false;
    }
    // SAFETY: fopen's mode is a NUL-terminated string.
    let m = unsafe { CStr::from_ptr(mode) }.to_bytes();
    m.iter().any(|&b| matches!(b, b'w' | b'a' | b'+'))
}

/// Forget a stale entry for the fd behind a new stream.
unsafe fn forget_stream_fd(f: *mut FILE) -> *mut FILE {
    if !f.is_null() {
        // SAFETY: a valid stream just returned by libc; fileno is not
        // interposed.
        forget_stale(unsafe { libc::fileno(f) });
    }
    f
}

/// # Safety
/// libc `fopen` contract.
pub(crate) unsafe extern "C" fn shim_fopen(path: *const c_char, mode: *const c_char) -> *mut FILE {
    // stdio would write a covered file in plaintext (COPY TO a temp-file
    // name, say): refuse writing modes there. Reading gives ciphertext.
    // SAFETY: the caller's arguments.
    if unsafe { mode_writes(mode) && covered(path).is_some() } {
        set_errno(libc::EACCES);
        return std::ptr::null_mut();
    }
    // SAFETY: pass-through, then a valid (or null) stream.
    unsafe { forget_stream_fd((real().fopen)(path, mode)) }
}

/// # Safety
/// libc `freopen` contract.
pub(crate) unsafe extern "C" fn shim_freopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
) -> *mut FILE {
    // SAFETY: the caller's arguments.
    if unsafe { mode_writes(mode) && covered(path).is_some() } {
        set_errno(libc::EACCES);
        return std::ptr::null_mut();
    }
    // SAFETY: pass-through, then a valid (or null) stream.
    unsafe { forget_stream_fd((real().freopen)(path, mode, stream)) }
}

/// # Safety
/// libc `opendir` contract.
pub(crate) unsafe extern "C" fn shim_opendir(path: *const c_char) -> *mut libc::DIR {
    // SAFETY: pass-through.
    let d = unsafe { (real().opendir)(path) };
    if !d.is_null() {
        // SAFETY: a valid DIR just returned by libc; dirfd is not interposed.
        forget_stale(unsafe { libc::dirfd(d) });
    }
    d
}
