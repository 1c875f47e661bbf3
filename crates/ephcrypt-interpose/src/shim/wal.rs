//! What the `wal` class needs beyond the other classes (docs/DECISIONS.md,
//! "Ephemeral WAL"):
//!
//! * **Bounded retries.** A WAL segment is written by one process at a time
//!   (under PostgreSQL's `WALWriteLock`, or by the walreceiver alone) and
//!   read by others meanwhile: walsenders and the startup process read the
//!   tail page while `XLogWrite` rewrites it. A reader can then see a data
//!   block and a metadata page of two different writes, or a metadata page
//!   half written: it fails authentication. Every operation on a WAL fd that
//!   fails with EIO is retried from the disk ([`retrying`], from
//!   [`super::table::with_file`] and at open), at most [`MAX_RETRIES`] more
//!   times over about 0.5 s, before EIO reaches PostgreSQL. No attempt
//!   ever returns unauthenticated bytes; a genuinely damaged file is EIO
//!   after the last attempt.
//! * **Renames across the class boundary.** Every WAL file has one canonical
//!   name, so renames within the class keep files readable and pass
//!   through. PostgreSQL also renames `xlogtemp.<pid>` to a timeline history
//!   file (read with stdio, never interposed: it must be plaintext) and a
//!   segment restored by `restore_command` (`RECOVERYXLOG`, written by a
//!   shell: plaintext) to a segment name. [`shim_rename`] and [`shim_link`]
//!   convert: out of the class the file is unsealed, into it sealed.
//! * **Start-up pass** ([`startup_pass`]), run by the postmaster before
//!   recovery: sealed WAL of an ended postmaster is removed (standby) or
//!   reported (primary: the caller refuses to start); plaintext segments are
//!   sealed under the new WAL key; stale `xlogtemp.*` files are removed.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ephcrypt_classify::{ArtifactClass, WAL_NAME};
use ephcrypt_format::{sniff, EpochKey, FileName, Mode, SealedFile, Sniff, HEADER_LEN};

use super::config::covered;
use super::fdio::{fstat, FdIo, Pooled};
use super::nonces::{os_random, ProcessNonces};
use super::poison::FileId;
use super::real::{errno, real, set_errno, Errno};
use super::table::Guard;
use crate::error::InterposeError;
use crate::stats::{self, Counter};
use crate::walkey;

/// Retries after a first failed attempt of an operation on a WAL fd: about
/// 0.5 s in all, longer than one CFS period (100 ms) for which a CPU quota
/// can stop the writer between its two pwrites (the review's SIGSTOP test
/// made readers fail after the earlier 90 ms budget).
pub(crate) const MAX_RETRIES: u32 = 60;

/// Retries taken by this process (diagnostics and tests).
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// How many times this process retried an operation on a WAL file.
pub fn retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// Wait before retry number `attempt` (1-based). A torn view lasts as long
/// as one `pwrite` of the writer: the first [`SPIN_RETRIES`] retries go
/// again at once (a yield or a sleep would cost a walsender waiting for it,
/// and so every synchronous commit, far more on a busy machine); then 20 µs
/// doubling up to 10 ms (about 0.5 s in all over [`MAX_RETRIES`]).
pub(crate) fn pause(attempt: u32) {
    RETRIES.fetch_add(1, Ordering::Relaxed);
    if attempt <= SPIN_RETRIES {
        std::hint::spin_loop();
        return;
    }
    let us = (20u64 << (attempt - SPIN_RETRIES - 1).min(9)).min(10_000);
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: (us * 1000) as libc::c_long,
    };
    // SAFETY: a valid timespec; an early wake-up (EINTR) only shortens it.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// Retries that do not wait.
pub(crate) const SPIN_RETRIES: u32 = 3;

/// Whether WAL files rewrite in place metadata-first (tests turn it off to
/// show what it prevents).
static WRITE_AHEAD: AtomicBool = AtomicBool::new(true);

/// Tests only: turn the write ahead of WAL files opened from now on off
/// (`false`) or back on.
#[doc(hidden)]
pub fn set_write_ahead(on: bool) {
    WRITE_AHEAD.store(on, Ordering::Relaxed);
}

pub(crate) fn write_ahead() -> bool {
    WRITE_AHEAD.load(Ordering::Relaxed)
}

/// Run `f` until it succeeds or fails with anything but EIO, retrying at
/// most [`MAX_RETRIES`] times.
pub(crate) fn retrying<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(Errno(libc::EIO)) if attempt < MAX_RETRIES => {
                attempt += 1;
                pause(attempt);
            }
            r => return r,
        }
    }
}

/// `pwritev` of zeros at the logical end of a WAL file (how
/// `XLogFileInitInternal` fills a new segment: `PG_IOV_MAX` iovecs of one
/// zero page per call): one extension by sealed zero blocks instead of one
/// write-through call per iovec (each re-reads and rewrites a metadata page
/// in shared mode). The same bytes end up in the file; `None` when the
/// write is not such an extension.
pub(crate) fn zero_extension(
    s: &mut SealedFile,
    io: &mut FdIo<'_>,
    nonces: &mut ProcessNonces<'_>,
    iovs: &[libc::iovec],
    start: u64,
) -> Result<Option<u64>, Errno> {
    let total: u64 = iovs.iter().map(|v| v.iov_len as u64).sum();
    if iovs.len() < 2 || total == 0 {
        return Ok(None);
    }
    let all_zero = iovs.iter().all(|v| {
        if v.iov_len == 0 {
            return true;
        }
        if v.iov_base.is_null() {
            return false;
        }
        // SAFETY: the caller checked each iovec describes readable memory
        // of its length (the pwritev contract).
        let b = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
        b.iter().all(|&x| x == 0)
    });
    if !all_zero || s.len(io)? != start {
        return Ok(None);
    }
    s.set_len(io, nonces, start + total)?;
    Ok(Some(total))
}

/// The canonical name of every WAL file.
pub(crate) fn wal_name() -> FileName<'static> {
    match FileName::new(ArtifactClass::Wal.index() as u8, WAL_NAME) {
        Ok(n) => n,
        Err(_) => unreachable!("WAL_NAME is short"),
    }
}

/// The WAL key and its epoch id (EIO without a live WAL key).
fn wal_key() -> Result<(&'static EpochKey, [u8; 16]), Errno> {
    let page = walkey::page().ok_or(Errno(libc::EIO))?;
    let key = page.epoch_key().ok_or(Errno(libc::EIO))?;
    Ok((key, page.epoch_id()))
}

// ---------------------------------------------------------------------------
// Raw files (through the real functions: no shim sees these fds).

/// An fd we opened ourselves, closed on drop.
struct RawFd(c_int);

impl RawFd {
    fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> Result<RawFd, Errno> {
        // SAFETY: a NUL-terminated path, to the real open.
        let fd = unsafe { (real().open)(path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd < 0 {
            Err(Errno(errno()))
        } else {
            Ok(RawFd(fd))
        }
    }

    fn sync(&self) -> Result<(), Errno> {
        // SAFETY: our own fd.
        if unsafe { (real().fsync)(self.0) } != 0 {
            return Err(Errno(errno()));
        }
        Ok(())
    }
}

impl Drop for RawFd {
    fn drop(&mut self) {
        // SAFETY: closing our own fd once.
        unsafe { (real().close)(self.0) };
    }
}

fn io_of<'a>(fd: &RawFd, len: &'a mut Option<u64>) -> FdIo<'a> {
    FdIo::new(fd.0, len)
}

/// Read exactly `buf.len()` bytes at `off`, or fewer at end of file.
fn read_raw(fd: &RawFd, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
    let mut none = None;
    ephcrypt_format::PhysicalIo::read_at(&mut io_of(fd, &mut none), buf, off)
}

fn write_raw(fd: &RawFd, buf: &[u8], off: u64) -> Result<(), Errno> {
    let mut none = None;
    ephcrypt_format::PhysicalIo::write_all_at(&mut io_of(fd, &mut none), buf, off)
}

/// What the first bytes of a regular file say (`None`: not a regular file).
fn sniff_file(fd: &RawFd) -> Result<Option<(Sniff, u64)>, Errno> {
    let st = fstat(fd.0)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_LEN];
    let n = read_raw(fd, &mut head, 0)?;
    Ok(Some((sniff(&head[..n]), st.st_size as u64)))
}

fn with_suffix(path: &CStr, suffix: &str) -> Result<CString, Errno> {
    let mut v = path.to_bytes().to_vec();
    v.extend_from_slice(suffix.as_bytes());
    CString::new(v).map_err(|_| Errno(libc::EINVAL))
}

fn unlink_raw(path: &CStr) -> Result<(), Errno> {
    // SAFETY: a NUL-terminated path, to the real unlink.
    if unsafe { (real().unlink)(path.as_ptr()) } != 0 {
        return Err(Errno(errno()));
    }
    Ok(())
}

/// A non-zero random file id.
fn file_id() -> Result<[u8; 16], Errno> {
    loop {
        let id = os_random::<16>()?;
        if id != [0; 16] {
            return Ok(id);
        }
    }
}

/// Copy `src` (plaintext, `size` bytes) into the empty `dst` as a sealed WAL
/// file under the WAL key; flushed and fsynced.
fn seal_copy(
    src: &RawFd,
    size: u64,
    dst: &RawFd,
    nonces: &mut ProcessNonces<'_>,
) -> Result<(), Errno> {
    let (key, epoch) = wal_key()?;
    let id = file_id()?;
    let mut len = Some(0);
    let mut io = io_of(dst, &mut len);
    let name = wal_name();
    let mut s = SealedFile::create(
        &mut io,
        nonces,
        key,
        &epoch,
        &id,
        &name,
        Mode::Private { cache_groups: 2 },
    )?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(128 * 1024)
        .map_err(|_| Errno(libc::ENOMEM))?;
    buf.resize(128 * 1024, 0u8);
    let mut off = 0u64;
    while off < size {
        let want = ((size - off) as usize).min(buf.len());
        let n = read_raw(src, &mut buf[..want], off)?;
        if n == 0 {
            break; // shrank meanwhile: seal what there is
        }
        s.write_at(&mut io, nonces, &buf[..n], off)?;
        off += n as u64;
    }
    s.flush(&mut io, nonces)?;
    dst.sync()?;
    stats::add(ArtifactClass::Wal, Counter::FilesCreated, 1);
    stats::add(ArtifactClass::Wal, Counter::BytesSealed, off);
    Ok(())
}

/// Largest file unsealed by a rename out of the class (history files are a
/// few lines; a segment is 16 MiB by default, at most 1 GiB).
const MAX_UNSEAL: u64 = 1 << 30;

/// The plaintext of the sealed WAL file `src`.
fn unseal_all(src: &RawFd) -> Result<Vec<u8>, Errno> {
    let (key, epoch) = wal_key()?;
    let name = wal_name();
    let mut len = None;
    let id = FileId::of(&fstat(src.0)?);
    retrying(|| {
        len = None;
        // Its pages may be published (FORMAT.md §8.3); this never publishes.
        let mut io = io_of(src, &mut len).with_pool(Pooled { id, wal: true });
        let mut s = SealedFile::open(&mut io, key, &epoch, &name, Mode::Shared, None)?;
        let n = s.len(&mut io)?;
        if n > MAX_UNSEAL {
            return Err(Errno(libc::EFBIG));
        }
        let mut out = Vec::new();
        out.try_reserve_exact(n as usize)
            .map_err(|_| Errno(libc::ENOMEM))?;
        out.resize(n as usize, 0u8);
        let got = s.read_at(&mut io, &mut out, 0)?;
        if got as u64 != n {
            return Err(Errno(libc::EIO));
        }
        Ok(out)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    Rename,
    Link,
}

/// Put `tmp` in place as `new` (rename, or link and drop `tmp`), then drop
/// `old` for a rename.
fn install(tmp: &CStr, old: &CStr, new: &CStr, how: How) -> Result<(), Errno> {
    // SAFETY: NUL-terminated paths, to the real functions.
    let rc = unsafe {
        match how {
            How::Rename => (real().rename)(tmp.as_ptr(), new.as_ptr()),
            How::Link => (real().link)(tmp.as_ptr(), new.as_ptr()),
        }
    };
    if rc != 0 {
        let e = errno();
        let _ = unlink_raw(tmp);
        return Err(Errno(e));
    }
    match how {
        How::Rename => unlink_raw(old),
        How::Link => unlink_raw(tmp),
    }
}

/// Whether the file should be handled by the real call as is.
enum Outcome {
    Done,
    PassThrough,
}

/// `old` (a WAL name) to `new` (not a WAL name): the file there must be
/// plaintext (a timeline history file, read with stdio).
fn move_out(old: &CStr, new: &CStr, how: How) -> Result<Outcome, Errno> {
    let src = RawFd::open(old, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0)?;
    match sniff_file(&src)? {
        Some((Sniff::Ours { .. }, _)) => {}
        // Not sealed (or not a regular file): nothing to convert.
        _ => return Ok(Outcome::PassThrough),
    }
    let mut plain = unseal_all(&src)?;
    let tmp = with_suffix(old, ".unsealed")?;
    let result = (|| {
        let dst = RawFd::open(
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            0o600,
        )?;
        write_raw(&dst, &plain, 0)?;
        dst.sync()
    })();
    stats::add(ArtifactClass::Wal, Counter::BytesOpened, plain.len() as u64);
    plain.fill(0);
    if let Err(e) = result {
        let _ = unlink_raw(&tmp);
        return Err(e);
    }
    drop(src);
    install(&tmp, old, new, how)?;
    Ok(Outcome::Done)
}

/// `old` (not a WAL name) to `new` (a WAL name): a plaintext file there
/// (a segment restored by `restore_command`) is sealed.
fn move_in(
    old: &CStr,
    new: &CStr,
    how: How,
    nonces: &mut ProcessNonces<'_>,
) -> Result<Outcome, Errno> {
    let src = RawFd::open(old, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0)?;
    let size = match sniff_file(&src)? {
        Some((Sniff::NotOurs, size)) => size,
        // Already sealed (or ours but damaged: opening it will say so), or
        // not a regular file.
        _ => return Ok(Outcome::PassThrough),
    };
    let tmp = with_suffix(new, ".sealing")?;
    let result = (|| {
        let dst = RawFd::open(
            &tmp,
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            0o600,
        )?;
        seal_copy(&src, size, &dst, nonces)
    })();
    if let Err(e) = result {
        let _ = unlink_raw(&tmp);
        return Err(e);
    }
    drop(src);
    install(&tmp, old, new, how)?;
    Ok(Outcome::Done)
}

/// Whether `path` is a WAL file of an enabled `wal` class.
///
/// # Safety
/// `path` is null or NUL-terminated.
unsafe fn is_wal(path: *const c_char) -> bool {
    // SAFETY: per the contract.
    unsafe { covered(path) }.is_some_and(|c| c.class == ArtifactClass::Wal)
}

/// # Safety
/// `old` and `new` are NUL-terminated paths (checked non-null).
unsafe fn move_common(old: *const c_char, new: *const c_char, how: How) -> c_int {
    // SAFETY: the caller's arguments, to the real function.
    let real_call = || unsafe {
        match how {
            How::Rename => (real().rename)(old, new),
            How::Link => (real().link)(old, new),
        }
    };
    if old.is_null() || new.is_null() {
        return real_call();
    }
    // SAFETY: NUL-terminated per the contract.
    let (from_wal, to_wal) = unsafe { (is_wal(old), is_wal(new)) };
    if from_wal == to_wal {
        // Within the class the canonical name does not change; outside it
        // nothing is ours.
        return real_call();
    }
    // SAFETY: NUL-terminated per the contract.
    let (o, n) = unsafe { (CStr::from_ptr(old), CStr::from_ptr(new)) };
    let result = match Guard::acquire() {
        Err(e) => Err(e),
        Ok(mut guard) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            guard.seal_all_held(-1)?;
            if from_wal {
                move_out(o, n, how)
            } else {
                move_in(o, n, how, &mut guard.nonces())
            }
        }))
        .unwrap_or(Err(Errno(libc::EIO))),
    };
    match result {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::PassThrough) => real_call(),
        Err(Errno(e)) => {
            let counter = if e == libc::EIO {
                Counter::AuthFailures
            } else {
                Counter::IoErrors
            };
            stats::add(ArtifactClass::Wal, counter, 1);
            set_errno(e);
            -1
        }
    }
}

/// # Safety
/// libc `rename` contract.
pub(crate) unsafe extern "C" fn shim_rename(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: forwarded under the same contract.
    unsafe { move_common(old, new, How::Rename) }
}

/// # Safety
/// libc `link` contract.
pub(crate) unsafe extern "C" fn shim_link(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: forwarded under the same contract.
    unsafe { move_common(old, new, How::Link) }
}

// ---------------------------------------------------------------------------
// Start-up pass.

/// What [`startup_pass`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StartupReport {
    /// Sealed WAL files of an ended postmaster, removed (standby) with their
    /// `archive_status` entries.
    pub removed: Vec<String>,
    /// Sealed WAL files of an ended postmaster left in place (primary: the
    /// server must not start; nothing was changed).
    pub ended: Vec<String>,
    /// Plaintext segments sealed under the new WAL key.
    pub converted: Vec<String>,
    /// Stale `xlogtemp.*` files removed.
    pub temps_removed: usize,
    /// `archive_status/*.ready|.done` files removed with their segments.
    pub status_removed: usize,
}

/// What to do at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupPolicy {
    /// Remove sealed WAL of an ended postmaster (a standby streams it again).
    /// Otherwise (a primary) report it and change nothing.
    pub remove_ended: bool,
    /// Seal plaintext segments under the WAL key (the class is on).
    pub seal_plaintext: bool,
}

fn cpath(p: &Path) -> Result<CString, InterposeError> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| InterposeError::Unsupported("a path with a NUL byte"))
}

fn startup_err(what: &str, path: &Path, e: Errno) -> InterposeError {
    InterposeError::Wal(format!(
        "{what} \"{}\": {}",
        path.display(),
        std::io::Error::from_raw_os_error(e.0)
    ))
}

/// The start-up pass over `data_dir/pg_wal`, in the postmaster before any
/// child exists (so before recovery). Sealed files are "of an ended
/// postmaster" unless they carry the live WAL key's epoch id (they never
/// do at start: the key is new). On a primary with such files nothing is
/// changed and they are returned in [`StartupReport::ended`].
pub fn startup_pass(
    data_dir: &Path,
    policy: StartupPolicy,
) -> Result<StartupReport, InterposeError> {
    super::real::init()?;
    let live = walkey::page().filter(|p| p.is_live()).map(|p| p.epoch_id());
    let mut report = StartupReport::default();
    let mut temps = Vec::new();
    let mut ended = Vec::new();
    let mut plain = Vec::new();
    for found in ephcrypt_classify::walk::wal_entries(data_dir) {
        if !matches!(found.kind, ephcrypt_classify::walk::EntryKind::Regular(_)) {
            continue; // a directory or link at a WAL name: PostgreSQL's to judge
        }
        let name = found
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("xlogtemp.") {
            temps.push(found.path);
            continue;
        }
        let c = cpath(&found.path)?;
        let fd = match RawFd::open(&c, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0) {
            Ok(fd) => fd,
            Err(Errno(libc::ENOENT)) => continue,
            Err(e) => return Err(startup_err("could not open", &found.path, e)),
        };
        match sniff_file(&fd).map_err(|e| startup_err("could not read", &found.path, e))? {
            Some((Sniff::Ours { epoch_id }, _)) if Some(epoch_id) == live => {}
            Some((Sniff::Ours { .. } | Sniff::Corrupt, _)) => ended.push((found.path, name)),
            Some((Sniff::NotOurs, size)) if size > 0 => plain.push((found.path, size)),
            _ => {}
        }
    }
    if !ended.is_empty() && !policy.remove_ended {
        report.ended = ended.into_iter().map(|(_, n)| n).collect();
        return Ok(report);
    }
    let unlink_path = |p: &Path| -> Result<bool, InterposeError> {
        match unlink_raw(&cpath(p)?) {
            Ok(()) => Ok(true),
            Err(Errno(libc::ENOENT)) => Ok(false),
            Err(e) => Err(startup_err("could not remove", p, e)),
        }
    };
    for t in temps {
        if unlink_path(&t)? {
            report.temps_removed += 1;
        }
    }
    let status = data_dir.join("pg_wal").join("archive_status");
    for (path, name) in ended {
        unlink_path(&path)?;
        for suffix in [".ready", ".done"] {
            if unlink_path(&status.join(format!("{name}{suffix}")))? {
                report.status_removed += 1;
            }
        }
        report.removed.push(name);
    }
    if policy.seal_plaintext && !plain.is_empty() {
        let mut guard = Guard::acquire().map_err(|_| InterposeError::Unsupported("shim lock"))?;
        for (path, size) in plain {
            let c = cpath(&path)?;
            let tmp = with_suffix(&c, ".sealing").map_err(|e| startup_err("bad path", &path, e))?;
            let sealed = (|| {
                let src = RawFd::open(&c, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                let dst = RawFd::open(
                    &tmp,
                    libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
                    0o600,
                )?;
                seal_copy(&src, size, &dst, &mut guard.nonces())?;
                // SAFETY: NUL-terminated paths, to the real rename.
                if unsafe { (real().rename)(tmp.as_ptr(), c.as_ptr()) } != 0 {
                    return Err(Errno(errno()));
                }
                Ok(())
            })();
            if let Err(e) = sealed {
                let _ = unlink_raw(&tmp);
                return Err(startup_err("could not seal", &path, e));
            }
            report.converted.push(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    // Make the removals and renames durable.
    if let Ok(dir) = RawFd::open(
        &cpath(&data_dir.join("pg_wal"))?,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    ) {
        let _ = dir.sync();
    }
    report.removed.sort();
    report.converted.sort();
    Ok(report)
}
