//! The import audit: every libc function of the executable that can move
//! file data or hand out an fd must be shimmed, or be on an explicit
//! allowlist of calls that cannot leak a covered file's plaintext, or the
//! server refuses to start (fail closed). A binary built with other options
//! or a later major that imports, say, `pwritev2` or `aio_write` is refused
//! with the symbol's name instead of silently writing plaintext.
//!
//! Pure policy over symbol names; the catalog is checked for completeness
//! against glibc's own exports by a test.
#![forbid(unsafe_code)]

/// What the audit makes of one imported symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Interposed: its slots are patched.
    Shimmed,
    /// Cannot move a covered file's bytes around the layout (the reason).
    Allowed(&'static str),
    /// Can, and is not handled: the server must not start with it.
    Refused(&'static str),
    /// liburing: submits I/O without libc calls; acceptable only while
    /// `io_method` does not use it (the caller checks).
    IoUring,
    /// Not a file-data or fd function: nothing to decide.
    Irrelevant,
}

const STDIO: &str =
    "stdio on a FILE: fopen/freopen refuse covered paths for writing, fdopen refuses our fds";
const DIRENT: &str = "directory entries, no file data";
const PATH_META: &str = "path or metadata operation, no file data (a covered file moved under another name no longer authenticates; a plaintext file moved onto a WAL name does not open; rename and link are shimmed for the wal class)";
const HINT: &str = "cache or sync hint, moves no data";
const SOCKET: &str = "socket or pipe I/O, never a covered file";
const MEMORY: &str = "memory only, no file";
const PROCESS: &str = "another program: not interposed, out of scope (docs/THREAT_MODEL.md)";
const DLOPEN: &str =
    "another shared object calls libc through its own GOT: out of scope (docs/THREAT_MODEL.md)";
const LOG: &str = "syslog socket, no file data";
const FD_CREATOR: &str = "hands out fd numbers inside libc without clearing our stale entries";
const UNHANDLED_IO: &str = "moves file data in a way the shims do not handle";
const SIZES: &str = "reports physical sizes through an interface the shims do not correct";

/// Allowlisted symbols and why each cannot leak.
const ALLOWED: &[(&str, &str)] = &[
    // stdio on streams.
    ("fread", STDIO),
    ("fread_unlocked", STDIO),
    ("fwrite", STDIO),
    ("fwrite_unlocked", STDIO),
    ("fgets", STDIO),
    ("fputs", STDIO),
    ("fgetc", STDIO),
    ("fputc", STDIO),
    ("getc", STDIO),
    ("putc", STDIO),
    ("ungetc", STDIO),
    ("getline", STDIO),
    ("getdelim", STDIO),
    ("fprintf", STDIO),
    ("__fprintf_chk", STDIO),
    ("vfprintf", STDIO),
    ("__vfprintf_chk", STDIO),
    ("fscanf", STDIO),
    ("__isoc99_fscanf", STDIO),
    ("fseek", STDIO),
    ("fseeko", STDIO),
    ("fseeko64", STDIO),
    ("ftell", STDIO),
    ("ftello", STDIO),
    ("ftello64", STDIO),
    ("fflush", STDIO),
    ("fclose", STDIO),
    ("feof", STDIO),
    ("ferror", STDIO),
    ("clearerr", STDIO),
    ("fileno", STDIO),
    ("setvbuf", STDIO),
    ("__fread_chk", STDIO),
    ("__fread_unlocked_chk", STDIO),
    ("__freadable", STDIO),
    ("__freading", STDIO),
    ("__fseeko64", STDIO),
    ("fmemopen", MEMORY),
    ("open_memstream", MEMORY),
    ("fopencookie", MEMORY),
    // Directories.
    ("readdir", DIRENT),
    ("readdir64", DIRENT),
    ("readdir_r", DIRENT),
    ("closedir", DIRENT),
    ("rewinddir", DIRENT),
    ("scandir", DIRENT),
    ("fdopendir", DIRENT),
    ("dirfd", DIRENT),
    ("getdents64", DIRENT),
    ("seekdir", DIRENT),
    ("telldir", DIRENT),
    ("fts_open", DIRENT),
    ("fts64_open", DIRENT),
    ("fts_read", DIRENT),
    ("fts64_read", DIRENT),
    // Paths and metadata.
    ("linkat", PATH_META),
    ("symlink", PATH_META),
    ("symlinkat", PATH_META),
    ("renameat", PATH_META),
    ("renameat2", PATH_META),
    ("unlinkat", PATH_META),
    ("rmdir", PATH_META),
    ("mkdir", PATH_META),
    ("mkdirat", PATH_META),
    ("readlink", PATH_META),
    ("readlinkat", PATH_META),
    ("__readlink_chk", PATH_META),
    ("access", PATH_META),
    ("faccessat", PATH_META),
    ("chmod", PATH_META),
    ("fchmod", PATH_META),
    ("chown", PATH_META),
    ("fchown", PATH_META),
    ("utime", PATH_META),
    ("utimes", PATH_META),
    ("utimensat", PATH_META),
    ("futimens", PATH_META),
    ("realpath", PATH_META),
    ("shm_unlink", PATH_META),
    // Hints and sync.
    ("posix_fadvise", HINT),
    ("posix_fadvise64", HINT),
    ("sync_file_range", HINT),
    ("syncfs", HINT),
    ("sync", HINT),
    ("readahead", HINT),
    ("flock", HINT),
    ("lockf", HINT),
    ("lockf64", HINT),
    ("msync", MEMORY),
    ("munmap", MEMORY),
    ("mremap", MEMORY),
    ("mprotect", MEMORY),
    ("madvise", MEMORY),
    ("posix_madvise", MEMORY),
    ("mlock", MEMORY),
    ("munlock", MEMORY),
    ("process_vm_readv", MEMORY),
    ("process_vm_writev", MEMORY),
    // Sockets and pipes.
    ("recv", SOCKET),
    ("recvfrom", SOCKET),
    ("recvmsg", SOCKET),
    ("send", SOCKET),
    ("sendto", SOCKET),
    ("sendmsg", SOCKET),
    ("tee", SOCKET),
    ("vmsplice", SOCKET),
    ("eventfd_read", SOCKET),
    ("eventfd_write", SOCKET),
    // Other programs and objects.
    ("popen", PROCESS),
    ("pclose", PROCESS),
    ("posix_spawn", PROCESS),
    ("posix_spawnp", PROCESS),
    ("execv", PROCESS),
    ("execve", PROCESS),
    ("execvp", PROCESS),
    ("execl", PROCESS),
    ("dlopen", DLOPEN),
    ("dlmopen", DLOPEN),
    ("openlog", LOG),
    ("closelog", LOG),
];

/// Symbols that can move file data or hand out fds and that we do not
/// handle: importing one refuses the start.
const REFUSED: &[(&str, &str)] = &[
    // glibc's exported internal aliases of calls we shim: a binary calling
    // them directly would go around the shims.
    ("__read", UNHANDLED_IO),
    ("__write", UNHANDLED_IO),
    ("__pread64", UNHANDLED_IO),
    ("__pwrite64", UNHANDLED_IO),
    ("__lseek", UNHANDLED_IO),
    ("llseek", UNHANDLED_IO),
    ("__mmap", UNHANDLED_IO),
    ("__fcntl", UNHANDLED_IO),
    ("__dup2", UNHANDLED_IO),
    ("__pipe", FD_CREATOR),
    ("__socket", FD_CREATOR),
    ("__fstat64", SIZES),
    ("aio_read", UNHANDLED_IO),
    ("aio_read64", UNHANDLED_IO),
    ("aio_write", UNHANDLED_IO),
    ("aio_write64", UNHANDLED_IO),
    ("lio_listio", UNHANDLED_IO),
    ("lio_listio64", UNHANDLED_IO),
    ("aio_cancel", UNHANDLED_IO),
    ("aio_cancel64", UNHANDLED_IO),
    ("aio_error", UNHANDLED_IO),
    ("aio_error64", UNHANDLED_IO),
    ("aio_fsync", UNHANDLED_IO),
    ("aio_fsync64", UNHANDLED_IO),
    ("aio_init", UNHANDLED_IO),
    ("aio_return", UNHANDLED_IO),
    ("aio_return64", UNHANDLED_IO),
    ("aio_suspend", UNHANDLED_IO),
    ("aio_suspend64", UNHANDLED_IO),
    ("fsopen", FD_CREATOR),
    ("open_tree", FD_CREATOR),
    ("openpty", FD_CREATOR),
    ("syscall", UNHANDLED_IO),
    ("open_by_handle_at", UNHANDLED_IO),
    ("name_to_handle_at", UNHANDLED_IO),
    ("pidfd_getfd", UNHANDLED_IO),
    // FICLONE / FICLONERANGE copy file data inside the kernel.
    ("ioctl", UNHANDLED_IO),
    ("__xstat", SIZES),
    ("__xstat64", SIZES),
    ("__lxstat", SIZES),
    ("__lxstat64", SIZES),
    ("__fxstat", SIZES),
    ("__fxstat64", SIZES),
    ("__fxstatat", SIZES),
    ("__fxstatat64", SIZES),
    ("tmpfile", FD_CREATOR),
    ("tmpfile64", FD_CREATOR),
    ("mkstemp", FD_CREATOR),
    ("mkstemp64", FD_CREATOR),
    ("mkostemp", FD_CREATOR),
    ("mkostemp64", FD_CREATOR),
    ("mkstemps", FD_CREATOR),
    ("mkstemps64", FD_CREATOR),
    ("mkostemps", FD_CREATOR),
    ("mkostemps64", FD_CREATOR),
    ("inotify_init", FD_CREATOR),
    ("fanotify_init", FD_CREATOR),
    ("posix_openpt", FD_CREATOR),
    ("getpt", FD_CREATOR),
    ("pidfd_open", FD_CREATOR),
];

/// The verdict on `name`, given the names the shim table interposes.
pub fn verdict(name: &str, shimmed: &[&str]) -> Verdict {
    verdict_with(name, shimmed, &[])
}

/// [`verdict`], with extra allowances (name, reason) given by the caller.
pub fn verdict_with(name: &str, shimmed: &[&str], extra: &[(&str, &'static str)]) -> Verdict {
    if shimmed.contains(&name) {
        return Verdict::Shimmed;
    }
    if let Some((_, why)) = extra.iter().find(|(n, _)| *n == name) {
        return Verdict::Allowed(why);
    }
    if let Some((_, why)) = ALLOWED.iter().find(|(n, _)| *n == name) {
        return Verdict::Allowed(why);
    }
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
        return Verdict::Refused(why);
    }
    if name.starts_with("io_uring_") || name.starts_with("__io_uring_") {
        return Verdict::IoUring;
    }
    Verdict::Irrelevant
}

/// The names the allowlist and the refusals decide (the shim table decides
/// its own).
pub fn decided_names() -> impl Iterator<Item = &'static str> {
    ALLOWED.iter().chain(REFUSED).map(|(n, _)| *n)
}

/// Groups of which the executable must import and we must patch at least
/// one member each: without them the server's file I/O does not reach us.
pub const REQUIRED: &[&[&str]] = &[
    &["open", "open64", "__open_2", "__open64_2"],
    &["close"],
    &["read", "__read_chk"],
    &["write"],
    &["pread", "pread64"],
    &["pwrite", "pwrite64"],
];

/// Why the audit refuses an executable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// An imported symbol can move file data and is not handled.
    #[error("the executable imports {symbol}, which {reason}")]
    Refused {
        /// The symbol.
        symbol: String,
        /// Why it matters.
        reason: &'static str,
    },
    /// A required call is not imported (or not patched).
    #[error("the executable imports none of {group}: its file I/O would not reach the shims")]
    Missing {
        /// The group's names.
        group: String,
    },
    /// liburing is imported and `io_method = io_uring` is in use.
    #[error(
        "the executable submits I/O through liburing ({symbol}) and io_method = io_uring is in use"
    )]
    IoUring {
        /// The first liburing symbol.
        symbol: String,
    },
}

/// Audit the imported symbol names of an executable. `extra` allows more
/// names with a stated reason (tests of a Rust binary, whose std imports
/// `syscall`); `io_uring_in_use` says whether the server is configured to
/// submit I/O through liburing.
pub fn audit(
    imports: &[&str],
    shimmed: &[&str],
    extra: &[(&str, &'static str)],
    io_uring_in_use: bool,
) -> Result<(), AuditError> {
    let mut refused: Vec<(&str, &'static str)> = Vec::new();
    let mut uring: Option<&str> = None;
    for &name in imports {
        match verdict_with(name, shimmed, extra) {
            Verdict::Refused(reason) => refused.push((name, reason)),
            Verdict::IoUring => uring = uring.or(Some(name)),
            Verdict::Shimmed | Verdict::Allowed(_) | Verdict::Irrelevant => {}
        }
    }
    refused.sort_unstable();
    if let Some(&(symbol, reason)) = refused.first() {
        return Err(AuditError::Refused {
            symbol: symbol.to_owned(),
            reason,
        });
    }
    if let (Some(symbol), true) = (uring, io_uring_in_use) {
        return Err(AuditError::IoUring {
            symbol: symbol.to_owned(),
        });
    }
    for group in REQUIRED {
        if !group
            .iter()
            .any(|g| imports.contains(g) && shimmed.contains(g))
        {
            return Err(AuditError::Missing {
                group: group.join("/"),
            });
        }
    }
    Ok(())
}
