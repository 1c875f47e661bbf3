//! The real libc functions behind the shims, and errno.
//!
//! Each is resolved by name from libc itself at install time
//! ([`ephcrypt_got::resolve_libc`]), never taken from a GOT slot's previous
//! value, which may be a lazy-binding PLT stub that would undo the patch.
//! Inside a shim, every call to an interposed function goes through here:
//! in a test binary whose own GOT is patched, a direct `libc::` call would
//! re-enter the shim.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

use libc::{iovec, mode_t, off_t, size_t, ssize_t, FILE};

use crate::error::InterposeError;

macro_rules! real_fns {
    ($($field:ident = $sym:literal: fn($($arg:ty),*) -> $ret:ty;)*) => {
        /// libc's own definition of every function we interpose.
        pub(crate) struct RealFns {
            $(pub(crate) $field: unsafe extern "C" fn($($arg),*) -> $ret,)*
        }

        impl RealFns {
            fn resolve() -> Result<RealFns, InterposeError> {
                Ok(RealFns {
                    $($field: {
                        let addr = ephcrypt_got::resolve_libc($sym)?;
                        // SAFETY: `addr` is libc's own definition of this
                        // function (checked to lie outside the executable),
                        // whose C prototype is the one spelled out here.
                        unsafe {
                            std::mem::transmute::<usize, unsafe extern "C" fn($($arg),*) -> $ret>(addr)
                        }
                    },)*
                })
            }
        }
    };
}

// Variadic C functions (open, openat, fcntl) are declared with their full
// argument list: on x86_64 and aarch64 Linux the optional argument travels
// in the next integer register either way, and the callee only reads it
// when its flags say it is there.
real_fns! {
    open = c"open": fn(*const c_char, c_int, mode_t) -> c_int;
    openat = c"openat": fn(c_int, *const c_char, c_int, mode_t) -> c_int;
    open_2 = c"__open_2": fn(*const c_char, c_int) -> c_int;
    openat_2 = c"__openat_2": fn(c_int, *const c_char, c_int) -> c_int;
    close = c"close": fn(c_int) -> c_int;
    read = c"read": fn(c_int, *mut c_void, size_t) -> ssize_t;
    read_chk = c"__read_chk": fn(c_int, *mut c_void, size_t, size_t) -> ssize_t;
    readv = c"readv": fn(c_int, *const iovec, c_int) -> ssize_t;
    write = c"write": fn(c_int, *const c_void, size_t) -> ssize_t;
    writev = c"writev": fn(c_int, *const iovec, c_int) -> ssize_t;
    pread = c"pread64": fn(c_int, *mut c_void, size_t, off_t) -> ssize_t;
    pread_chk = c"__pread64_chk": fn(c_int, *mut c_void, size_t, off_t, size_t) -> ssize_t;
    pwrite = c"pwrite64": fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
    preadv = c"preadv64": fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
    pwritev = c"pwritev64": fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
    preadv2 = c"preadv64v2": fn(c_int, *const iovec, c_int, off_t, c_int) -> ssize_t;
    pwritev2 = c"pwritev64v2": fn(c_int, *const iovec, c_int, off_t, c_int) -> ssize_t;
    lseek = c"lseek64": fn(c_int, off_t, c_int) -> off_t;
    ftruncate = c"ftruncate64": fn(c_int, off_t) -> c_int;
    truncate = c"truncate64": fn(*const c_char, off_t) -> c_int;
    stat = c"stat64": fn(*const c_char, *mut libc::stat) -> c_int;
    lstat = c"lstat64": fn(*const c_char, *mut libc::stat) -> c_int;
    fstat = c"fstat64": fn(c_int, *mut libc::stat) -> c_int;
    fstatat = c"fstatat64": fn(c_int, *const c_char, *mut libc::stat, c_int) -> c_int;
    statx = c"statx": fn(c_int, *const c_char, c_int, c_uint, *mut libc::statx) -> c_int;
    posix_fallocate = c"posix_fallocate64": fn(c_int, off_t, off_t) -> c_int;
    fallocate = c"fallocate64": fn(c_int, c_int, off_t, off_t) -> c_int;
    fsync = c"fsync": fn(c_int) -> c_int;
    fdatasync = c"fdatasync": fn(c_int) -> c_int;
    dup = c"dup": fn(c_int) -> c_int;
    dup2 = c"dup2": fn(c_int, c_int) -> c_int;
    dup3 = c"dup3": fn(c_int, c_int, c_int) -> c_int;
    fcntl = c"fcntl64": fn(c_int, c_int, usize) -> c_int;
    mmap = c"mmap64": fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void;
    copy_file_range = c"copy_file_range": fn(c_int, *mut off_t, c_int, *mut off_t, size_t, c_uint) -> ssize_t;
    sendfile = c"sendfile64": fn(c_int, c_int, *mut off_t, size_t) -> ssize_t;
    splice = c"splice": fn(c_int, *mut off_t, c_int, *mut off_t, size_t, c_uint) -> ssize_t;
    unlink = c"unlink": fn(*const c_char) -> c_int;
    rename = c"rename": fn(*const c_char, *const c_char) -> c_int;
    link = c"link": fn(*const c_char, *const c_char) -> c_int;
    socket = c"socket": fn(c_int, c_int, c_int) -> c_int;
    socketpair = c"socketpair": fn(c_int, c_int, c_int, *mut c_int) -> c_int;
    accept = c"accept": fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int;
    accept4 = c"accept4": fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t, c_int) -> c_int;
    pipe = c"pipe": fn(*mut c_int) -> c_int;
    pipe2 = c"pipe2": fn(*mut c_int, c_int) -> c_int;
    epoll_create = c"epoll_create": fn(c_int) -> c_int;
    epoll_create1 = c"epoll_create1": fn(c_int) -> c_int;
    signalfd = c"signalfd": fn(c_int, *const libc::sigset_t, c_int) -> c_int;
    eventfd = c"eventfd": fn(c_uint, c_int) -> c_int;
    timerfd_create = c"timerfd_create": fn(c_int, c_int) -> c_int;
    inotify_init1 = c"inotify_init1": fn(c_int) -> c_int;
    shm_open = c"shm_open": fn(*const c_char, c_int, mode_t) -> c_int;
    system = c"system": fn(*const c_char) -> c_int;
    memfd_create = c"memfd_create": fn(*const c_char, c_uint) -> c_int;
    fopen = c"fopen64": fn(*const c_char, *const c_char) -> *mut FILE;
    freopen = c"freopen64": fn(*const c_char, *const c_char, *mut FILE) -> *mut FILE;
    fdopen = c"fdopen": fn(c_int, *const c_char) -> *mut FILE;
    opendir = c"opendir": fn(*const c_char) -> *mut libc::DIR;
}

static REAL: OnceLock<RealFns> = OnceLock::new();

/// Resolve every real function (once; later calls are no-ops).
pub(crate) fn init() -> Result<(), InterposeError> {
    if REAL.get().is_some() {
        return Ok(());
    }
    let fns = RealFns::resolve()?;
    let _ = REAL.set(fns);
    Ok(())
}

/// The real functions. Shims are only reachable through slots patched
/// after [`init`] succeeded.
#[inline(always)]
pub(crate) fn real() -> &'static RealFns {
    match REAL.get() {
        Some(r) => r,
        None => abort_unreachable(),
    }
}

#[cold]
fn abort_unreachable() -> ! {
    // Not a panic: nothing may unwind across the C boundary.
    std::process::abort()
}

/// An errno value, as the error type of everything below the shims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub c_int);

impl From<ephcrypt_format::FormatError> for Errno {
    fn from(e: ephcrypt_format::FormatError) -> Self {
        use ephcrypt_format::FormatError as F;
        Errno(match e {
            F::OffsetTooLarge => libc::EFBIG,
            F::BufferTooSmall { .. } | F::InvalidBlockLength { .. } => libc::EINVAL,
            // Authentication, foreign epoch, corrupt sizes, RNG or crypto
            // failures: the bytes cannot be trusted or produced.
            _ => libc::EIO,
        })
    }
}

pub(crate) fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

pub(crate) fn errno() -> c_int {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}
