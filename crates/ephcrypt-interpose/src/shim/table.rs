//! The per-process fd table and the lock guard: the only way to a covered
//! file's state or to the nonce stream.
//!
//! An fd that is not ours costs one relaxed load of process-local memory
//! ([`is_ours`]); everything else goes through [`with_file`], which takes the
//! process lock, seals other fds' pending append tails (so nothing observes
//! a size or content before all bytes written so far are sealed), runs the
//! operation inside `catch_unwind` (a bug becomes EIO, never an unwind into
//! C), and turns errors into -1/errno. Entries leave the table through
//! [`Guard::close`] (seal what is held, then free, all under the lock) or
//! [`Guard::forget`] (the fd number now names another file: free without
//! writing anything).
//!
//! PostgreSQL processes are single-threaded: the lock is never contended;
//! it makes a re-entrant call (a signal handler) fail cleanly with EBUSY.

use std::ffi::c_int;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use ephcrypt_classify::ArtifactClass;
use ephcrypt_format::{meta_offset, NonceSource, PhysicalIo, Remembered, SealedFile, HEADER_LEN};

use super::changes::Watch;
use super::fdio::{FdIo, Pooled};
use super::nonces::{ProcessNonces, NONCES};
use super::poison::{self, FileId};
use super::pool::{self, PoolKey};
use super::real::{set_errno, Errno};
use super::remember::{self, REGISTRY};
use super::writeback::{self, AppendBuf};
use crate::stats::{self, Counter};

/// Highest fd number (exclusive) we can track. A covered file whose fd is
/// at or above it is refused with EMFILE (never passed through in
/// plaintext).
pub const MAX_TRACKED_FDS: usize = 65536;

/// fd -> our state, or null. Inherited by fork (the postmaster never has
/// covered files open).
static FD_TABLE: [AtomicPtr<OpenFile>; MAX_TRACKED_FDS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_TRACKED_FDS];

static LOCK: AtomicBool = AtomicBool::new(false);

/// Most fds one process may hold on one private covered file at once (one
/// writer and readers; PostgreSQL holds one).
pub(crate) const MAX_ALIASES: usize = 4;

/// The fds this process has open on one private covered file.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Aliases {
    fds: [c_int; MAX_ALIASES],
    n: usize,
}

impl Aliases {
    pub(crate) fn fds(&self) -> &[c_int] {
        &self.fds[..self.n]
    }
}

type AliasMap = std::collections::HashMap<FileId, Aliases>;

struct AliasCell(std::cell::UnsafeCell<Option<AliasMap>>);

// SAFETY: only reached through the guard, with the process lock held.
unsafe impl Sync for AliasCell {}

static ALIASES: AliasCell = AliasCell(std::cell::UnsafeCell::new(None));

/// What we know about an open covered file.
// The entry itself lives on the heap once per open file; boxing the large
// variant would only add an allocation and an indirection.
#[allow(clippy::large_enum_variant)]
pub(crate) enum FileState {
    Sealed(SealedFile),
    /// Opened, but its content cannot be used (foreign epoch, corrupt or
    /// plaintext header, no key, lost data): every data access fails with
    /// this errno. Opening still succeeds where PostgreSQL must be able to
    /// open such files (its fsync pass at startup, unlink after open).
    Poisoned(c_int),
}

/// One covered file open in this process.
pub(crate) struct OpenFile {
    pub(crate) class: ArtifactClass,
    pub(crate) state: FileState,
    pub(crate) id: FileId,
    /// Physical length cache for [`FdIo`]; dropped for shared files at every
    /// call and after any error.
    pub(crate) known_len: Option<u64>,
    /// Logical position for read()/write()/lseek().
    pub(crate) pos: u64,
    /// Opened with O_APPEND: write() goes to the logical end, through this
    /// tail buffer.
    pub(crate) append: Option<AppendBuf>,
    /// Member of a shared file set: other processes may write it, so no
    /// cached length survives between two calls, and cached pages and the
    /// one kept block only as copies to revalidate (FORMAT.md §8.1).
    pub(crate) shared: bool,
    /// The path it was opened by (private files: the key of what this
    /// process remembers about it after close).
    pub(crate) path: Box<[u8]>,
    /// A private file that this process also has open read-only through
    /// another fd: its metadata is written through after every operation,
    /// so the other handle (shared mode) reads what this one wrote.
    pub(crate) aliased: bool,
    /// The file's cross-process change counter (shim/changes.rs): bumped
    /// around writes of shared and aliased files, and consulted by shared
    /// handles before each call.
    pub(crate) change: Watch,
    /// A file-set member or WAL segment (a class other processes open):
    /// its metadata pages go to the shared pool (FORMAT.md §8.3), and its
    /// close drains what this process published there (if the fd can
    /// write).
    pub(crate) pooled: bool,
    /// Opened for writing.
    pub(crate) writable: bool,
}

impl OpenFile {
    /// The sealed file and a physical I/O handle sharing its length cache.
    pub(crate) fn parts(&mut self, fd: c_int) -> Result<(&mut SealedFile, FdIo<'_>), Errno> {
        let OpenFile {
            state,
            known_len,
            change,
            shared,
            aliased,
            pooled,
            id,
            class,
            ..
        } = self;
        match state {
            FileState::Sealed(s) => {
                // Other handles read what a shared or aliased file's writes
                // leave on disk: they bump the counter. A file-set member's
                // pages go to the shared pool.
                let io = if *pooled {
                    let wal = *class == ArtifactClass::Wal;
                    let pooled = Pooled { id: *id, wal };
                    FdIo::watched(fd, known_len, change).with_pool(pooled)
                } else if *shared || *aliased {
                    FdIo::watched(fd, known_len, change)
                } else {
                    FdIo::new(fd, known_len)
                };
                Ok((s, io))
            }
            FileState::Poisoned(e) => Err(Errno(*e)),
        }
    }

    /// Mark the file unusable after data loss, here and for later opens.
    pub(crate) fn poison(&mut self, e: Errno) {
        self.state = FileState::Poisoned(if e.0 == 0 { libc::EIO } else { e.0 });
        self.append = None;
        poison::add(self.id);
    }
}

/// Our fd? One relaxed load; false for anything out of range.
#[inline(always)]
pub(crate) fn is_ours(fd: c_int) -> bool {
    fd >= 0 && (fd as usize) < MAX_TRACKED_FDS && !entry(fd).is_null()
}

#[inline(always)]
fn entry(fd: c_int) -> *mut OpenFile {
    FD_TABLE[fd as usize].load(Ordering::Relaxed)
}

/// Allocate `value` on the heap, or ENOMEM (never an abort inside a shim).
fn try_box<T>(value: T) -> Result<*mut T, Errno> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(1).map_err(|_| Errno(libc::ENOMEM))?;
    v.push(value);
    let b: Box<[T]> = v.into_boxed_slice();
    // A boxed slice of one element has the layout of a Box<T>.
    Ok(Box::into_raw(b).cast::<T>())
}

/// Free an entry made by [`try_box`].
///
/// # Safety
/// `p` came from `try_box` and is no longer reachable from the table.
unsafe fn free_entry(p: *mut OpenFile) {
    // SAFETY: per the contract; `try_box` allocated a `[OpenFile]` of
    // length 1, which is what we hand back to the allocator.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, 1)) });
}

/// Exclusive access to this process's covered files and nonce stream.
pub(crate) struct Guard {
    _private: (),
}

impl Guard {
    /// The process lock, or EBUSY when re-entered (a signal handler).
    pub(crate) fn acquire() -> Result<Guard, Errno> {
        LOCK.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| Guard { _private: () })
            .map_err(|_| Errno(libc::EBUSY))
    }

    /// Our state for `fd`, if it is ours.
    pub(crate) fn file(&mut self, fd: c_int) -> Option<&mut OpenFile> {
        if !is_ours(fd) {
            return None;
        }
        // SAFETY: a live entry made by `try_box`, freed only through this
        // guard; the guard is unique and borrowed mutably for the lifetime
        // of the result.
        Some(unsafe { &mut *entry(fd) })
    }

    /// The file and the nonce stream together.
    pub(crate) fn file_and_nonces(
        &mut self,
        fd: c_int,
    ) -> Option<(&mut OpenFile, ProcessNonces<'_>)> {
        if !is_ours(fd) {
            return None;
        }
        // SAFETY: as in `file`; the nonce stream is a distinct object, also
        // only reachable through the (unique, mutably borrowed) guard.
        unsafe { Some((&mut *entry(fd), ProcessNonces(NONCES.get_mut()))) }
    }

    /// What this process remembers about its closed private files.
    pub(crate) fn registry(&mut self) -> &mut std::collections::HashMap<Box<[u8]>, Remembered> {
        // SAFETY: the registry is only reached through the (unique, mutably
        // borrowed) guard.
        remember::map(unsafe { REGISTRY.get_mut() })
    }

    fn aliases(&mut self) -> &mut AliasMap {
        // SAFETY: only reached through the (unique, mutably borrowed) guard.
        unsafe { &mut *ALIASES.0.get() }.get_or_insert_with(AliasMap::new)
    }

    /// The fds this process has open on private file `id`.
    pub(crate) fn fds_of(&mut self, id: FileId) -> Aliases {
        self.aliases().get(&id).copied().unwrap_or_default()
    }

    /// Note that `fd` is open on private file `id`.
    pub(crate) fn add_alias(&mut self, id: FileId, fd: c_int) -> Result<(), Errno> {
        let m = self.aliases();
        if !m.contains_key(&id) {
            m.try_reserve(1).map_err(|_| Errno(libc::ENOMEM))?;
        }
        let a = m.entry(id).or_default();
        if a.n == MAX_ALIASES {
            return Err(Errno(libc::EMFILE));
        }
        a.fds[a.n] = fd;
        a.n += 1;
        Ok(())
    }

    fn remove_alias(&mut self, id: FileId, fd: c_int) {
        let m = self.aliases();
        let Some(a) = m.get_mut(&id) else {
            return;
        };
        if let Some(i) = a.fds[..a.n].iter().position(|&f| f == fd) {
            a.fds.copy_within(i + 1..a.n, i);
            a.n -= 1;
        }
        let left = *a;
        if left.n == 0 {
            m.remove(&id);
        } else if left.n == 1 {
            if let Some(f) = self.file(left.fds[0]) {
                f.aliased = false;
            }
        }
    }

    /// The nonce stream alone.
    pub(crate) fn nonces(&mut self) -> ProcessNonces<'_> {
        // SAFETY: only reachable through the unique, mutably borrowed guard.
        ProcessNonces(unsafe { NONCES.get_mut() })
    }

    /// Seal what `fd` holds and write its metadata back, so that the file
    /// on disk is complete (fsync, close). On failure the file is poisoned.
    pub(crate) fn sync(&mut self, fd: c_int) -> Result<(), Errno> {
        self.seal_held(fd)?;
        let Some((file, mut nonces)) = self.file_and_nonces(fd) else {
            return Ok(());
        };
        let result = match file.parts(fd) {
            Ok((s, mut io)) => s.flush(&mut io, &mut nonces),
            Err(_) => Ok(()), // poisoned: nothing to write back
        };
        file.change.finish();
        if let Err(e) = result {
            file.poison(e);
            stats::add(file.class, Counter::IoErrors, 1);
        }
        result
    }

    /// Track `fd` with `file`. A stale entry for the same number (the fd was
    /// closed behind our back) is forgotten first.
    pub(crate) fn insert(&mut self, fd: c_int, file: OpenFile) -> Result<(), Errno> {
        if fd < 0 || fd as usize >= MAX_TRACKED_FDS {
            return Err(Errno(libc::EMFILE));
        }
        let p = try_box(file)?;
        self.forget(fd);
        FD_TABLE[fd as usize].store(p, Ordering::Relaxed);
        Ok(())
    }

    /// Seal what `fd` holds (its append tail). On failure the file is
    /// poisoned: the bytes are lost, and later opens must say so.
    pub(crate) fn seal_held(&mut self, fd: c_int) -> Result<(), Errno> {
        let Some((file, mut nonces)) = self.file_and_nonces(fd) else {
            return Ok(());
        };
        let result = seal_held_bytes(file, fd, &mut nonces);
        writeback::clear_dirty(fd);
        if let Err(e) = result {
            file.poison(e);
            stats::add(file.class, Counter::IoErrors, 1);
        }
        result
    }

    /// Seal every other fd's held bytes.
    pub(crate) fn seal_all_held(&mut self, except: c_int) -> Result<(), Errno> {
        if !writeback::any_dirty() {
            return Ok(());
        }
        let mut result = Ok(());
        for fd in writeback::dirty_fds() {
            if fd < 0 || fd == except {
                continue;
            }
            if !is_ours(fd) {
                writeback::clear_dirty(fd);
                continue;
            }
            if let Err(e) = self.seal_held(fd) {
                result = Err(e);
            }
        }
        result
    }

    /// The one teardown path of a tracked fd: seal what it holds, then free
    /// its state. The entry is gone afterwards whatever happened; the error
    /// (data that could not be sealed) is returned for close() to report.
    pub(crate) fn close(&mut self, fd: c_int) -> Result<(), Errno> {
        if !is_ours(fd) {
            return Ok(());
        }
        let mut result = self.sync(fd);
        if result.is_ok() {
            result = self.drain(fd);
        }
        if result.is_ok() {
            result = self.remember(fd);
        }
        let id = self.file(fd).map(|f| f.id);
        if let Some(id) = id {
            self.remove_alias(id, fd);
        }
        let p = FD_TABLE[fd as usize].swap(ptr::null_mut(), Ordering::Relaxed);
        writeback::clear_dirty(fd);
        // SAFETY: unlinked from the table just now, under the guard.
        unsafe { free_entry(p) };
        stats::fold();
        result
    }

    /// Write back what `fd` published in the shared pool (close: not at
    /// `fsync`, since no reader needs the disk's pages while the postmaster
    /// lives, and WAL is fsynced at every commit). On failure the file is
    /// poisoned; its pages stay in the pool.
    fn drain(&mut self, fd: c_int) -> Result<(), Errno> {
        let Some((file, mut nonces)) = self.file_and_nonces(fd) else {
            return Ok(());
        };
        let result = drain_published(file, fd, &mut nonces);
        file.change.finish();
        if let Err(e) = result {
            file.poison(e);
            stats::add(file.class, Counter::IoErrors, 1);
        }
        result
    }

    /// Keep what a private file's next open must find (after [`Self::sync`]).
    fn remember(&mut self, fd: c_int) -> Result<(), Errno> {
        let Some(file) = self.file(fd) else {
            return Ok(());
        };
        let FileState::Sealed(s) = &file.state else {
            return Ok(());
        };
        if file.shared {
            return Ok(());
        }
        let state = s.remembered().map_err(Errno::from)?;
        // A raw pointer to the path: the registry borrow below needs the
        // guard again; the entry is not freed before close finishes.
        let path: *const [u8] = &*file.path;
        // SAFETY: `path` points into the live entry of `fd`, which only
        // `close` frees, after this returns.
        let path = unsafe { &*path };
        // SAFETY: as in `registry`.
        remember::insert(unsafe { REGISTRY.get_mut() }, path, state)
    }

    /// Drop the state of `fd` without writing anything: the number now
    /// names another file (closed behind our back and reused). Whatever the
    /// old file still held is lost, so it is poisoned.
    pub(crate) fn forget(&mut self, fd: c_int) {
        if !is_ours(fd) {
            return;
        }
        let id = self.file(fd).map(|f| f.id);
        if let Some(id) = id {
            self.remove_alias(id, fd);
        }
        let p = FD_TABLE[fd as usize].swap(ptr::null_mut(), Ordering::Relaxed);
        writeback::clear_dirty(fd);
        // SAFETY: a live entry, unlinked just now under the guard.
        let held = unsafe { &*p }
            .append
            .as_ref()
            .is_some_and(AppendBuf::is_pending);
        if held {
            // SAFETY: as above; still ours until freed below.
            poison::add(unsafe { &*p }.id);
        }
        // SAFETY: unlinked from the table, under the guard.
        unsafe { free_entry(p) };
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
    }
}

/// Write back the metadata pages of `fd`'s file that this process
/// published in the shared pool, through this handle or any earlier one
/// (FORMAT.md §8.3): each sealed with a fresh nonce, at its place, then out
/// of the pool. A page past the physical end leaves the pool unwritten,
/// and nothing is written when the file's header on disk is no longer this
/// handle's (the inode was re-created). No system call when it owns none.
fn drain_published(
    file: &mut OpenFile,
    fd: c_int,
    nonces: &mut ProcessNonces<'_>,
) -> Result<(), Errno> {
    let OpenFile {
        state,
        id,
        change,
        pooled,
        writable,
        ..
    } = file;
    if !*pooled || !*writable {
        return Ok(());
    }
    let FileState::Sealed(s) = state else {
        return Ok(()); // poisoned: its pages stay where readers find them
    };
    let cipher = s.cipher();
    let key = PoolKey::new(*id, &cipher.file_id());
    if !pool::owns_any(&key) {
        return Ok(());
    }
    let size = super::fdio::fstat(fd)?.st_size as u64;
    let mut unknown = None;
    let mut io = FdIo::watched(fd, &mut unknown, change);
    let mut header = [0u8; HEADER_LEN];
    let ours = io.read_at(&mut header, 0)? == HEADER_LEN && header == *cipher.header_bytes();
    pool::drain(&key, |group, page| {
        if !ours || meta_offset(group) >= size {
            return Ok(());
        }
        let nonce = nonces.next_nonce()?;
        cipher.seal_metadata(group, nonce, page)?;
        io.write_all_at(&page[..], meta_offset(group))
    })
}

fn seal_held_bytes(
    file: &mut OpenFile,
    fd: c_int,
    nonces: &mut ProcessNonces<'_>,
) -> Result<(), Errno> {
    let Some(mut buf) = file.append.take() else {
        return Ok(());
    };
    let aliased = file.aliased;
    let result = if buf.is_pending() {
        match file.parts(fd) {
            Ok((sealed, mut io)) => {
                writeback::seal(sealed, &mut io, &mut buf, nonces).and_then(|()| {
                    if aliased {
                        // Another fd of this process reads the file from
                        // disk: the sealed tail goes there now, not when
                        // this fd's next call flushes.
                        sealed.flush(&mut io, nonces)
                    } else {
                        Ok(())
                    }
                })
            }
            Err(e) => Err(e),
        }
    } else {
        Ok(())
    };
    file.change.finish();
    file.append = Some(buf);
    result
}

/// If `fd` is tracked, forget it: a call that is not ours just handed out
/// this number (socket, pipe, a pass-through open...), so the entry is
/// stale. One relaxed load when it is not (the usual case).
#[inline]
pub(crate) fn forget_stale(fd: c_int) {
    if is_ours(fd) {
        forget_stale_slow(fd);
    }
}

#[cold]
fn forget_stale_slow(fd: c_int) {
    match Guard::acquire() {
        Ok(mut g) => g.forget(fd),
        // Re-entered: unlink it now and leak the state rather than free it
        // under someone else's borrow.
        Err(_) => {
            FD_TABLE[fd as usize].store(ptr::null_mut(), Ordering::Relaxed);
        }
    }
}

/// How [`with_file`] treats the fd's own append tail.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnTail {
    /// Seal it first: the operation reads, sizes or writes positionally.
    Seal,
    /// Leave it: the operation is an append that extends it.
    Keep,
}

/// Run `op` on our file `fd` with the lock held; `fail` with errno set on
/// failure. Every other fd's held bytes are sealed first (and this fd's,
/// per `own`), all inside `catch_unwind`.
pub(crate) fn with_file<R>(
    fd: c_int,
    fail: R,
    own: OwnTail,
    mut op: impl FnMut(&mut OpenFile, &mut ProcessNonces<'_>) -> Result<R, Errno>,
) -> R {
    let mut guard = match Guard::acquire() {
        Ok(g) => g,
        Err(Errno(e)) => {
            set_errno(e);
            return fail;
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> Result<R, (Errno, Option<ArtifactClass>)> {
            guard.seal_all_held(fd).map_err(|e| (e, None))?;
            if own == OwnTail::Seal {
                guard.seal_held(fd).map_err(|e| (e, None))?;
            }
            let (file, mut nonces) = guard
                .file_and_nonces(fd)
                .ok_or((Errno(libc::EBADF), None))?;
            let unchanged = file.shared && file.change.begin();
            if file.shared {
                if let FileState::Sealed(s) = &mut file.state {
                    if unchanged && s.is_settled() {
                        // No handle has written the file since this one's
                        // last call returned: what it left is the disk's
                        // (FORMAT.md §8.2, shim/changes.rs).
                        s.assume_unchanged();
                        super::changes::note_skipped();
                    } else {
                        // Other processes may write a file-set member: no
                        // cached length; pages and the kept block only as
                        // copies that the call revalidates (FORMAT.md §8.1).
                        file.known_len = None;
                        s.invalidate();
                    }
                }
            }
            let class = file.class;
            let is_wal = class == ArtifactClass::Wal;
            // No signals are held: a WAL writer ended between its writes
            // (a SIGQUIT handler's _exit as much as SIGKILL) leaves what the
            // write ahead recovers (FORMAT.md §14, DECISIONS.md #61).
            let mut r = op(file, &mut nonces);
            if is_wal {
                // A WAL file is rewritten by another process while we read
                // it: a failed authentication may be a torn view. Retry from
                // the disk, bounded (shim/wal.rs).
                let mut attempt = 0;
                while matches!(r, Err(Errno(libc::EIO)))
                    && matches!(file.state, FileState::Sealed(_))
                    && attempt < super::wal::MAX_RETRIES
                {
                    attempt += 1;
                    super::wal::pause(attempt);
                    file.known_len = None;
                    if let FileState::Sealed(s) = &mut file.state {
                        s.invalidate();
                    }
                    r = op(file, &mut nonces);
                }
            }
            if r.is_ok() && file.aliased {
                // Another fd of this process reads the file from disk.
                if let Ok((s, mut io)) = file.parts(fd) {
                    if let Err(e) = s.flush(&mut io, &mut nonces) {
                        r = Err(e);
                    }
                }
            }
            if r.is_err() {
                // After a failure the physical length is unknown (a write
                // may have been partial).
                file.known_len = None;
            }
            let mut settled = false;
            if let FileState::Sealed(s) = &mut file.state {
                // A claim no call used (an lseek that only moves the
                // position) must not reach a later call outside this one.
                s.withdraw_claim();
                settled = s.is_settled();
            }
            if file.shared {
                file.change.end(r.is_ok() && settled);
            } else {
                // An aliased private file: close the bracket of its writes
                // (the reader fd follows the counter).
                file.change.finish();
            }
            r.map_err(|e| (e, Some(class)))
        },
    ));
    stats::tick();
    match result {
        Ok(Ok(v)) => v,
        Ok(Err((Errno(e), class))) => {
            count_error(class, e);
            set_errno(e);
            fail
        }
        Err(_) => {
            // A panic may have left a write bracket open and a claim unused.
            if let Some(f) = guard.file(fd) {
                f.change.end(false);
                if let FileState::Sealed(s) = &mut f.state {
                    s.withdraw_claim();
                }
            }
            set_errno(libc::EIO);
            fail
        }
    }
}

fn count_error(class: Option<ArtifactClass>, e: c_int) {
    if let Some(class) = class {
        // EIO is what authentication failures and foreign epochs become.
        let counter = if e == libc::EIO {
            Counter::AuthFailures
        } else {
            Counter::IoErrors
        };
        stats::add(class, counter, 1);
    }
}

/// Seal every held byte of this process and drain what it published in
/// the shared pool (process exit).
pub(crate) extern "C" fn seal_all_at_exit() {
    if let Ok(mut g) = Guard::acquire() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = g.seal_all_held(-1);
            for fd in 0..MAX_TRACKED_FDS as c_int {
                if let Some((file, mut nonces)) = g.file_and_nonces(fd) {
                    if file.pooled {
                        let _ = drain_published(file, fd, &mut nonces);
                        file.change.finish();
                    }
                }
            }
        }));
    }
    stats::fold();
}

/// How many covered files this process has open (diagnostics and tests).
pub fn open_covered_files() -> usize {
    FD_TABLE
        .iter()
        .filter(|e| !e.load(Ordering::Relaxed).is_null())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ephcrypt_format::EpochKey;
    use std::os::fd::IntoRawFd;
    use std::sync::Mutex;

    /// The tests share the process lock: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// A tracked append stream over a real file, with `held` bytes held.
    fn tracked_stream(name: &str, held: &[u8]) -> c_int {
        super::super::real::init().unwrap();
        let path =
            std::env::temp_dir().join(format!("ephcrypt-table-{}-{name}", std::process::id()));
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap()
            .into_raw_fd();
        std::fs::remove_file(&path).unwrap();
        let key = EpochKey::from_bytes([3; 32]);
        let mut len = Some(0);
        let mut g = Guard::acquire().unwrap();
        let name = ephcrypt_format::FileName::new(2, b"s/xid-1-lsn-0-1.spill").unwrap();
        let sealed = SealedFile::create(
            &mut FdIo::new(fd, &mut len),
            &mut g.nonces(),
            &key,
            &[1; 16],
            &[2; 16],
            &name,
            ephcrypt_format::Mode::PRIVATE,
        )
        .unwrap();
        g.insert(
            fd,
            OpenFile {
                class: ArtifactClass::LogicalSpill,
                state: FileState::Sealed(sealed),
                id: FileId { dev: 0, ino: 0 },
                known_len: Some(0),
                pos: 0,
                append: Some(AppendBuf::try_new().unwrap()),
                shared: false,
                path: Box::new(*b"test"),
                aliased: false,
                change: Watch::none(),
                pooled: false,
                writable: true,
            },
        )
        .unwrap();
        let (f, mut nonces) = g.file_and_nonces(fd).unwrap();
        let mut buf = f.append.take().unwrap();
        let (s, mut io) = f.parts(fd).unwrap();
        writeback::append(s, &mut io, &mut buf, &mut nonces, held).unwrap();
        f.append = Some(buf);
        assert!(writeback::mark_dirty(fd));
        fd
    }

    #[test]
    fn a_panic_while_sealing_a_tail_is_eio_and_releases_the_lock() {
        let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let fd = tracked_stream("panic", b"held bytes");
        writeback::tests::PANIC_IN_SEAL.store(true, Ordering::Relaxed);
        let rc = with_file(fd, -1, OwnTail::Seal, |_, _| Ok(0));
        writeback::tests::PANIC_IN_SEAL.store(false, Ordering::Relaxed);
        assert_eq!(rc, -1);
        assert_eq!(super::super::real::errno(), libc::EIO);
        // The lock was released: the next call runs (and now seals).
        assert!(Guard::acquire().is_ok());
        // Control: an operation that does not panic succeeds.
        assert_eq!(with_file(fd, -1, OwnTail::Seal, |_, _| Ok(7)), 7);
        let mut g = Guard::acquire().unwrap();
        g.close(fd).unwrap();
        assert!(!is_ours(fd));
        drop(g);
        // SAFETY: closing the raw fd the test opened.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn an_op_that_panics_is_eio_not_an_unwind() {
        let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let fd = tracked_stream("op-panic", b"");
        let rc: isize = with_file(fd, -1, OwnTail::Seal, |_, _| panic!("bug in an operation"));
        assert_eq!(rc, -1);
        assert_eq!(super::super::real::errno(), libc::EIO);
        let mut g = Guard::acquire().unwrap();
        g.close(fd).unwrap();
        drop(g);
        // SAFETY: closing the raw fd the test opened.
        unsafe { libc::close(fd) };
    }
}
