//! Shared by the shim test binaries: each integration test file is its own
//! process, whose GOT is patched once by [`setup`].
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use ephcrypt_classify::ArtifactClass;
use ephcrypt_interpose::secmem::{self, AllocMode};
use ephcrypt_interpose::shim::{self, Config, InstallReport};

pub const MARKER: &[u8] = b"TENANT-SECRET-";

/// Whole file contents through raw syscalls (bypassing every shim).
pub fn raw_bytes(path: &Path) -> Vec<u8> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: direct syscalls on a path and an fd we own, into a buffer we own.
    unsafe {
        let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY) as i32;
        assert!(fd >= 0);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len());
            assert!(n >= 0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        libc::syscall(libc::SYS_close, fd);
        out
    }
}

pub fn raw_write_at(path: &Path, off: u64, data: &[u8]) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: direct syscalls on a path and an fd we own.
    unsafe {
        let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDWR) as i32;
        assert!(fd >= 0);
        let n = libc::syscall(
            libc::SYS_pwrite64,
            fd,
            data.as_ptr(),
            data.len(),
            off as i64,
        );
        assert_eq!(n, data.len() as i64);
        libc::syscall(libc::SYS_close, fd);
    }
}

pub fn fstat_size(f: &std::fs::File) -> u64 {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: a valid fd and out-pointer; goes through this binary's GOT.
    assert_eq!(unsafe { libc::fstat(f.as_raw_fd(), st.as_mut_ptr()) }, 0);
    // SAFETY: fstat succeeded.
    unsafe { st.assume_init() }.st_size as u64
}

pub fn stat_size(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: a valid path and out-pointer; goes through this binary's GOT.
    assert_eq!(unsafe { libc::stat(c.as_ptr(), st.as_mut_ptr()) }, 0);
    // SAFETY: stat succeeded.
    unsafe { st.assume_init() }.st_size as u64
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        out.extend_from_slice(MARKER);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What Rust's std imports beyond a C server, allowed for the test binaries
/// only (a PostgreSQL server gets no extra allowance).
pub const RUST_STD_IMPORTS: &[(&str, &str)] = &[
    ("syscall", "Rust std: futex and getrandom, never file data"),
    ("ioctl", "Rust std: FIOCLEX/FIONBIO, never FICLONE"),
];

static SETUP: OnceLock<(PathBuf, InstallReport)> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// A fake data directory with the shims installed into this test binary's
/// own GOT (once per process), and a lock that serializes the tests of the
/// binary (they share the GOT and the shims' process lock).
pub fn setup() -> (
    &'static Path,
    &'static InstallReport,
    MutexGuard<'static, ()>,
) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, report) = SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "ephcrypt-shim-{}-{}",
            std::env::args()
                .next()
                .map(|a| a.rsplit('/').next().unwrap_or("t").to_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("base/pgsql_tmp")).unwrap();
        fs::create_dir_all(dir.join("base/5")).unwrap();
        fs::create_dir_all(dir.join("pg_replslot/s1")).unwrap();
        secmem::start_epoch(AllocMode::Auto, 1).unwrap();
        shim::set_enabled_classes(&ArtifactClass::ALL);
        let report = shim::install(Config {
            data_dir: dir.as_os_str().as_encoded_bytes().to_vec(),
            io_uring_in_use: false,
            allow_extra: RUST_STD_IMPORTS.to_vec(),
        })
        .expect("install shims into the test binary");
        (dir, report)
    });
    shim::set_enabled_classes(&ArtifactClass::ALL);
    (dir.as_path(), report, guard)
}

pub fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

pub fn send(fd: i32) {
    // SAFETY: one byte from a valid buffer to our pipe.
    assert_eq!(unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) }, 1);
}

pub fn recv(fd: i32) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: one byte into a valid buffer from our pipe.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) == 1 }
}

/// A fresh member `<tag>.0` of file set `<pid>.<set>` holding `content`
/// (written and closed through the shims).
pub fn fileset_member(
    dir: &std::path::Path,
    set: u32,
    tag: &str,
    content: &[u8],
) -> std::path::PathBuf {
    let set = dir.join(format!(
        "base/pgsql_tmp/pgsql_tmp{}.{set}.fileset",
        std::process::id()
    ));
    fs::create_dir_all(&set).unwrap();
    let path = set.join(format!("{tag}.0"));
    let _ = fs::remove_file(&path);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all_at(content, 0).unwrap();
    path
}
