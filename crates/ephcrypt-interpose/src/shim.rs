//! The libc shims that PostgreSQL's GOT slots point at after [`install`].
//!
//! Every shim first asks the per-process fd table whether the descriptor is
//! ours. For an fd that is not (all durable I/O: heap, WAL, sockets, pipes)
//! that is one relaxed atomic load of process-local memory, then a call to
//! the real libc function: no allocation, no lock, no read-modify-write,
//! async-signal-safe. Path calls (`open`, `stat`, `truncate`) first run the
//! allocation-free classifier on the path.
//!
//! For our fds the shim translates the logical operation into the encrypted
//! layout through [`ephcrypt_format::SealedFile`] (the same code the
//! property tests exercise). Shims never panic across the C boundary and
//! never longjmp: failures return -1 with `errno` (EIO for a block that fails
//! authentication) and PostgreSQL raises its own ERROR.
//!
//! `open` is variadic in C. Stable Rust cannot define a variadic function;
//! a three-argument definition is ABI-compatible on x86_64 and aarch64 Linux
//! (the optional `mode` arrives in the third integer register either way)
//! and, like glibc, we only read `mode` when `O_CREAT` or `O_TMPFILE` is set.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};
use std::sync::OnceLock;

use ephcrypt_format::{
    physical_to_logical_size, FormatError, NonceSequence, NonceSource, PhysicalIo, SealedFile,
    BLOCK_SIZE, NONCE_LEN,
};
use libc::{iovec, mode_t, off_t, size_t, ssize_t};

use crate::classify::{classify, ArtifactClass};
use crate::error::InterposeError;
use crate::got::{self, PatchReport};
use crate::secmem::KeyPage;
use crate::stats::{self, Counter};

/// Highest fd number (exclusive) we can track. An fd of a covered file at or
/// above it is refused with EMFILE (never passed through in plaintext).
pub const MAX_TRACKED_FDS: usize = 65536;

/// Per-process table: fd -> our state, or null. Inherited by fork (the
/// postmaster never has covered files open).
static FD_TABLE: [AtomicPtr<OpenFile>; MAX_TRACKED_FDS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_TRACKED_FDS];

/// Serializes operations on our files within one process. PostgreSQL
/// processes are single-threaded, so it is never contended; it guards the
/// process-wide nonce stream and makes a re-entrant call fail cleanly.
static OURS_LOCK: AtomicBool = AtomicBool::new(false);

/// Set in a fork child: draw a new nonce prefix before the next seal.
static NONCE_RESEED: AtomicBool = AtomicBool::new(true);

/// Bit set of enabled artifact classes (bit = class index).
static ENABLED_CLASSES: AtomicU8 = AtomicU8::new(0);

static CONFIG: OnceLock<Config> = OnceLock::new();
static REAL: OnceLock<RealFns> = OnceLock::new();

/// Process-wide nonce stream; only touched with `OURS_LOCK` held.
struct NonceCell(std::cell::UnsafeCell<NonceSequence>);
// SAFETY: every access happens with OURS_LOCK held.
unsafe impl Sync for NonceCell {}
static NONCES: NonceCell = NonceCell(std::cell::UnsafeCell::new(NonceSequence::new([0; 8])));

/// What [`install`] needs to know.
pub struct Config {
    /// Absolute data directory, no trailing slash.
    pub data_dir: Vec<u8>,
    /// The key page (postmaster-created, inherited by children).
    pub key_page: &'static KeyPage,
}

fn class_bit(class: ArtifactClass) -> u8 {
    match class {
        ArtifactClass::TempFiles => 1,
        ArtifactClass::TempRelations => 2,
        ArtifactClass::LogicalSpill => 4,
    }
}

/// Enable exactly these classes (the others pass through untouched).
pub fn set_enabled_classes(classes: &[ArtifactClass]) {
    let bits = classes.iter().fold(0u8, |acc, c| acc | class_bit(*c));
    ENABLED_CLASSES.store(bits, Ordering::Relaxed);
}

/// The enabled classes.
pub fn enabled_classes() -> Vec<ArtifactClass> {
    let bits = ENABLED_CLASSES.load(Ordering::Relaxed);
    ArtifactClass::ALL
        .iter()
        .copied()
        .filter(|c| bits & class_bit(*c) != 0)
        .collect()
}

// ---------------------------------------------------------------------------
// Real libc functions, resolved by name from libc itself (never from the
// slot's previous value, which may be a lazy-binding PLT stub).

type OpenFn = unsafe extern "C" fn(*const c_char, c_int, mode_t) -> c_int;
type OpenAtFn = unsafe extern "C" fn(c_int, *const c_char, c_int, mode_t) -> c_int;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t) -> ssize_t;
type ReadChkFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, size_t) -> ssize_t;
type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
type PreadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, off_t) -> ssize_t;
type PwriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
type PreadvFn = unsafe extern "C" fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
type LseekFn = unsafe extern "C" fn(c_int, off_t, c_int) -> off_t;
type FtruncateFn = unsafe extern "C" fn(c_int, off_t) -> c_int;
type TruncateFn = unsafe extern "C" fn(*const c_char, off_t) -> c_int;
type StatFn = unsafe extern "C" fn(*const c_char, *mut libc::stat) -> c_int;
type FstatFn = unsafe extern "C" fn(c_int, *mut libc::stat) -> c_int;
type FallocateFn = unsafe extern "C" fn(c_int, off_t, off_t) -> c_int;
type FsyncFn = unsafe extern "C" fn(c_int) -> c_int;
type DupFn = unsafe extern "C" fn(c_int) -> c_int;
type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;

struct RealFns {
    open: OpenFn,
    openat: OpenAtFn,
    close: CloseFn,
    read: ReadFn,
    read_chk: ReadChkFn,
    write: WriteFn,
    pread: PreadFn,
    pwrite: PwriteFn,
    preadv: PreadvFn,
    pwritev: PreadvFn,
    lseek: LseekFn,
    ftruncate: FtruncateFn,
    truncate: TruncateFn,
    stat: StatFn,
    lstat: StatFn,
    fstat: FstatFn,
    posix_fallocate: FallocateFn,
    dup: DupFn,
    dup2: Dup2Fn,
    fsync: FsyncFn,
    fdatasync: FsyncFn,
}

macro_rules! resolve {
    ($name:literal, $ty:ty) => {{
        let addr = got::resolve_libc($name)?;
        // SAFETY: `addr` is libc's own definition of this function, whose C
        // prototype is the one `$ty` spells out.
        unsafe { std::mem::transmute::<usize, $ty>(addr) }
    }};
}

impl RealFns {
    fn resolve() -> Result<RealFns, InterposeError> {
        Ok(RealFns {
            open: resolve!(c"open", OpenFn),
            openat: resolve!(c"openat", OpenAtFn),
            close: resolve!(c"close", CloseFn),
            read: resolve!(c"read", ReadFn),
            read_chk: resolve!(c"__read_chk", ReadChkFn),
            write: resolve!(c"write", WriteFn),
            pread: resolve!(c"pread", PreadFn),
            pwrite: resolve!(c"pwrite", PwriteFn),
            preadv: resolve!(c"preadv", PreadvFn),
            pwritev: resolve!(c"pwritev", PreadvFn),
            lseek: resolve!(c"lseek", LseekFn),
            ftruncate: resolve!(c"ftruncate", FtruncateFn),
            truncate: resolve!(c"truncate", TruncateFn),
            stat: resolve!(c"stat", StatFn),
            lstat: resolve!(c"lstat", StatFn),
            fstat: resolve!(c"fstat", FstatFn),
            posix_fallocate: resolve!(c"posix_fallocate", FallocateFn),
            dup: resolve!(c"dup", DupFn),
            dup2: resolve!(c"dup2", Dup2Fn),
            fsync: resolve!(c"fsync", FsyncFn),
            fdatasync: resolve!(c"fdatasync", FsyncFn),
        })
    }
}

#[inline(always)]
fn real() -> &'static RealFns {
    match REAL.get() {
        Some(r) => r,
        // Shims are only reachable through slots patched after REAL was set.
        None => abort_unreachable(),
    }
}

#[cold]
fn abort_unreachable() -> ! {
    // Not a panic: nothing may unwind across the C boundary.
    std::process::abort()
}

// ---------------------------------------------------------------------------
// errno and the per-process state.

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

fn errno() -> c_int {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

/// An errno value as an error type for [`PhysicalIo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub c_int);

impl From<FormatError> for Errno {
    fn from(e: FormatError) -> Self {
        Errno(match e {
            FormatError::OffsetTooLarge => libc::EFBIG,
            FormatError::BufferTooSmall { .. } | FormatError::InvalidBlockLength { .. } => {
                libc::EINVAL
            }
            // Authentication, foreign epoch, corrupt sizes, RNG or crypto
            // failures: the bytes cannot be trusted or produced.
            _ => libc::EIO,
        })
    }
}

/// Physical I/O on a raw fd through the real libc functions.
struct FdIo<'a> {
    fd: c_int,
    /// The file's physical length as last seen or set by this process
    /// (`None` = ask fstat). Saves one syscall per write on private files.
    len: &'a mut Option<u64>,
}

impl PhysicalIo for FdIo<'_> {
    type Error = Errno;

    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            // SAFETY: buf[done..] is valid writable memory of that length.
            let n = unsafe {
                (real().pread)(
                    self.fd,
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    (off + done as u64) as off_t,
                )
            };
            if n < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(Errno(e));
            }
            if n == 0 {
                break;
            }
            done += n as usize;
        }
        Ok(done)
    }

    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            // SAFETY: buf[done..] is valid readable memory of that length.
            let n = unsafe {
                (real().pwrite)(
                    self.fd,
                    buf[done..].as_ptr().cast(),
                    buf.len() - done,
                    (off + done as u64) as off_t,
                )
            };
            if n < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(Errno(e));
            }
            if n == 0 {
                return Err(Errno(libc::EIO));
            }
            done += n as usize;
        }
        if let Some(len) = self.len.as_mut() {
            *len = (*len).max(off + buf.len() as u64);
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        // SAFETY: plain syscall wrapper on our fd.
        if unsafe { (real().ftruncate)(self.fd, len as off_t) } != 0 {
            *self.len = None;
            return Err(Errno(errno()));
        }
        *self.len = Some(len);
        Ok(())
    }

    fn len(&mut self) -> Result<u64, Errno> {
        if let Some(len) = *self.len {
            return Ok(len);
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: st is a valid out-pointer for fstat.
        if unsafe { (real().fstat)(self.fd, st.as_mut_ptr()) } != 0 {
            return Err(Errno(errno()));
        }
        // SAFETY: fstat succeeded and filled the struct.
        let len = unsafe { st.assume_init() }.st_size as u64;
        *self.len = Some(len);
        Ok(len)
    }
}

/// `N` bytes from the kernel CSPRNG (getrandom(2), one syscall). Used
/// instead of aws-lc's userspace RNG, whose first use in a process costs
/// ~60 ms of entropy gathering: every backend and parallel worker would pay
/// it on its first spill.
fn os_random<const N: usize>() -> Result<[u8; N], Errno> {
    let mut out = [0u8; N];
    let mut done = 0usize;
    while done < N {
        // SAFETY: writing into our own buffer within its bounds.
        let n = unsafe { libc::getrandom(out[done..].as_mut_ptr().cast(), N - done, 0) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(Errno(e));
        }
        done += n as usize;
    }
    Ok(out)
}

/// The process-wide nonce stream, re-seeded after fork.
struct ProcessNonces;

impl NonceSource for ProcessNonces {
    fn next_nonce(&mut self) -> ephcrypt_format::Result<[u8; NONCE_LEN]> {
        // SAFETY: only called from within a `LockGuard` scope.
        let seq = unsafe { &mut *NONCES.0.get() };
        if NONCE_RESEED.swap(false, Ordering::Relaxed) {
            seq.reseed(os_random::<8>().map_err(|_| FormatError::RandomFailed)?);
        }
        match seq.next() {
            Ok(n) => Ok(n),
            Err(FormatError::NonceSpaceExhausted) => {
                seq.reseed(os_random::<8>().map_err(|_| FormatError::RandomFailed)?);
                seq.next()
            }
            Err(e) => Err(e),
        }
    }
}

extern "C" fn after_fork_in_child() {
    NONCE_RESEED.store(true, Ordering::Relaxed);
    stats::reset_local();
}

struct LockGuard;

impl LockGuard {
    fn acquire() -> Option<LockGuard> {
        OURS_LOCK
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| LockGuard)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        OURS_LOCK.store(false, Ordering::Release);
    }
}

enum FileState {
    Sealed(SealedFile),
    /// Opened, but its content cannot be used (foreign epoch, corrupt or
    /// plaintext header, no key): every data access fails with this errno.
    /// Opening still succeeds, so that PostgreSQL's fsync pass at startup
    /// and unlink-after-open keep working.
    Poisoned(c_int),
}

struct OpenFile {
    class: ArtifactClass,
    state: FileState,
    /// Physical length cache for [`FdIo`]; dropped for shared files at
    /// every call and after any error.
    known_len: Option<u64>,
    /// Logical position for read()/write()/lseek().
    pos: u64,
    /// Opened with O_APPEND: write() goes to the logical end.
    append: bool,
    /// Member of a shared file set: other processes may write it, so no
    /// cached plaintext survives between two calls.
    shared: bool,
    /// Append write-back: bytes written with write() on an O_APPEND fd that
    /// are not sealed yet (at most up to the next block boundary).
    pending: Option<AppendBuf>,
}

/// The not-yet-sealed tail of an append stream (logical-decoding spill
/// files append one small record per write(); sealing the tail block for
/// each would multiply the crypto work ~50x). Flushed at every block
/// boundary, on close, fsync, on any other operation on a covered file in
/// this process, and at process exit.
struct AppendBuf {
    /// Logical offset of data[0].
    start: u64,
    len: usize,
    data: Box<[u8; BLOCK_SIZE]>,
}

impl Drop for AppendBuf {
    fn drop(&mut self) {
        // Plaintext: wipe before the heap reuses it.
        for b in self.data.iter_mut() {
            // SAFETY: a valid &mut u8.
            unsafe { ptr::write_volatile(b, 0) };
        }
    }
}

/// Fds with an unflushed append tail (-1 = free slot).
const MAX_DIRTY: usize = 8;
static DIRTY_FDS: [std::sync::atomic::AtomicI32; MAX_DIRTY] =
    [const { std::sync::atomic::AtomicI32::new(-1) }; MAX_DIRTY];
static DIRTY_COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn mark_dirty(fd: c_int) -> bool {
    for slot in &DIRTY_FDS {
        if slot.load(Ordering::Relaxed) == fd {
            return true;
        }
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

fn clear_dirty(fd: c_int) {
    for slot in &DIRTY_FDS {
        if slot
            .compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            DIRTY_COUNT.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Seal and write `file`'s pending append tail.
fn flush_pending(fd: c_int, file: &mut OpenFile) -> Result<(), Errno> {
    let Some(p) = file.pending.take() else {
        return Ok(());
    };
    clear_dirty(fd);
    if p.len == 0 {
        return Ok(());
    }
    let (s, mut io) = parts(file, fd)?;
    s.write_at(&mut io, &mut ProcessNonces, &p.data[..p.len], p.start)?;
    Ok(())
}

/// Flush every dirty append tail of this process (lock held by the caller;
/// `skip` is the file the caller already borrows).
fn flush_all_dirty(skip: *mut OpenFile) -> Result<(), Errno> {
    if DIRTY_COUNT.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let mut result = Ok(());
    for slot in &DIRTY_FDS {
        let fd = slot.load(Ordering::Relaxed);
        if fd < 0 {
            continue;
        }
        let file = lookup(fd);
        if file.is_null() {
            clear_dirty(fd);
            continue;
        }
        if file == skip {
            continue;
        }
        // SAFETY: a live table entry, not otherwise borrowed (skip), lock held.
        if let Err(e) = flush_pending(fd, unsafe { &mut *file }) {
            result = Err(e);
        }
    }
    result
}

/// Seal every pending append tail before a path-level operation on a
/// covered file (open, stat, truncate) can observe its size or content.
fn flush_all_now() -> Result<(), Errno> {
    if DIRTY_COUNT.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let Some(_guard) = LockGuard::acquire() else {
        return Err(Errno(libc::EBUSY));
    };
    flush_all_dirty(ptr::null_mut())
}

/// Before `stat` of a covered path reports its size: seal pending tails.
/// One relaxed load when nothing is pending (the usual case).
fn flush_before_path_op(path: *const c_char) {
    if DIRTY_COUNT.load(Ordering::Relaxed) != 0 && covered_class(path).is_some() {
        let _ = flush_all_now();
    }
}

extern "C" fn flush_all_at_exit() {
    if let Some(_guard) = LockGuard::acquire() {
        let _ = flush_all_dirty(ptr::null_mut());
    }
    stats::fold();
}

#[inline(always)]
fn lookup(fd: c_int) -> *mut OpenFile {
    if fd < 0 || fd as usize >= MAX_TRACKED_FDS {
        return ptr::null_mut();
    }
    FD_TABLE[fd as usize].load(Ordering::Relaxed)
}

/// Run `f` on our file with the process lock held; -1/errno on failure.
/// Any pending append tail of this process is sealed first, so that every
/// read, size query or positional write sees all bytes written so far.
fn with_file<R>(
    fd: c_int,
    file: *mut OpenFile,
    fail: R,
    f: impl FnOnce(&mut OpenFile) -> Result<R, Errno>,
) -> R {
    with_file_mode(fd, file, fail, true, f)
}

fn with_file_mode<R>(
    fd: c_int,
    file: *mut OpenFile,
    fail: R,
    flush_own: bool,
    f: impl FnOnce(&mut OpenFile) -> Result<R, Errno>,
) -> R {
    let Some(_guard) = LockGuard::acquire() else {
        set_errno(libc::EBUSY);
        return fail;
    };
    if let Err(Errno(e)) = flush_all_dirty(file) {
        set_errno(e);
        return fail;
    }
    // SAFETY: the pointer came from FD_TABLE, which holds a live Box until
    // close() removes it, and OURS_LOCK gives us exclusive access.
    let file = unsafe { &mut *file };
    if flush_own {
        if let Err(Errno(e)) = flush_pending(fd, file) {
            set_errno(e);
            return fail;
        }
    }
    if file.shared {
        // Other processes may write a file-set member: no cached plaintext,
        // no cached length.
        file.known_len = None;
        if let FileState::Sealed(s) = &mut file.state {
            s.invalidate_cache();
            s.forget_versions();
        }
    }
    let class = file.class;
    let file_ptr: *mut OpenFile = file;
    // Nothing may unwind into C: a bug in our code becomes EIO, not a crash.
    let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(file))) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(Errno(e))) => Err(e),
        Err(_) => Err(libc::EIO),
    };
    stats::tick();
    match result {
        Ok(r) => r,
        Err(e) => {
            // After a failure the physical length is unknown (a write may
            // have been partial).
            // SAFETY: the closure's borrow has ended; the entry is live.
            unsafe { (*file_ptr).known_len = None };
            // EIO is what authentication failures and foreign epochs become.
            let counter = if e == libc::EIO {
                Counter::AuthFailures
            } else {
                Counter::IoErrors
            };
            stats::add(class, counter, 1);
            set_errno(e);
            fail
        }
    }
}

/// The sealed file and a physical I/O handle sharing its length cache.
fn parts(file: &mut OpenFile, fd: c_int) -> Result<(&mut SealedFile, FdIo<'_>), Errno> {
    let OpenFile {
        state, known_len, ..
    } = file;
    match state {
        FileState::Sealed(s) => Ok((s, FdIo { fd, len: known_len })),
        FileState::Poisoned(e) => Err(Errno(*e)),
    }
}

// ---------------------------------------------------------------------------
// Installation.

/// Resolve the real functions, remember the configuration, and patch every
/// GOT slot of the executable that imports one of the shimmed functions.
/// Called once in the postmaster, before any child exists.
pub fn install(config: Config) -> Result<PatchReport, InterposeError> {
    let real = RealFns::resolve()?;
    stats::init_shared()?;
    if REAL.set(real).is_err() || CONFIG.set(config).is_err() {
        return Err(InterposeError::InvalidRequest {
            symbol: "*".into(),
            reason: "interposition is already installed in this process".into(),
        });
    }
    // SAFETY: registering a plain C function as a fork child handler.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    if rc != 0 {
        return Err(InterposeError::Unsupported("pthread_atfork failed"));
    }
    // PostgreSQL processes leave through exit(): seal pending append tails.
    // SAFETY: registering a plain C function.
    if unsafe { libc::atexit(flush_all_at_exit) } != 0 {
        return Err(InterposeError::Unsupported("atexit failed"));
    }
    let requests = shim_table();
    let report = got::patch_executable(&requests)?;
    got::verify(&report)?;
    Ok(report)
}

/// Every symbol we interpose, with its shim. 64-bit aliases share a shim:
/// on 64-bit Linux `off_t` is 64 bits, so `pread64` and `pread` are the same
/// function. Symbols the executable does not import are simply absent.
pub fn shim_table() -> Vec<(&'static str, usize)> {
    vec![
        ("open", shim_open as *const () as usize),
        ("open64", shim_open as *const () as usize),
        ("openat", shim_openat as *const () as usize),
        ("openat64", shim_openat as *const () as usize),
        ("close", shim_close as *const () as usize),
        ("read", shim_read as *const () as usize),
        ("__read_chk", shim_read_chk as *const () as usize),
        ("write", shim_write as *const () as usize),
        ("pread", shim_pread as *const () as usize),
        ("pread64", shim_pread as *const () as usize),
        ("pwrite", shim_pwrite as *const () as usize),
        ("pwrite64", shim_pwrite as *const () as usize),
        ("preadv", shim_preadv as *const () as usize),
        ("preadv64", shim_preadv as *const () as usize),
        ("pwritev", shim_pwritev as *const () as usize),
        ("pwritev64", shim_pwritev as *const () as usize),
        ("lseek", shim_lseek as *const () as usize),
        ("lseek64", shim_lseek as *const () as usize),
        ("ftruncate", shim_ftruncate as *const () as usize),
        ("ftruncate64", shim_ftruncate as *const () as usize),
        ("truncate", shim_truncate as *const () as usize),
        ("truncate64", shim_truncate as *const () as usize),
        ("stat", shim_stat as *const () as usize),
        ("stat64", shim_stat as *const () as usize),
        ("lstat", shim_lstat as *const () as usize),
        ("lstat64", shim_lstat as *const () as usize),
        ("fstat", shim_fstat as *const () as usize),
        ("fstat64", shim_fstat as *const () as usize),
        (
            "posix_fallocate",
            shim_posix_fallocate as *const () as usize,
        ),
        (
            "posix_fallocate64",
            shim_posix_fallocate as *const () as usize,
        ),
        ("dup", shim_dup as *const () as usize),
        ("dup2", shim_dup2 as *const () as usize),
        ("fsync", shim_fsync as *const () as usize),
        ("fdatasync", shim_fdatasync as *const () as usize),
    ]
}

/// The class of `path` if it is covered and enabled.
#[inline]
fn covered_class(path: *const c_char) -> Option<ArtifactClass> {
    let bits = ENABLED_CLASSES.load(Ordering::Relaxed);
    if bits == 0 || path.is_null() {
        return None;
    }
    let config = CONFIG.get()?;
    // SAFETY: libc callers pass a NUL-terminated path.
    let path = unsafe { CStr::from_ptr(path) }.to_bytes();
    let class = classify(path, &config.data_dir)?;
    (bits & class_bit(class) != 0).then_some(class)
}

fn is_fileset_member(path: *const c_char) -> bool {
    // SAFETY: as in covered_class.
    let path = unsafe { CStr::from_ptr(path) }.to_bytes();
    path.windows(9).any(|w| w == b".fileset/")
}

// ---------------------------------------------------------------------------
// Path shims.

/// # Safety
/// libc `open` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: forwarded from our caller under the same contract.
    unsafe { open_common(libc::AT_FDCWD, path, flags, mode, false) }
}

/// # Safety
/// libc `openat` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    // SAFETY: forwarded from our caller under the same contract.
    unsafe { open_common(dirfd, path, flags, mode, true) }
}

unsafe fn real_open(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
    at: bool,
) -> c_int {
    // SAFETY: the caller's path and flags, to the real function.
    unsafe {
        if at {
            (real().openat)(dirfd, path, flags, mode)
        } else {
            (real().open)(path, flags, mode)
        }
    }
}

unsafe fn open_common(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
    at: bool,
) -> c_int {
    // A relative path under another directory fd cannot be classified;
    // PostgreSQL never opens covered files that way.
    let relative_to_other_dir = at && dirfd != libc::AT_FDCWD && {
        // SAFETY: non-null checked by the short-circuit in covered_class; here
        // we only peek at the first byte of a NUL-terminated string.
        !path.is_null() && unsafe { *path } != b'/' as c_char
    };
    let class = if relative_to_other_dir {
        None
    } else {
        covered_class(path)
    };
    let Some(class) = class else {
        // SAFETY: pass-through.
        return unsafe { real_open(dirfd, path, flags, mode, at) };
    };
    if let Err(Errno(e)) = flush_all_now() {
        set_errno(e);
        return -1;
    }
    // Ours. We need to read what we write (headers, read-modify-write), we
    // place every write ourselves (O_APPEND would make the kernel ignore
    // pwrite offsets), and O_DIRECT's alignment rules don't fit the layout.
    let append = flags & libc::O_APPEND != 0;
    let mut real_flags = flags & !(libc::O_APPEND | libc::O_DIRECT);
    if real_flags & libc::O_ACCMODE == libc::O_WRONLY {
        real_flags = (real_flags & !libc::O_ACCMODE) | libc::O_RDWR;
    }
    // SAFETY: the caller's path with adjusted flags.
    let fd = unsafe { real_open(dirfd, path, real_flags, mode, at) };
    if fd < 0 {
        return fd;
    }
    // Directories and anything else that is not a regular file: untracked.
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: st is a valid out-pointer.
    if unsafe { (real().fstat)(fd, st.as_mut_ptr()) } != 0 {
        let e = errno();
        // SAFETY: closing the fd we just opened.
        unsafe { (real().close)(fd) };
        set_errno(e);
        return -1;
    }
    // SAFETY: fstat succeeded.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return fd;
    }
    if fd as usize >= MAX_TRACKED_FDS {
        // SAFETY: closing the fd we just opened.
        unsafe { (real().close)(fd) };
        set_errno(libc::EMFILE);
        return -1;
    }
    let state = open_state(fd, st.st_size as u64);
    stats::add(class, Counter::FilesOpened, 1);
    match state {
        FileState::Sealed(_) if st.st_size == 0 => stats::add(class, Counter::FilesCreated, 1),
        FileState::Sealed(_) => {}
        FileState::Poisoned(libc::EIO) => stats::add(class, Counter::AuthFailures, 1),
        FileState::Poisoned(_) => stats::add(class, Counter::IoErrors, 1),
    }
    let shared = is_fileset_member(path);
    let file = Box::new(OpenFile {
        class,
        state,
        pos: 0,
        append,
        shared,
        pending: None,
        // fstat above ran after any O_TRUNC; a private file changes size
        // only through this process.
        known_len: (!shared).then_some(st.st_size as u64),
    });
    let old = FD_TABLE[fd as usize].swap(Box::into_raw(file), Ordering::Relaxed);
    if !old.is_null() {
        // A stale entry for a number the kernel reused (closed behind our
        // back, e.g. by dup2): drop it, never let it describe the new file.
        // SAFETY: entries are Boxes we leaked; this one is now unreachable.
        drop(unsafe { Box::from_raw(old) });
    }
    fd
}

fn open_state(fd: c_int, physical_len: u64) -> FileState {
    let Some(config) = CONFIG.get() else {
        return FileState::Poisoned(libc::EIO);
    };
    let page = config.key_page;
    let Some(key) = page.epoch_key() else {
        return FileState::Poisoned(libc::EIO);
    };
    let epoch_id = page.epoch_id();
    let mut len = Some(physical_len);
    let mut io = FdIo { fd, len: &mut len };
    let opened = if physical_len == 0 {
        // New (or O_TRUNC'd) file: its header is written by the first write,
        // so a read-only open never writes.
        let Ok(file_id) = os_random::<16>() else {
            return FileState::Poisoned(libc::EIO);
        };
        if file_id == [0; 16] {
            return FileState::Poisoned(libc::EIO); // never happens (2^-128)
        }
        SealedFile::open_or_init(&mut io, key, &epoch_id, &file_id)
    } else {
        SealedFile::open(&mut io, key, &epoch_id)
    };
    match opened {
        Ok(s) => FileState::Sealed(s),
        Err(Errno(e)) => FileState::Poisoned(e),
    }
}

/// # Safety
/// libc `stat` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_stat(path: *const c_char, buf: *mut libc::stat) -> c_int {
    flush_before_path_op(path);
    // SAFETY: pass-through with the caller's arguments.
    let rc = unsafe { (real().stat)(path, buf) };
    // SAFETY: rc == 0 means buf was filled.
    unsafe { fix_path_stat(rc, path, buf) }
}

/// # Safety
/// libc `lstat` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_lstat(path: *const c_char, buf: *mut libc::stat) -> c_int {
    flush_before_path_op(path);
    // SAFETY: pass-through with the caller's arguments.
    let rc = unsafe { (real().lstat)(path, buf) };
    // SAFETY: rc == 0 means buf was filled.
    unsafe { fix_path_stat(rc, path, buf) }
}

/// Report the logical size of a covered regular file (a pure function of
/// the physical size; no need to open it).
unsafe fn fix_path_stat(rc: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int {
    if rc != 0 || buf.is_null() || covered_class(path).is_none() {
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
/// libc `truncate` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_truncate(path: *const c_char, len: off_t) -> c_int {
    if covered_class(path).is_none() {
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
    unsafe { shim_close(fd) };
    set_errno(e);
    rc
}

// ---------------------------------------------------------------------------
// fd shims.

/// # Safety
/// libc `close` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_close(fd: c_int) -> c_int {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().close)(fd) };
    }
    // Seal a pending append tail; report its failure (ENOSPC...) as close's.
    let flushed = with_file(fd, file, -1, |_| Ok(0));
    let flush_errno = errno();
    let old = FD_TABLE[fd as usize].swap(ptr::null_mut(), Ordering::Relaxed);
    if !old.is_null() {
        clear_dirty(fd);
        // SAFETY: a Box we leaked at open; no longer reachable.
        drop(unsafe { Box::from_raw(old) });
    }
    stats::fold();
    // SAFETY: pass-through.
    let rc = unsafe { (real().close)(fd) };
    if flushed != 0 {
        set_errno(flush_errno);
        return -1;
    }
    rc
}

/// Seal the pending append tail of `fd` if it is ours (errno set on failure).
fn seal_pending(fd: c_int) -> bool {
    let file = lookup(fd);
    file.is_null() || with_file(fd, file, -1, |_| Ok(0)) == 0
}

/// # Safety
/// libc `fsync` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_fsync(fd: c_int) -> c_int {
    if !seal_pending(fd) {
        return -1;
    }
    // SAFETY: pass-through.
    unsafe { (real().fsync)(fd) }
}

/// # Safety
/// libc `fdatasync` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_fdatasync(fd: c_int) -> c_int {
    if !seal_pending(fd) {
        return -1;
    }
    // SAFETY: pass-through.
    unsafe { (real().fdatasync)(fd) }
}

/// # Safety
/// libc `pread` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_pread(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().pread)(fd, buf, n, off) };
    }
    if off < 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller guarantees buf is writable for n bytes.
    let dst = unsafe { slice_mut(buf, n) };
    with_file(fd, file, -1, |f| {
        let class = f.class;
        let (s, mut io) = parts(f, fd)?;
        let got = s.read_at(&mut io, dst, off as u64)?;
        stats::add(class, Counter::BytesOpened, got as u64);
        Ok(got as ssize_t)
    })
}

/// # Safety
/// libc `pwrite` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_pwrite(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    off: off_t,
) -> ssize_t {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().pwrite)(fd, buf, n, off) };
    }
    if off < 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller guarantees buf is readable for n bytes.
    let src = unsafe { slice(buf, n) };
    with_file(fd, file, -1, |f| {
        let class = f.class;
        let (s, mut io) = parts(f, fd)?;
        let wrote = s.write_at(&mut io, &mut ProcessNonces, src, off as u64)?;
        stats::add(class, Counter::BytesSealed, wrote as u64);
        Ok(wrote as ssize_t)
    })
}

/// # Safety
/// libc `read` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().read)(fd, buf, n) };
    }
    // SAFETY: the caller guarantees buf is writable for n bytes.
    let dst = unsafe { slice_mut(buf, n) };
    with_file(fd, file, -1, |f| {
        let pos = f.pos;
        let (s, mut io) = parts(f, fd)?;
        let got = s.read_at(&mut io, dst, pos)?;
        f.pos = pos + got as u64;
        stats::add(f.class, Counter::BytesOpened, got as u64);
        Ok(got as ssize_t)
    })
}

/// # Safety
/// glibc `__read_chk` contract (fortified `read`).
#[no_mangle]
pub unsafe extern "C" fn shim_read_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
) -> ssize_t {
    let file = lookup(fd);
    if file.is_null() || n > buflen {
        // The real one also reports the overflow (it aborts, as fortify does).
        // SAFETY: pass-through.
        return unsafe { (real().read_chk)(fd, buf, n, buflen) };
    }
    // SAFETY: same contract as read.
    unsafe { shim_read(fd, buf, n) }
}

/// # Safety
/// libc `write` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().write)(fd, buf, n) };
    }
    // SAFETY: the caller guarantees buf is readable for n bytes.
    let src = unsafe { slice(buf, n) };
    let append = {
        // SAFETY: a live table entry; only a plain bool is read.
        unsafe { (*file).append }
    };
    if append {
        return with_file_mode(fd, file, -1, false, |f| append_buffered(fd, f, src));
    }
    with_file(fd, file, -1, |f| {
        let pos = f.pos;
        let (s, mut io) = parts(f, fd)?;
        let wrote = s.write_at(&mut io, &mut ProcessNonces, src, pos)?;
        f.pos = pos + wrote as u64;
        stats::add(f.class, Counter::BytesSealed, wrote as u64);
        Ok(wrote as ssize_t)
    })
}

/// write() on an O_APPEND fd: collect bytes up to the next block boundary,
/// seal whole blocks as they fill.
fn append_buffered(fd: c_int, f: &mut OpenFile, mut src: &[u8]) -> Result<ssize_t, Errno> {
    let n = src.len();
    if f.pending.is_none() {
        let start = {
            let (s, mut io) = parts(f, fd)?;
            s.len(&mut io)?
        };
        f.pending = Some(AppendBuf {
            start,
            len: 0,
            data: Box::new([0u8; BLOCK_SIZE]),
        });
    }
    while !src.is_empty() {
        let Some(p) = f.pending.as_mut() else {
            return Err(Errno(libc::EIO));
        };
        let end = p.start + p.len as u64;
        let room = BLOCK_SIZE - (end % BLOCK_SIZE as u64) as usize;
        let take = room.min(src.len());
        p.data[p.len..p.len + take].copy_from_slice(&src[..take]);
        p.len += take;
        src = &src[take..];
        if take == room {
            // Reached a block boundary: seal what we hold and go on.
            let (start, len) = (p.start, p.len);
            let data = std::mem::replace(&mut p.data, Box::new([0u8; BLOCK_SIZE]));
            p.start = start + len as u64;
            p.len = 0;
            let (s, mut io) = parts(f, fd)?;
            let res = s.write_at(&mut io, &mut ProcessNonces, &data[..len], start);
            drop(AppendBuf { start, len, data });
            res?;
        }
    }
    let Some(p) = f.pending.as_ref() else {
        return Err(Errno(libc::EIO));
    };
    f.pos = p.start + p.len as u64;
    stats::add(f.class, Counter::BytesSealed, n as u64);
    if p.len > 0 && !mark_dirty(fd) {
        // No room to track it: seal now rather than lose it at exit.
        flush_pending(fd, f)?;
    }
    Ok(n as ssize_t)
}

/// The iovec array of a vectored call, or `None` for invalid arguments.
///
/// # Safety
/// `iov` must point to `iovcnt` valid entries when it is non-null.
unsafe fn iovecs<'a>(iov: *const iovec, iovcnt: c_int, off: off_t) -> Option<&'a [iovec]> {
    if off < 0 || iovcnt < 0 || iov.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    Some(unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) })
}

/// # Safety
/// libc `preadv` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_preadv(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    off: off_t,
) -> ssize_t {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().preadv)(fd, iov, iovcnt, off) };
    }
    // SAFETY: the caller's iovec array, under the preadv contract.
    let Some(iovs) = (unsafe { iovecs(iov, iovcnt, off) }) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    with_file(fd, file, -1, |f| {
        let class = f.class;
        let (s, mut io) = parts(f, fd)?;
        let mut total = 0u64;
        for v in iovs {
            // SAFETY: each iovec describes writable caller memory.
            let dst = unsafe { slice_mut(v.iov_base, v.iov_len) };
            let got = s.read_at(&mut io, dst, off as u64 + total)?;
            total += got as u64;
            stats::add(class, Counter::BytesOpened, got as u64);
            if got < v.iov_len {
                break;
            }
        }
        Ok(total as ssize_t)
    })
}

/// # Safety
/// libc `pwritev` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_pwritev(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    off: off_t,
) -> ssize_t {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().pwritev)(fd, iov, iovcnt, off) };
    }
    // SAFETY: the caller's iovec array, under the pwritev contract.
    let Some(iovs) = (unsafe { iovecs(iov, iovcnt, off) }) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    with_file(fd, file, -1, |f| {
        let class = f.class;
        let (s, mut io) = parts(f, fd)?;
        let mut total = 0u64;
        for v in iovs {
            // SAFETY: each iovec describes readable caller memory (possibly
            // a shared static zero page: we never encrypt in place).
            let src = unsafe { slice(v.iov_base, v.iov_len) };
            let wrote = s.write_at(&mut io, &mut ProcessNonces, src, off as u64 + total)?;
            total += wrote as u64;
            stats::add(class, Counter::BytesSealed, wrote as u64);
        }
        Ok(total as ssize_t)
    })
}

/// # Safety
/// libc `lseek` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_lseek(fd: c_int, off: off_t, whence: c_int) -> off_t {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().lseek)(fd, off, whence) };
    }
    with_file(fd, file, -1, |f| {
        let base: i128 = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => f.pos as i128,
            libc::SEEK_END => {
                let (s, mut io) = parts(f, fd)?;
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
#[no_mangle]
pub unsafe extern "C" fn shim_ftruncate(fd: c_int, len: off_t) -> c_int {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().ftruncate)(fd, len) };
    }
    if len < 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    with_file(fd, file, -1, |f| {
        let (s, mut io) = parts(f, fd)?;
        s.set_len(&mut io, &mut ProcessNonces, len as u64)?;
        Ok(0)
    })
}

/// # Safety
/// libc `fstat` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_fstat(fd: c_int, buf: *mut libc::stat) -> c_int {
    // SAFETY: pass-through with the caller's arguments.
    let rc = unsafe { (real().fstat)(fd, buf) };
    let file = lookup(fd);
    if rc != 0 || file.is_null() || buf.is_null() {
        return rc;
    }
    // SAFETY: the real fstat filled *buf.
    let st = unsafe { &mut *buf };
    with_file(fd, file, -1, |f| {
        if let FileState::Sealed(_) = f.state {
            st.st_size = physical_to_logical_size(st.st_size as u64)? as off_t;
        }
        Ok(0)
    })
}

/// # Safety
/// libc `posix_fallocate` contract (returns an error number, not -1).
#[no_mangle]
pub unsafe extern "C" fn shim_posix_fallocate(fd: c_int, off: off_t, len: off_t) -> c_int {
    let file = lookup(fd);
    if file.is_null() {
        // SAFETY: pass-through.
        return unsafe { (real().posix_fallocate)(fd, off, len) };
    }
    if off < 0 || len <= 0 {
        return libc::EINVAL;
    }
    let saved = errno();
    // Extending writes sealed zero blocks: no holes, and an all-zero
    // physical block never authenticates.
    let rc = with_file(fd, file, -1, |f| {
        let (s, mut io) = parts(f, fd)?;
        let want = (off as u64).saturating_add(len as u64);
        if want > s.len(&mut io)? {
            s.set_len(&mut io, &mut ProcessNonces, want)?;
        }
        Ok(0)
    });
    let result = if rc == 0 { 0 } else { errno() };
    set_errno(saved);
    result
}

/// # Safety
/// libc `dup` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_dup(fd: c_int) -> c_int {
    if !lookup(fd).is_null() {
        // A duplicate would share the file but not our state: its writes
        // would bypass the layout. PostgreSQL never duplicates these fds;
        // refuse rather than risk plaintext.
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: pass-through.
    unsafe { (real().dup)(fd) }
}

/// # Safety
/// libc `dup2` contract.
#[no_mangle]
pub unsafe extern "C" fn shim_dup2(fd: c_int, newfd: c_int) -> c_int {
    if !lookup(fd).is_null() && fd != newfd {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: pass-through.
    let rc = unsafe { (real().dup2)(fd, newfd) };
    if rc >= 0 && fd != newfd && newfd >= 0 && (newfd as usize) < MAX_TRACKED_FDS {
        // The kernel closed whatever newfd was: forget our state for it.
        let old = FD_TABLE[newfd as usize].swap(ptr::null_mut(), Ordering::Relaxed);
        if !old.is_null() {
            // SAFETY: a Box we leaked at open; no longer reachable.
            drop(unsafe { Box::from_raw(old) });
        }
    }
    rc
}

// ---------------------------------------------------------------------------

/// # Safety
/// `p` must be valid for writes of `n` bytes (or `n == 0`).
unsafe fn slice_mut<'a>(p: *mut c_void, n: size_t) -> &'a mut [u8] {
    if n == 0 || p.is_null() {
        return &mut [];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(p.cast(), n) }
}

/// # Safety
/// `p` must be valid for reads of `n` bytes (or `n == 0`).
unsafe fn slice<'a>(p: *const c_void, n: size_t) -> &'a [u8] {
    if n == 0 || p.is_null() {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(p.cast(), n) }
}

/// How many of our files this process has open (diagnostics and tests).
pub fn open_covered_files() -> usize {
    FD_TABLE
        .iter()
        .filter(|e| !e.load(Ordering::Relaxed).is_null())
        .count()
}

/// Whether this process's symbol table defines `name` (e.g. PostgreSQL's
/// `SubPostmasterMain`, which only EXEC_BACKEND builds have).
pub fn process_defines_symbol(name: &CStr) -> bool {
    // SAFETY: dlsym on the global namespace with a NUL-terminated name.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }.is_null()
}

/// Path of the shared object that contains `addr` (the loaded library file,
/// for attestation), via `dladdr`.
pub fn object_path_of(addr: usize) -> Option<std::path::PathBuf> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads its address argument and fills `info`.
    let rc = unsafe { libc::dladdr(addr as *const c_void, info.as_mut_ptr()) };
    if rc == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded and filled the struct.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    use std::os::unix::ffi::OsStrExt;
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(
        name.to_bytes(),
    )))
}
