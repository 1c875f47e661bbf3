//! Replay of PostgreSQL's recorded transient-file I/O (benches/traces/, made
//! by benches/record_traces.py) in one process, through the shims and
//! around them, interleaved, timed with the thread's CPU clock.
//!
//! The shims are installed into this binary's own GOT over a fake data
//! directory (in the page cache: `std::env::temp_dir()` or `--dir`). Each
//! round replays every trace in four ways, the order alternating between
//! rounds:
//!
//! * `enc`:   libc calls through the GOT, every class sealed (the product);
//! * `plain`: raw `syscall(SYS_...)`s, which no shim sees (plain PostgreSQL);
//! * `off`:   libc calls through the GOT with every class disabled (the
//!   interposition alone, like the `off` cluster of benches/run.py);
//! * `raw`:   aws-lc-rs AES-256-GCM seal of the trace's written bytes and
//!   open of its read bytes, in 8 KiB pieces, no I/O.
//!
//! Per trace it prints µs per 8 KiB block (logical bytes written + read,
//! divided by 8 KiB) of each, the overhead enc - plain per block as the
//! median of the per-round paired differences with a 95 % bootstrap
//! interval, and the ratio overhead / raw (per round, median, interval)
//! against the goal <= 1.3. Every call's result is checked against the
//! recorded one (lengths, sizes, errors) in every mode.
//!
//! Run: `cargo bench -p ephcrypt-interpose --bench trace_replay [-- --rounds 31 --only external_sort,window_spill --dir /dev/shm]`

use std::collections::BTreeSet;
use std::ffi::{c_int, c_void, CString};
use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ephcrypt_classify::ArtifactClass;
use ephcrypt_interpose::secmem::{self, AllocMode};
use ephcrypt_interpose::shim::{self, Config};
use ephcrypt_interpose::stats::{self, Counter};

const BLOCK: f64 = 8192.0;
const GOAL: f64 = 1.3;
const BOOTSTRAP: usize = 10_000;

// ---------------------------------------------------------------------------
// Traces

#[derive(Clone, Debug)]
enum Op {
    Open {
        h: usize,
        path: usize,
        flags: c_int,
        mode: u32,
    },
    OpenFail {
        path: usize,
        flags: c_int,
        errno: i64,
    },
    Pread {
        h: usize,
        len: usize,
        off: i64,
        ret: i64,
    },
    Pwrite {
        h: usize,
        len: usize,
        off: i64,
        ret: i64,
    },
    Preadv {
        h: usize,
        off: i64,
        lens: Vec<usize>,
        ret: i64,
    },
    Pwritev {
        h: usize,
        off: i64,
        lens: Vec<usize>,
        ret: i64,
    },
    Read {
        h: usize,
        len: usize,
        ret: i64,
    },
    Write {
        h: usize,
        len: usize,
        ret: i64,
    },
    Seek {
        h: usize,
        off: i64,
        whence: c_int,
        ret: i64,
    },
    Ftruncate {
        h: usize,
        len: i64,
        ret: i64,
    },
    Fstat {
        h: usize,
        size: i64,
    },
    Stat {
        path: usize,
        ret: i64,
    },
    Close {
        h: usize,
    },
    Unlink {
        path: usize,
        ret: i64,
    },
    Truncate {
        path: usize,
        len: i64,
        ret: i64,
    },
    Mkdir {
        path: usize,
        mode: u32,
        ret: i64,
    },
    Rmdir {
        path: usize,
        ret: i64,
    },
}

struct Trace {
    name: String,
    paths: Vec<CString>,
    dirs: BTreeSet<PathBuf>,
    ops: Vec<Op>,
    handles: usize,
    max_len: usize,
    bytes_written: u64,
    bytes_read: u64,
    calls: usize,
}

impl Trace {
    fn blocks(&self) -> f64 {
        (self.bytes_written + self.bytes_read) as f64 / BLOCK
    }
}

fn errno_of(name: &str) -> i64 {
    let e = match name.trim_start_matches('-') {
        "ENOENT" => libc::ENOENT,
        "EEXIST" => libc::EEXIST,
        "ENOTEMPTY" => libc::ENOTEMPTY,
        "EBUSY" => libc::EBUSY,
        "EACCES" => libc::EACCES,
        "EISDIR" => libc::EISDIR,
        "ENOTDIR" => libc::ENOTDIR,
        "EINVAL" => libc::EINVAL,
        "EBADF" => libc::EBADF,
        n => n.parse::<i64>().map(|v| -v).unwrap_or(9999) as c_int,
    };
    -(e as i64)
}

/// A result field: a number, `-ERRNO`, or `=` (equal to the length).
fn result(s: &str, len: usize) -> i64 {
    match s {
        "=" => len as i64,
        _ if s.starts_with("-E") => errno_of(s),
        _ => s.parse().expect("result"),
    }
}

fn parse(name: &str, text: &str) -> Trace {
    let mut paths: Vec<CString> = Vec::new();
    let mut ops = Vec::new();
    let mut next_end: Vec<i64> = Vec::new();
    let (mut handles, mut max_len, mut w, mut r) = (0usize, 8192usize, 0u64, 0u64);
    let mut dirs = BTreeSet::new();
    let mut dir_paths = BTreeSet::new();
    fn h_of(s: &str, handles: &mut usize, next_end: &mut Vec<i64>) -> usize {
        let h: usize = s.parse().expect("handle");
        *handles = (*handles).max(h + 1);
        if next_end.len() < *handles {
            next_end.resize(*handles, 0);
        }
        h
    }
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| -> i64 { f[i].parse().expect("number") };
        let off_of = |s: &str, h: usize, next_end: &Vec<i64>| -> i64 {
            if s == "." {
                next_end[h]
            } else {
                s.parse().expect("offset")
            }
        };
        let op = match f[0] {
            "P" => {
                let id = num(1) as usize;
                assert_eq!(id, paths.len(), "{name}: path ids in order");
                let p = Path::new(f[2]);
                if let Some(parent) = p.parent() {
                    dirs.insert(parent.to_path_buf());
                }
                paths.push(CString::new(f[2]).unwrap());
                continue;
            }
            "o" => {
                let h = h_of(f[1], &mut handles, &mut next_end);
                next_end[h] = 0;
                Op::Open {
                    h,
                    path: num(2) as usize,
                    flags: i64::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap() as c_int,
                    mode: u32::from_str_radix(f[4], 8).unwrap(),
                }
            }
            "O" => Op::OpenFail {
                path: num(1) as usize,
                flags: i64::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap() as c_int,
                errno: errno_of(f[3]),
            },
            "R" | "W" => {
                let h = h_of(f[1], &mut handles, &mut next_end);
                let len: usize = f[2].parse().unwrap();
                let off = off_of(f[3], h, &next_end);
                let ret = result(f[4], len);
                if ret > 0 {
                    next_end[h] = off + ret;
                }
                max_len = max_len.max(len);
                if f[0] == "R" {
                    r += ret.max(0) as u64;
                    Op::Pread { h, len, off, ret }
                } else {
                    w += ret.max(0) as u64;
                    Op::Pwrite { h, len, off, ret }
                }
            }
            "RV" | "WV" => {
                let h = h_of(f[1], &mut handles, &mut next_end);
                let off = off_of(f[2], h, &next_end);
                let lens: Vec<usize> = f[3].split(',').map(|x| x.parse().unwrap()).collect();
                let total: usize = lens.iter().sum();
                let ret = result(f[4], total);
                if ret > 0 {
                    next_end[h] = off + ret;
                }
                max_len = max_len.max(total);
                if f[0] == "RV" {
                    r += ret.max(0) as u64;
                    Op::Preadv { h, off, lens, ret }
                } else {
                    w += ret.max(0) as u64;
                    Op::Pwritev { h, off, lens, ret }
                }
            }
            "r" | "w" => {
                let h = h_of(f[1], &mut handles, &mut next_end);
                let len: usize = f[2].parse().unwrap();
                let ret = result(f[3], len);
                max_len = max_len.max(len);
                if f[0] == "r" {
                    r += ret.max(0) as u64;
                    Op::Read { h, len, ret }
                } else {
                    w += ret.max(0) as u64;
                    Op::Write { h, len, ret }
                }
            }
            "E" => Op::Seek {
                h: h_of(f[1], &mut handles, &mut next_end),
                off: 0,
                whence: libc::SEEK_END,
                ret: num(2),
            },
            "L" => Op::Seek {
                h: h_of(f[1], &mut handles, &mut next_end),
                off: num(2),
                whence: num(3) as c_int,
                ret: result(f[4], 0),
            },
            "T" => Op::Ftruncate {
                h: h_of(f[1], &mut handles, &mut next_end),
                len: num(2),
                ret: result(f[3], 0),
            },
            "F" => Op::Fstat {
                h: h_of(f[1], &mut handles, &mut next_end),
                size: num(2),
            },
            "S" => Op::Stat {
                path: num(1) as usize,
                ret: result(f[2], 0),
            },
            "C" => Op::Close {
                h: h_of(f[1], &mut handles, &mut next_end),
            },
            "U" => Op::Unlink {
                path: num(1) as usize,
                ret: result(f[2], 0),
            },
            "X" => Op::Truncate {
                path: num(1) as usize,
                len: num(2),
                ret: result(f[3], 0),
            },
            "D" => {
                dir_paths.insert(num(1) as usize);
                Op::Mkdir {
                    path: num(1) as usize,
                    mode: u32::from_str_radix(f[2], 8).unwrap(),
                    ret: result(f[3], 0),
                }
            }
            "d" => {
                dir_paths.insert(num(1) as usize);
                Op::Rmdir {
                    path: num(1) as usize,
                    ret: result(f[2], 0),
                }
            }
            k => panic!("{name}: unknown trace op {k:?} in {line:?}"),
        };
        ops.push(op);
    }
    // Directories the trace creates itself are not pre-created.
    for &d in &dir_paths {
        dirs.remove(Path::new(paths[d].to_str().unwrap()));
    }
    let calls = ops.len();
    Trace {
        name: name.to_owned(),
        paths,
        dirs,
        ops,
        handles,
        max_len,
        bytes_written: w,
        bytes_read: r,
        calls,
    }
}

fn load_traces(dir: &Path, only: &[String]) -> Vec<Trace> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".trace.gz"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        let name = p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".trace.gz")
            .to_owned();
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        // gzip(1) rather than a decompression crate: run before the shims
        // are installed.
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&p)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut text = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(child.wait().unwrap().success(), "gzip -dc {}", p.display());
        out.push(parse(&name, &text));
    }
    out
}

// ---------------------------------------------------------------------------
// The two ways to make a call

/// One file-call interface: libc through this binary's GOT (the shims see
/// it), or raw system calls (nothing sees them).
trait Calls {
    unsafe fn open(p: *const libc::c_char, flags: c_int, mode: u32) -> i64;
    unsafe fn pread(fd: c_int, b: *mut c_void, n: usize, off: i64) -> i64;
    unsafe fn pwrite(fd: c_int, b: *const c_void, n: usize, off: i64) -> i64;
    unsafe fn preadv(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64) -> i64;
    unsafe fn pwritev(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64) -> i64;
    unsafe fn read(fd: c_int, b: *mut c_void, n: usize) -> i64;
    unsafe fn write(fd: c_int, b: *const c_void, n: usize) -> i64;
    unsafe fn lseek(fd: c_int, off: i64, whence: c_int) -> i64;
    unsafe fn ftruncate(fd: c_int, len: i64) -> i64;
    unsafe fn fstat(fd: c_int, st: *mut libc::stat) -> i64;
    unsafe fn stat(p: *const libc::c_char, st: *mut libc::stat) -> i64;
    unsafe fn close(fd: c_int) -> i64;
    unsafe fn unlink(p: *const libc::c_char) -> i64;
    unsafe fn truncate(p: *const libc::c_char, len: i64) -> i64;
    unsafe fn mkdir(p: *const libc::c_char, mode: u32) -> i64;
    unsafe fn rmdir(p: *const libc::c_char) -> i64;
}

/// `-errno` for a failed call.
fn res(rc: i64) -> i64 {
    if rc < 0 {
        -(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(9999) as i64)
    } else {
        rc
    }
}

struct Libc;
struct Sys;

// SAFETY (both impls): thin forwards of the callers' arguments; every
// pointer comes from `replay`, which owns the buffers and paths.
impl Calls for Libc {
    unsafe fn open(p: *const libc::c_char, flags: c_int, mode: u32) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::open(p, flags, mode as libc::c_uint) } as i64)
    }
    unsafe fn pread(fd: c_int, b: *mut c_void, n: usize, off: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::pread(fd, b, n, off) } as i64)
    }
    unsafe fn pwrite(fd: c_int, b: *const c_void, n: usize, off: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::pwrite(fd, b, n, off) } as i64)
    }
    unsafe fn preadv(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::preadv(fd, iov, cnt, off) } as i64)
    }
    unsafe fn pwritev(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::pwritev(fd, iov, cnt, off) } as i64)
    }
    unsafe fn read(fd: c_int, b: *mut c_void, n: usize) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::read(fd, b, n) } as i64)
    }
    unsafe fn write(fd: c_int, b: *const c_void, n: usize) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::write(fd, b, n) } as i64)
    }
    unsafe fn lseek(fd: c_int, off: i64, whence: c_int) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::lseek(fd, off, whence) })
    }
    unsafe fn ftruncate(fd: c_int, len: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::ftruncate(fd, len) } as i64)
    }
    unsafe fn fstat(fd: c_int, st: *mut libc::stat) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::fstat(fd, st) } as i64)
    }
    unsafe fn stat(p: *const libc::c_char, st: *mut libc::stat) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::stat(p, st) } as i64)
    }
    unsafe fn close(fd: c_int) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::close(fd) } as i64)
    }
    unsafe fn unlink(p: *const libc::c_char) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::unlink(p) } as i64)
    }
    unsafe fn truncate(p: *const libc::c_char, len: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::truncate(p, len) } as i64)
    }
    unsafe fn mkdir(p: *const libc::c_char, mode: u32) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::mkdir(p, mode) } as i64)
    }
    unsafe fn rmdir(p: *const libc::c_char) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::rmdir(p) } as i64)
    }
}

impl Calls for Sys {
    unsafe fn open(p: *const libc::c_char, flags: c_int, mode: u32) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p, flags, mode) })
    }
    unsafe fn pread(fd: c_int, b: *mut c_void, n: usize, off: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_pread64, fd, b, n, off) })
    }
    unsafe fn pwrite(fd: c_int, b: *const c_void, n: usize, off: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_pwrite64, fd, b, n, off) })
    }
    unsafe fn preadv(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64) -> i64 {
        // SAFETY: see the impl. x86-64: the offset is (low, high) = (off, 0).
        res(unsafe { libc::syscall(libc::SYS_preadv, fd, iov, cnt, off, 0) })
    }
    unsafe fn pwritev(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_pwritev, fd, iov, cnt, off, 0) })
    }
    unsafe fn read(fd: c_int, b: *mut c_void, n: usize) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_read, fd, b, n) })
    }
    unsafe fn write(fd: c_int, b: *const c_void, n: usize) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_write, fd, b, n) })
    }
    unsafe fn lseek(fd: c_int, off: i64, whence: c_int) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_lseek, fd, off, whence) })
    }
    unsafe fn ftruncate(fd: c_int, len: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_ftruncate, fd, len) })
    }
    unsafe fn fstat(fd: c_int, st: *mut libc::stat) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_fstat, fd, st) })
    }
    unsafe fn stat(p: *const libc::c_char, st: *mut libc::stat) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_newfstatat, libc::AT_FDCWD, p, st, 0) })
    }
    unsafe fn close(fd: c_int) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_close, fd) })
    }
    unsafe fn unlink(p: *const libc::c_char) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_unlink, p) })
    }
    unsafe fn truncate(p: *const libc::c_char, len: i64) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_truncate, p, len) })
    }
    unsafe fn mkdir(p: *const libc::c_char, mode: u32) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_mkdir, p, mode) })
    }
    unsafe fn rmdir(p: *const libc::c_char) -> i64 {
        // SAFETY: see the impl.
        res(unsafe { libc::syscall(libc::SYS_rmdir, p) })
    }
}

// ---------------------------------------------------------------------------
// Replay

/// Calls whose result differed from the recorded one.
#[derive(Default)]
struct Mismatches {
    count: usize,
    first: Vec<String>,
}

impl Mismatches {
    fn check(&mut self, i: usize, op: &Op, got: i64, want: i64) {
        // A recorded error we do not know by name matches any error.
        if got == want || (want == -9999 && got < 0) {
            return;
        }
        self.count += 1;
        if self.first.len() < 5 {
            self.first
                .push(format!("call {i}: {op:?}: got {got}, recorded {want}"));
        }
    }
}

struct Buffers {
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    iov: Vec<libc::iovec>,
}

fn clock(id: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// System (kernel) CPU time of this thread so far, µs: the split of the
/// thread's CPU time between user and kernel, which Linux derives from tick
/// samples scaled to the exact total, so it is read as a median over rounds.
fn thread_system_us() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer; RUSAGE_THREAD exists on Linux.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_stime.tv_sec as f64 * 1e6 + ru.ru_stime.tv_usec as f64
}

/// (CPU µs, wall µs) of one replay of `t`.
fn replay<C: Calls>(
    t: &Trace,
    b: &mut Buffers,
    fds: &mut [c_int],
    m: &mut Mismatches,
) -> (f64, f64) {
    let cpu0 = clock(libc::CLOCK_THREAD_CPUTIME_ID);
    let wall0 = clock(libc::CLOCK_MONOTONIC);
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    for (i, op) in t.ops.iter().enumerate() {
        // SAFETY: paths are NUL-terminated CStrings of the trace; buffers
        // are at least max_len long; fds are the ones opened here.
        unsafe {
            match *op {
                Op::Open {
                    h,
                    path,
                    flags,
                    mode,
                } => {
                    let fd = C::open(t.paths[path].as_ptr(), flags, mode);
                    if fd < 0 {
                        m.check(i, op, fd, 0);
                    }
                    fds[h] = fd as c_int;
                }
                Op::OpenFail { path, flags, errno } => {
                    let fd = C::open(t.paths[path].as_ptr(), flags, 0o600);
                    m.check(i, op, fd.min(0), errno);
                    if fd >= 0 {
                        C::close(fd as c_int);
                    }
                }
                Op::Pread { h, len, off, ret } => {
                    let got = C::pread(fds[h], b.rbuf.as_mut_ptr().cast(), len, off);
                    m.check(i, op, got, ret);
                }
                Op::Pwrite { h, len, off, ret } => {
                    let got = C::pwrite(fds[h], b.wbuf.as_ptr().cast(), len, off);
                    m.check(i, op, got, ret);
                }
                Op::Preadv {
                    h,
                    off,
                    ref lens,
                    ret,
                } => {
                    let mut at = 0;
                    b.iov.clear();
                    for &l in lens {
                        b.iov.push(libc::iovec {
                            iov_base: b.rbuf[at..].as_mut_ptr().cast(),
                            iov_len: l,
                        });
                        at += l;
                    }
                    let got = C::preadv(fds[h], b.iov.as_ptr(), lens.len() as c_int, off);
                    m.check(i, op, got, ret);
                }
                Op::Pwritev {
                    h,
                    off,
                    ref lens,
                    ret,
                } => {
                    let mut at = 0;
                    b.iov.clear();
                    for &l in lens {
                        b.iov.push(libc::iovec {
                            iov_base: b.wbuf[at..].as_ptr() as *mut c_void,
                            iov_len: l,
                        });
                        at += l;
                    }
                    let got = C::pwritev(fds[h], b.iov.as_ptr(), lens.len() as c_int, off);
                    m.check(i, op, got, ret);
                }
                Op::Read { h, len, ret } => {
                    let got = C::read(fds[h], b.rbuf.as_mut_ptr().cast(), len);
                    m.check(i, op, got, ret);
                }
                Op::Write { h, len, ret } => {
                    let got = C::write(fds[h], b.wbuf.as_ptr().cast(), len);
                    m.check(i, op, got, ret);
                }
                Op::Seek {
                    h,
                    off,
                    whence,
                    ret,
                } => {
                    let got = C::lseek(fds[h], off, whence);
                    m.check(i, op, got, ret);
                }
                Op::Ftruncate { h, len, ret } => m.check(i, op, C::ftruncate(fds[h], len), ret),
                Op::Fstat { h, size } => {
                    let rc = C::fstat(fds[h], st.as_mut_ptr());
                    let got = if rc < 0 {
                        rc
                    } else {
                        st.assume_init_ref().st_size
                    };
                    m.check(i, op, got, size);
                }
                Op::Stat { path, ret } => {
                    let rc = C::stat(t.paths[path].as_ptr(), st.as_mut_ptr());
                    let got = if rc < 0 {
                        rc
                    } else {
                        st.assume_init_ref().st_size
                    };
                    m.check(i, op, got, ret);
                }
                Op::Close { h } => {
                    m.check(i, op, C::close(fds[h]), 0);
                    fds[h] = -1;
                }
                Op::Unlink { path, ret } => m.check(i, op, C::unlink(t.paths[path].as_ptr()), ret),
                Op::Truncate { path, len, ret } => {
                    m.check(i, op, C::truncate(t.paths[path].as_ptr(), len), ret)
                }
                Op::Mkdir { path, mode, ret } => {
                    m.check(i, op, C::mkdir(t.paths[path].as_ptr(), mode), ret)
                }
                Op::Rmdir { path, ret } => m.check(i, op, C::rmdir(t.paths[path].as_ptr()), ret),
            }
        }
    }
    // A backend's exit closes what it left open.
    for fd in fds.iter_mut() {
        if *fd >= 0 {
            // SAFETY: an fd this replay opened.
            unsafe { C::close(*fd) };
            *fd = -1;
        }
    }
    (
        clock(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0,
        clock(libc::CLOCK_MONOTONIC) - wall0,
    )
}

/// Remove what a replay left behind (untimed), through `C` so that the
/// shims forget the files they remember.
fn cleanup<C: Calls>(t: &Trace) {
    for p in &t.paths {
        // SAFETY: NUL-terminated paths.
        unsafe { C::unlink(p.as_ptr()) };
    }
    for p in t.paths.iter().rev() {
        // SAFETY: NUL-terminated paths (fails harmlessly on files).
        unsafe { C::rmdir(p.as_ptr()) };
    }
}

// ---------------------------------------------------------------------------
// Raw AES-256-GCM of the same bytes

struct Raw {
    key: LessSafeKey,
    aad: [u8; 56],
    buf: Vec<u8>,
    out: Vec<u8>,
    /// A sealed 8 KiB block and a sealed piece of the trace's last partial
    /// length, with tags, for the opens.
    full: (Vec<u8>, [u8; 16]),
    part: (Vec<u8>, [u8; 16]),
    counter: u64,
}

impl Raw {
    fn new(part_len: usize) -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x24; 32]).unwrap());
        let aad = [7u8; 56];
        let seal = |n: usize| {
            let mut v: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key([1; 12]),
                    Aad::from(aad),
                    &mut v,
                )
                .unwrap();
            let mut t = [0u8; 16];
            t.copy_from_slice(tag.as_ref());
            (v, t)
        };
        let full = seal(8192);
        let part = seal(part_len);
        Raw {
            key,
            aad,
            buf: vec![0x5a; 8192],
            out: vec![0; 8192],
            full,
            part,
            counter: 0,
        }
    }

    /// CPU µs and wall µs to seal `w` bytes and open `r` bytes in 8 KiB pieces.
    fn run(&mut self, w: u64, r: u64) -> (f64, f64) {
        let cpu0 = clock(libc::CLOCK_THREAD_CPUTIME_ID);
        let wall0 = clock(libc::CLOCK_MONOTONIC);
        let mut left = w;
        while left > 0 {
            let n = left.min(8192) as usize;
            self.counter += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&self.counter.to_le_bytes());
            let tag = self
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(self.aad),
                    &mut self.buf[..n],
                )
                .unwrap();
            black_box(tag.as_ref());
            left -= n as u64;
        }
        let mut left = r;
        while left > 0 {
            let n = left.min(8192) as usize;
            let (ct, tag) = if n == 8192 { &self.full } else { &self.part };
            let ok = n == ct.len()
                && self
                    .key
                    .open_separate_gather(
                        Nonce::assume_unique_for_key([1; 12]),
                        Aad::from(self.aad),
                        black_box(&ct[..]),
                        tag,
                        &mut self.out[..n],
                    )
                    .is_ok();
            // A partial piece of another length: open a full block instead
            // (counted as such; only ever the last piece).
            if !ok {
                self.key
                    .open_separate_gather(
                        Nonce::assume_unique_for_key([1; 12]),
                        Aad::from(self.aad),
                        &self.full.0,
                        &self.full.1,
                        &mut self.out,
                    )
                    .unwrap();
            }
            black_box(&self.out);
            left -= n as u64;
        }
        (
            clock(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0,
            clock(libc::CLOCK_MONOTONIC) - wall0,
        )
    }
}

// ---------------------------------------------------------------------------
// Statistics

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// 95 % percentile-bootstrap interval of the median (fixed seed).
fn bootstrap(v: &[f64], seed: u64) -> (f64, f64) {
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let n = v.len();
    let mut meds = Vec::with_capacity(BOOTSTRAP);
    let mut s = vec![0.0; n];
    for _ in 0..BOOTSTRAP {
        for e in s.iter_mut() {
            *e = v[(next() % n as u64) as usize];
        }
        meds.push(median(&s));
    }
    meds.sort_by(|a, b| a.total_cmp(b));
    (
        meds[BOOTSTRAP * 25 / 1000],
        meds[BOOTSTRAP * 975 / 1000 - 1],
    )
}

#[derive(Default, Clone)]
struct Samples {
    enc: Vec<f64>,
    plain: Vec<f64>,
    off: Vec<f64>,
    raw: Vec<f64>,
}

struct Row {
    name: String,
    blocks: f64,
    plain: f64,
    enc: f64,
    off: f64,
    raw: f64,
    over: (f64, f64, f64),
    off_over: (f64, f64, f64),
    ratio: (f64, f64, f64),
}

fn row(t: &Trace, s: &Samples, seed: u64) -> Row {
    let per = |v: &[f64]| median(v) / t.blocks();
    let diffs: Vec<f64> = s
        .enc
        .iter()
        .zip(&s.plain)
        .map(|(e, p)| (e - p) / t.blocks())
        .collect();
    let offs: Vec<f64> = s
        .off
        .iter()
        .zip(&s.plain)
        .map(|(o, p)| (o - p) / t.blocks())
        .collect();
    let ratios: Vec<f64> = s
        .enc
        .iter()
        .zip(&s.plain)
        .zip(&s.raw)
        .map(|((e, p), r)| (e - p) / r)
        .collect();
    let iv = |v: &[f64], k: u64| {
        let (lo, hi) = bootstrap(v, seed ^ k);
        (median(v), lo, hi)
    };
    Row {
        name: t.name.clone(),
        blocks: t.blocks(),
        plain: per(&s.plain),
        enc: per(&s.enc),
        off: per(&s.off),
        raw: per(&s.raw),
        over: iv(&diffs, 1),
        off_over: iv(&offs, 2),
        ratio: iv(&ratios, 3),
    }
}

fn verdict(r: &(f64, f64, f64)) -> &'static str {
    if r.2 <= GOAL {
        "yes"
    } else if r.1 > GOAL {
        "**no**"
    } else {
        "undecided (interval spans the goal)"
    }
}

fn table(title: &str, rows: &[Row]) {
    println!("\n{title}\n");
    println!("| trace | 8 KiB blocks | plain µs/blk | enc µs/blk | off µs/blk | overhead enc-plain µs/blk [95 %] | off-plain µs/blk [95 %] | raw AES µs/blk | overhead/raw [95 %] | goal | met? |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} [{:.3}, {:.3}] | {:.3} [{:.3}, {:.3}] | {:.3} | {:.2} [{:.2}, {:.2}] | <= {GOAL:.1} | {} |",
            r.name,
            r.blocks,
            r.plain,
            r.enc,
            r.off,
            r.over.0,
            r.over.1,
            r.over.2,
            r.off_over.0,
            r.off_over.1,
            r.off_over.2,
            r.raw,
            r.ratio.0,
            r.ratio.1,
            r.ratio.2,
            verdict(&r.ratio)
        );
    }
}

// ---------------------------------------------------------------------------

struct Args {
    rounds: usize,
    only: Vec<String>,
    dir: PathBuf,
    /// Replay only this mode (for `perf record`), no statistics.
    profile: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 31,
        only: Vec::new(),
        dir: std::env::temp_dir(),
        profile: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            "--only" => {
                a.only = it
                    .next()
                    .expect("--only a,b")
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            "--dir" => a.dir = PathBuf::from(it.next().expect("--dir PATH")),
            "--profile" => a.profile = Some(it.next().expect("--profile enc|plain|off|raw")),
            "--bench" => {}
            other => panic!(
                "unknown argument {other:?} (--rounds N, --only a,b, --dir PATH, --profile enc|plain|off|raw)"
            ),
        }
    }
    a
}

fn fs_type(p: &Path) -> String {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut s = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: valid path and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), s.as_mut_ptr()) } != 0 {
        return "unknown".into();
    }
    // SAFETY: statfs succeeded.
    match unsafe { s.assume_init() }.f_type {
        0x01021994 => "tmpfs".into(),
        0xEF53 => "ext2/3/4".into(),
        0x58465342 => "xfs".into(),
        0x9123683E => "btrfs".into(),
        t => format!("0x{t:x}"),
    }
}

fn sealed_bytes() -> u64 {
    stats::fold();
    ArtifactClass::ALL
        .iter()
        .map(|&c| stats::snapshot(c)[Counter::BytesSealed as usize])
        .sum()
}

fn main() {
    let a = args();
    let traces_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/traces");
    let traces = load_traces(&traces_dir, &a.only);
    assert!(!traces.is_empty(), "no traces in {}", traces_dir.display());

    let dir = a
        .dir
        .join(format!("ephcrypt-replay-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    for t in &traces {
        for d in &t.dirs {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
    }
    std::env::set_current_dir(&dir).unwrap();

    secmem::start_epoch(AllocMode::Auto, 1).unwrap();
    shim::set_enabled_classes(&ArtifactClass::ALL);
    shim::install(Config {
        data_dir: dir.as_os_str().as_encoded_bytes().to_vec(),
        io_uring_in_use: false,
        allow_extra: vec![
            (
                "syscall",
                "Rust std: futex and getrandom; this bench's plain replay",
            ),
            ("ioctl", "Rust std: FIOCLEX/FIONBIO"),
        ],
    })
    .expect("install the shims into the bench binary");

    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap().trim().to_owned())
        })
        .unwrap_or_default();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "trace replay: {} rounds per trace, order enc/plain/off/raw alternating with its reverse",
        a.rounds
    );
    println!(
        "data directory {} ({}), CPU {cpu}, load average at start {}",
        dir.display(),
        fs_type(&dir),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut rows_cpu = Vec::new();
    let mut rows_wall = Vec::new();
    let mut problems = Vec::new();
    let mut kernels = Vec::new();
    for t in &traces {
        let part = (t.bytes_read % 8192) as usize;
        let mut raw = Raw::new(if part == 0 { 8192 } else { part });
        let mut b = Buffers {
            wbuf: (0..t.max_len).map(|i| (i * 31 + 7) as u8).collect(),
            rbuf: vec![0; t.max_len],
            iov: Vec::with_capacity(1024),
        };
        let mut fds = vec![-1; t.handles];
        let mut mm = [
            Mismatches::default(),
            Mismatches::default(),
            Mismatches::default(),
        ];
        let (mut cpu, mut wall) = (Samples::default(), Samples::default());
        let mut sealed_enc = 0u64;
        let mut sealed_off = 0u64;
        let (mut kernel_enc, mut kernel_plain) = (Vec::new(), Vec::new());
        let only_mode = a.profile.as_deref().map(|m| match m {
            "enc" => 0usize,
            "plain" => 1,
            "off" => 2,
            "raw" => 3,
            _ => panic!("--profile enc|plain|off|raw"),
        });
        // Round 0 is the warm-up (untimed).
        for round in 0..=a.rounds {
            let order: [usize; 4] = if round % 2 == 0 {
                [0, 1, 2, 3]
            } else {
                [3, 2, 1, 0]
            };
            for &mode in &order {
                if only_mode.is_some_and(|m| m != mode) {
                    continue;
                }
                let mut kernel = 0.0;
                let (c, w) = match mode {
                    0 => {
                        let s0 = sealed_bytes();
                        let k0 = thread_system_us();
                        let r = replay::<Libc>(t, &mut b, &mut fds, &mut mm[0]);
                        kernel = thread_system_us() - k0;
                        cleanup::<Libc>(t);
                        sealed_enc += sealed_bytes() - s0;
                        r
                    }
                    1 => {
                        let k0 = thread_system_us();
                        let r = replay::<Sys>(t, &mut b, &mut fds, &mut mm[1]);
                        kernel = thread_system_us() - k0;
                        cleanup::<Sys>(t);
                        r
                    }
                    2 => {
                        shim::set_enabled_classes(&[]);
                        let s0 = sealed_bytes();
                        let r = replay::<Libc>(t, &mut b, &mut fds, &mut mm[2]);
                        cleanup::<Libc>(t);
                        sealed_off += sealed_bytes() - s0;
                        shim::set_enabled_classes(&ArtifactClass::ALL);
                        r
                    }
                    _ => raw.run(t.bytes_written, t.bytes_read),
                };
                if round > 0 {
                    let (sc, sw) = (&mut cpu, &mut wall);
                    let (vc, vw) = match mode {
                        0 => (&mut sc.enc, &mut sw.enc),
                        1 => (&mut sc.plain, &mut sw.plain),
                        2 => (&mut sc.off, &mut sw.off),
                        _ => (&mut sc.raw, &mut sw.raw),
                    };
                    vc.push(c);
                    vw.push(w);
                    match mode {
                        0 => kernel_enc.push(kernel),
                        1 => kernel_plain.push(kernel),
                        _ => {}
                    }
                }
            }
        }
        assert_eq!(
            shim::open_covered_files(),
            0,
            "{}: covered files left open",
            t.name
        );
        for (mode, m) in ["enc", "plain", "off"].iter().zip(&mm) {
            if m.count > 0 {
                problems.push(format!(
                    "{}: {mode}: {} calls returned other results than recorded, first: {}",
                    t.name,
                    m.count,
                    m.first.join("; ")
                ));
            }
        }
        if let Some(m) = &a.profile {
            let v = match only_mode.unwrap() {
                0 => &cpu.enc,
                1 => &cpu.plain,
                2 => &cpu.off,
                _ => &cpu.raw,
            };
            println!(
                "{:20} {m}: {:.3} µs/blk (CPU, median of {})",
                t.name,
                median(v) / t.blocks(),
                v.len()
            );
            continue;
        }
        if sealed_enc == 0 && t.bytes_written > 0 {
            problems.push(format!("{}: enc sealed nothing", t.name));
        }
        if sealed_off != 0 {
            problems.push(format!("{}: off sealed {sealed_off} bytes", t.name));
        }
        let rc = row(t, &cpu, 0x5eed_0001);
        eprintln!(
            "{:20} {:>7} calls {:>7.0} blocks  plain {:.3} enc {:.3} off {:.3} raw {:.3} µs/blk (CPU)  overhead/raw {:.2} [{:.2}, {:.2}]",
            t.name, t.calls, t.blocks(), rc.plain, rc.enc, rc.off, rc.raw, rc.ratio.0, rc.ratio.1, rc.ratio.2
        );
        // Where the overhead is spent: the kernel's part of each mode's
        // thread CPU time (paired per round), against raw AES.
        let kernel_delta: Vec<f64> = kernel_enc
            .iter()
            .zip(&kernel_plain)
            .map(|(e, p)| (e - p) / t.blocks())
            .collect();
        kernels.push(format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} |",
            t.name,
            median(&kernel_plain) / t.blocks(),
            median(&kernel_enc) / t.blocks(),
            median(&kernel_delta),
            rc.over.0 - median(&kernel_delta),
            median(&kernel_delta) / rc.raw
        ));
        rows_cpu.push(rc);
        rows_wall.push(row(t, &wall, 0x5eed_0002));
    }
    let _ = std::env::set_current_dir("/");
    let _ = fs::remove_dir_all(&dir);
    if a.profile.is_some() {
        return;
    }

    table(
        &format!(
            "Thread CPU time, medians over {} rounds; overhead = median of the per-round paired differences enc - plain; overhead/raw = median of the per-round ratios; [95 % bootstrap intervals]:",
            a.rounds
        ),
        &rows_cpu,
    );
    table("Wall-clock time, same rounds:", &rows_wall);
    println!("\nKernel (system) part of the thread CPU time, µs per block (getrusage RUSAGE_THREAD: Linux splits user and system time by tick samples, so these are medians of coarse values): plain, enc, their paired difference, the rest of the overhead (user space), and the kernel difference over raw AES:\n");
    println!("| trace | plain kernel | enc kernel | enc - plain kernel | overhead outside the kernel | kernel difference / raw |");
    println!("|---|---:|---:|---:|---:|---:|");
    for k in &kernels {
        println!("{k}");
    }
    println!("\nGoal: overhead per block <= {GOAL} x raw AES-256-GCM of the same bytes (issue #11 item 7). \"undecided\": the interval contains the goal; run more rounds on a quieter machine.");
    if problems.is_empty() {
        println!("Checks: every call returned the recorded result in all three modes; enc sealed bytes, off sealed none.");
    } else {
        println!("\nPROBLEMS:");
        for p in &problems {
            println!("- {p}");
        }
        std::process::exit(1);
    }
}
