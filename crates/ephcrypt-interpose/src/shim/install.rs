//! Configuration, the shim table, the import audit and installation.

use std::ffi::c_int;

use std::sync::OnceLock;

use ephcrypt_got::elf::Executable;
use ephcrypt_got::PatchReport;

use super::audit::{self, AuditError};
use super::{changes, config, fd, nonces, path, pool, process, real, table, wal};
use crate::error::InterposeError;
use crate::{secmem, stats};

/// What [`install`] needs to know.
pub struct Config {
    /// Absolute data directory, no trailing slash.
    pub data_dir: Vec<u8>,
    /// The server submits I/O through liburing (`io_method = io_uring`):
    /// an executable importing liburing is then refused.
    pub io_uring_in_use: bool,
    /// More imports to allow without a shim, each with the reason (empty for
    /// a PostgreSQL server; test binaries list what Rust's std imports).
    pub allow_extra: Vec<(&'static str, &'static str)>,
}

/// What [`install`] did.
#[derive(Debug)]
pub struct InstallReport {
    /// The slots patched.
    pub patch: PatchReport,
    /// Imported names the audit allowed without a shim, with the reason.
    pub allowed: Vec<(String, &'static str)>,
}

/// Every symbol we interpose, with its shim. 64-bit aliases share a shim:
/// on 64-bit Linux `off_t` is 64 bits, so `pread64` and `pread` are the same
/// function. Only the symbols the executable imports are patched.
pub fn shim_table() -> Vec<(&'static str, usize)> {
    macro_rules! entries {
        ($($name:literal => $f:path),* $(,)?) => {
            vec![$(($name, $f as *const () as usize)),*]
        };
    }
    entries![
        "open" => path::shim_open,
        "open64" => path::shim_open,
        "openat" => path::shim_openat,
        "openat64" => path::shim_openat,
        "__open_2" => path::shim_open_2,
        "__open64_2" => path::shim_open_2,
        "__openat_2" => path::shim_openat_2,
        "__openat64_2" => path::shim_openat_2,
        "creat" => path::shim_creat,
        "creat64" => path::shim_creat,
        "stat" => path::shim_stat,
        "stat64" => path::shim_stat,
        "lstat" => path::shim_lstat,
        "lstat64" => path::shim_lstat,
        "fstatat" => path::shim_fstatat,
        "fstatat64" => path::shim_fstatat,
        "statx" => path::shim_statx,
        "truncate" => path::shim_truncate,
        "truncate64" => path::shim_truncate,
        "unlink" => path::shim_unlink,
        "rename" => wal::shim_rename,
        "link" => wal::shim_link,
        "fopen" => path::shim_fopen,
        "fopen64" => path::shim_fopen,
        "freopen" => path::shim_freopen,
        "freopen64" => path::shim_freopen,
        "opendir" => path::shim_opendir,
        "close" => fd::shim_close,
        "read" => fd::shim_read,
        "__read_chk" => fd::shim_read_chk,
        "readv" => fd::shim_readv,
        "pread" => fd::shim_pread,
        "pread64" => fd::shim_pread,
        "__pread_chk" => fd::shim_pread_chk,
        "__pread64_chk" => fd::shim_pread_chk,
        "preadv" => fd::shim_preadv,
        "preadv64" => fd::shim_preadv,
        "preadv2" => fd::shim_preadv2,
        "preadv64v2" => fd::shim_preadv2,
        "write" => fd::shim_write,
        "writev" => fd::shim_writev,
        "pwrite" => fd::shim_pwrite,
        "pwrite64" => fd::shim_pwrite,
        "pwritev" => fd::shim_pwritev,
        "pwritev64" => fd::shim_pwritev,
        "pwritev2" => fd::shim_pwritev2,
        "pwritev64v2" => fd::shim_pwritev2,
        "lseek" => fd::shim_lseek,
        "lseek64" => fd::shim_lseek,
        "ftruncate" => fd::shim_ftruncate,
        "ftruncate64" => fd::shim_ftruncate,
        "fstat" => fd::shim_fstat,
        "fstat64" => fd::shim_fstat,
        "posix_fallocate" => fd::shim_posix_fallocate,
        "posix_fallocate64" => fd::shim_posix_fallocate,
        "fallocate" => fd::shim_fallocate,
        "fallocate64" => fd::shim_fallocate,
        "fsync" => fd::shim_fsync,
        "fdatasync" => fd::shim_fdatasync,
        "dup" => fd::shim_dup,
        "dup2" => fd::shim_dup2,
        "dup3" => fd::shim_dup3,
        "fcntl" => fd::shim_fcntl,
        "fcntl64" => fd::shim_fcntl,
        "mmap" => fd::shim_mmap,
        "mmap64" => fd::shim_mmap,
        "copy_file_range" => fd::shim_copy_file_range,
        "sendfile" => fd::shim_sendfile,
        "sendfile64" => fd::shim_sendfile,
        "splice" => fd::shim_splice,
        "fdopen" => fd::shim_fdopen,
        "socket" => fd::shim_socket,
        "socketpair" => fd::shim_socketpair,
        "accept" => fd::shim_accept,
        "accept4" => fd::shim_accept4,
        "pipe" => fd::shim_pipe,
        "pipe2" => fd::shim_pipe2,
        "epoll_create" => fd::shim_epoll_create,
        "epoll_create1" => fd::shim_epoll_create1,
        "signalfd" => fd::shim_signalfd,
        "eventfd" => fd::shim_eventfd,
        "timerfd_create" => fd::shim_timerfd_create,
        "inotify_init1" => fd::shim_inotify_init1,
        "shm_open" => fd::shim_shm_open,
        "system" => process::shim_system,
        "memfd_create" => fd::shim_memfd_create,
    ]
}

/// The names of [`shim_table`].
pub fn shimmed_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = shim_table().into_iter().map(|(n, _)| n).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Audit `imports` (an executable's imported names) against the shim table
/// and the allowlist.
pub fn audit_imports<S: AsRef<str>>(
    imports: &[S],
    allow_extra: &[(&str, &'static str)],
    io_uring_in_use: bool,
) -> Result<(), AuditError> {
    let names: Vec<&str> = imports.iter().map(AsRef::as_ref).collect();
    audit::audit(&names, &shimmed_names(), allow_extra, io_uring_in_use)
}

extern "C" fn after_fork_in_child() {
    nonces::reseed_after_fork();
    pool::refresh_pid();
    stats::reset_local();
    secmem::protect_in_child();
    crate::walkey::protect_in_child();
}

/// Resolve the real functions, audit the executable's imports, and patch
/// every GOT slot of the executable that imports one of the shimmed
/// functions. Called once in the postmaster, before any child exists. On
/// error nothing is patched.
pub fn install(config: Config) -> Result<InstallReport, InterposeError> {
    real::init()?;
    stats::init_shared()?;
    changes::init_shared()?;
    pool::init_shared()?;
    let exe = Executable::current()?;
    let imports = exe.imported_names();
    audit_imports(&imports, &config.allow_extra, config.io_uring_in_use)?;
    if !config::set_data_dir(config.data_dir) {
        return Err(InterposeError::AlreadyInstalled);
    }
    // SAFETY: registering a plain C function as a fork child handler.
    let rc: c_int = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    if rc != 0 {
        return Err(InterposeError::Unsupported("pthread_atfork failed"));
    }
    // PostgreSQL processes leave through exit(): seal pending append tails.
    // SAFETY: registering a plain C function.
    if unsafe { libc::atexit(table::seal_all_at_exit) } != 0 {
        return Err(InterposeError::Unsupported("atexit failed"));
    }
    let shimmed = shimmed_names();
    let allowed = imports
        .iter()
        .filter_map(
            |n| match audit::verdict_with(n, &shimmed, &config.allow_extra) {
                audit::Verdict::Allowed(why) => Some((n.clone(), why)),
                _ => None,
            },
        )
        .collect();
    let requests: Vec<(&str, usize)> = shim_table()
        .into_iter()
        .filter(|(n, _)| imports.iter().any(|i| i == n))
        .collect();
    let patch = ephcrypt_got::patch_executable(&requests)?;
    ephcrypt_got::verify(&patch)?;
    let _ = INSTALLED.set(patch.clone());
    Ok(InstallReport { patch, allowed })
}

/// What `install` patched in this process (inherited by fork children).
static INSTALLED: OnceLock<PatchReport> = OnceLock::new();

/// Re-read every patched slot: each must still hold its shim. In a lazily
/// bound executable the dynamic linker would rewrite a slot whose PLT stub
/// ran after the patch; this proves that did not happen. Returns the number
/// of slots and how many of them held a lazy-binding stub before patching.
pub fn verify_installed() -> Result<(usize, usize), InterposeError> {
    let report = INSTALLED.get().ok_or(InterposeError::Unsupported(
        "the shims are not installed in this process",
    ))?;
    ephcrypt_got::verify(report)?;
    Ok((report.slot_count(), report.lazy_slots()))
}
