//! One test per defect found by the review of 9b738fb (issue #10), each with
//! a control showing that the check can fail. The shims are installed into
//! this test binary's own GOT; libc calls below go through it, as
//! PostgreSQL's do. Raw bytes are read back with direct syscalls.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::*;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// open(2) through this binary's GOT (the shims).
fn open(p: &Path, flags: i32) -> i32 {
    let c = cpath(p);
    // SAFETY: a valid path; goes through the patched GOT.
    unsafe { libc::open(c.as_ptr(), flags, 0o600) }
}

fn write_all(fd: i32, data: &[u8]) -> isize {
    // SAFETY: a valid buffer; through the GOT.
    unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
}

fn close(fd: i32) -> i32 {
    // SAFETY: through the GOT.
    unsafe { libc::close(fd) }
}

/// Run `f` in a forked child and return its exit status (0 = all checks
/// held). The child never returns into the test harness.
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork in a test; the child only runs `f` and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: _exit runs no destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1000 + libc::WTERMSIG(status)
    }
}

/// Records of a spill-file stream: two full blocks and a 100-byte tail.
fn spill_stream() -> Vec<u8> {
    payload(2 * 8192 + 100, 42)
}

/// Append `data` in 100-byte records, as ReorderBufferSerializeChange does.
fn append_records(fd: i32, data: &[u8]) -> bool {
    data.chunks(100)
        .all(|r| write_all(fd, r) == r.len() as isize)
}

// --- 1. a failed append-tail seal must reach PostgreSQL -----------------------

/// In a child with RLIMIT_FSIZE just above two sealed blocks: the tail seal
/// at close hits EFBIG. Returns a code naming the first check that failed.
fn tail_seal_fails_at_close(dir: &Path, name: &str, limit: Option<u64>) -> i32 {
    let spill = dir.join(format!("pg_replslot/s1/{name}"));
    in_child(|| {
        if let Some(limit) = limit {
            // SAFETY: plain libc calls in the child.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: libc::RLIM_INFINITY,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &rl);
            }
        }
        let data = spill_stream();
        let fd = open(&spill, libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND);
        if fd < 0 {
            return 2;
        }
        if !append_records(fd, &data) {
            return 3; // the full blocks fit under the limit
        }
        let rc = close(fd);
        if limit.is_some() {
            if rc != -1 || errno() != libc::EFBIG {
                return 4; // close must report the lost tail
            }
            // Every later open of the file in this process fails.
            let fd = open(&spill, libc::O_RDONLY);
            if fd >= 0 || errno() != libc::EIO {
                return 5;
            }
            let fd = open(&spill, libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND);
            if fd >= 0 || errno() != libc::EIO {
                return 6;
            }
            // Removing the file clears it: a new file of that name is fine.
            let c = cpath(&spill);
            // SAFETY: through the GOT (the unlink shim).
            if unsafe { libc::unlink(c.as_ptr()) } != 0 {
                return 7;
            }
            let fd = open(&spill, libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND);
            if fd < 0 {
                return 8;
            }
            close(fd);
            return 0;
        }
        // Control: without the limit everything reads back.
        if rc != 0 {
            return 9;
        }
        match fs::read(&spill) {
            Ok(back) if back == data => 0,
            _ => 10,
        }
    })
}

#[test]
fn a_tail_that_cannot_be_sealed_at_close_poisons_the_file() {
    let (dir, _, _g) = setup();
    // Format v2: page 0 (header + metadata), then data blocks 0 and 1; the
    // tail would be data block 2 at 3 * 8192.
    let two_blocks = 3 * 8192u64;
    assert_eq!(
        tail_seal_fails_at_close(dir, "xid-1-lsn-0-1.spill", None),
        0,
        "control: without a size limit the stream reads back whole"
    );
    assert_eq!(
        tail_seal_fails_at_close(dir, "xid-2-lsn-0-1.spill", Some(two_blocks)),
        0,
        "EFBIG at close: close fails, later opens fail with EIO"
    );
}

// --- 2. non-regular files at covered names ------------------------------------

#[test]
fn a_fifo_or_symlink_at_a_covered_name_is_refused() {
    let (dir, _, _g) = setup();
    // FIFO at a spill-file name: the open fails at once (no blocking, no
    // plaintext into the pipe).
    let fifo = dir.join("pg_replslot/s1/xid-9-lsn-0-1.spill");
    let c = cpath(&fifo);
    // SAFETY: mkfifo is not interposed; a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for flags in [
        libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND,
        libc::O_RDONLY,
        libc::O_RDWR,
    ] {
        let fd = open(&fifo, flags);
        assert_eq!(fd, -1, "flags {flags:#x}");
        assert_eq!(errno(), libc::EIO);
    }
    // Symlink at a temp-file name: never followed.
    let target = dir.join("outside-target");
    let link = dir.join("base/pgsql_tmp/pgsql_tmp77.0");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fd = open(&link, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    assert_eq!(fd, -1);
    assert_eq!(errno(), libc::ELOOP);
    assert!(!target.exists(), "the link target was not created");
    // A directory at a covered name.
    let d = dir.join("base/pgsql_tmp/pgsql_tmp77.1");
    fs::create_dir(&d).unwrap();
    assert_eq!(open(&d, libc::O_RDONLY), -1);
    assert_eq!(errno(), libc::EIO);
    // Control: a regular file at a covered name opens.
    let ok = dir.join("base/pgsql_tmp/pgsql_tmp77.2");
    let fd = open(&ok, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    assert!(fd >= 0);
    assert_eq!(write_all(fd, MARKER), MARKER.len() as isize);
    assert_eq!(close(fd), 0);
    assert!(!contains(&raw_bytes(&ok), MARKER));
    // Control: the same symlink outside any covered name is followed.
    let plain_link = dir.join("base/5/plain-link");
    std::os::unix::fs::symlink(&target, &plain_link).unwrap();
    let fd = open(&plain_link, libc::O_RDWR | libc::O_CREAT);
    assert!(fd >= 0);
    close(fd);
    assert!(target.exists());
}

// --- 4. stale fd-table entries --------------------------------------------------

#[test]
fn a_number_reused_after_a_close_behind_our_back_is_not_sealed() {
    let (dir, _, _g) = setup();
    let covered = dir.join("base/pgsql_tmp/pgsql_tmp88.0");
    let fd = open(&covered, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    assert!(fd >= 0);
    // Closed behind our back: a raw syscall no shim sees.
    // SAFETY: closing our own fd.
    assert_eq!(unsafe { libc::syscall(libc::SYS_close, fd) }, 0);
    let plain = dir.join("base/5/16390");
    let fd2 = open(&plain, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    assert_eq!(fd2, fd, "the kernel hands out the lowest free number");
    assert_eq!(write_all(fd2, b"durable TENANT-SECRET-7"), 23);
    assert_eq!(close(fd2), 0);
    assert_eq!(
        raw_bytes(&plain),
        b"durable TENANT-SECRET-7",
        "plain file stays plain"
    );

    // The same through pipe(): its ends must not be taken for our file.
    let fd = open(&covered, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    assert!(fd >= 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::syscall(libc::SYS_close, fd) }, 0);
    let mut fds = [0i32; 2];
    // SAFETY: a valid out-array; through the GOT.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    assert!(fds.contains(&fd));
    let (r, w) = (fds[0], fds[1]);
    assert_eq!(write_all(w, b"hello"), 5);
    let mut buf = [0u8; 16];
    // SAFETY: valid buffer; through the GOT.
    let n = unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(&buf[..n as usize], b"hello", "the pipe carries plain bytes");
    close(r);
    close(w);

    // Control: an fd that really is ours is still sealed.
    let fd = open(&covered, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    assert_eq!(write_all(fd, MARKER), MARKER.len() as isize);
    close(fd);
    assert!(!contains(&raw_bytes(&covered), MARKER));
}

// --- 5. smaller defects -----------------------------------------------------

#[test]
fn fstat_counts_held_append_bytes() {
    let (dir, _, _g) = setup();
    let spill = dir.join("pg_replslot/s1/xid-20-lsn-0-1.spill");
    let fd = open(&spill, libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND);
    assert!(append_records(fd, &payload(300, 1)));
    // Control: the bytes are held, not on disk yet (only page 0 is).
    assert_eq!(raw_bytes(&spill).len(), 8192);
    assert_eq!(fstat_size_fd(fd), 300);
    close(fd);
}

fn fstat_size_fd(fd: i32) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: valid out-pointer; through the GOT.
    assert_eq!(unsafe { libc::fstat(fd, st.as_mut_ptr()) }, 0);
    // SAFETY: fstat succeeded.
    unsafe { st.assume_init() }.st_size as u64
}

#[test]
fn dup2_onto_a_tracked_fd_seals_its_tail_first() {
    let (dir, _, _g) = setup();
    let spill = dir.join("pg_replslot/s1/xid-21-lsn-0-1.spill");
    let data = payload(500, 2);
    let fd = open(&spill, libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND);
    assert!(append_records(fd, &data));
    assert_eq!(
        raw_bytes(&spill).len(),
        8192,
        "control: held, not sealed yet (page 0 only)"
    );
    let null = open(Path::new("/dev/null"), libc::O_RDWR);
    // SAFETY: through the GOT.
    assert_eq!(unsafe { libc::dup2(null, fd) }, fd);
    close(fd);
    close(null);
    assert_eq!(fs::read(&spill).unwrap(), data, "the tail survived dup2");
}

#[test]
fn lengths_beyond_isize_max_are_einval() {
    let (dir, _, _g) = setup();
    let p = dir.join("base/pgsql_tmp/pgsql_tmp89.0");
    let fd = open(&p, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    let mut buf = [0u8; 16];
    let huge = usize::MAX / 2 + 10;
    // SAFETY: the shims must reject the length before touching memory.
    unsafe {
        assert_eq!(libc::read(fd, buf.as_mut_ptr().cast(), huge), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(libc::pread(fd, buf.as_mut_ptr().cast(), huge, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(libc::write(fd, buf.as_ptr().cast(), huge), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(libc::pwrite(fd, buf.as_ptr().cast(), huge, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        // Control: a sane length works.
        assert_eq!(libc::pwrite(fd, buf.as_ptr().cast(), 16, 0), 16);
        assert_eq!(libc::pread(fd, buf.as_mut_ptr().cast(), 16, 0), 16);
    }
    close(fd);
}

#[test]
fn calls_that_would_bypass_the_layout_are_refused_on_our_fds() {
    let (dir, _, _g) = setup();
    let p = dir.join("base/pgsql_tmp/pgsql_tmp90.0");
    let fd = open(&p, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    assert_eq!(write_all(fd, &payload(9000, 3)), 9000);
    let plain = dir.join("base/5/16391");
    let pfd = open(&plain, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    // SAFETY: plain libc calls through the GOT, with valid arguments.
    unsafe {
        assert_eq!(libc::dup(fd), -1);
        assert_eq!(libc::fcntl(fd, libc::F_DUPFD, 0), -1);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, libc::O_APPEND), -1);
        assert_eq!(
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0
            ),
            libc::MAP_FAILED
        );
        let mut off: i64 = 0;
        assert_eq!(libc::sendfile(pfd, fd, &mut off, 100), -1);
        let f = libc::fdopen(fd, c"r".as_ptr());
        assert!(f.is_null());
        // Controls: the same calls on a plain fd work.
        let d = libc::dup(pfd);
        assert!(d >= 0);
        libc::close(d);
        assert!(libc::fcntl(pfd, libc::F_GETFL) >= 0);
    }
    // stdio may not write a covered name (COPY TO a temp-file name).
    let c = cpath(&dir.join("base/pgsql_tmp/pgsql_tmp90.1"));
    // SAFETY: valid strings; through the GOT.
    unsafe {
        assert!(libc::fopen(c.as_ptr(), c"w".as_ptr()).is_null());
        assert_eq!(errno(), libc::EACCES);
    }
    close(fd);
    close(pfd);
}

// --- format v2 through the shims: what the writing process remembers --------

#[test]
fn a_private_file_cut_or_removed_while_closed_is_an_error_at_reopen() {
    let (dir, _, _g) = setup();
    let data = payload(3 * 8192 + 100, 11);
    for (i, damage) in ["remove", "empty", "cut", "swap"].iter().enumerate() {
        let p = dir.join(format!("base/5/t3_{}", 17000 + i));
        let other = dir.join(format!("base/5/t3_{}", 17100 + i));
        for q in [&p, &other] {
            let fd = open(q, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
            assert!(fd >= 0);
            assert_eq!(write_all(fd, &data), data.len() as isize);
            assert_eq!(close(fd), 0);
        }
        // Control: reopening the untouched file reads it back.
        assert_eq!(fs::read(&p).unwrap(), data);
        match *damage {
            "remove" => {
                let c = cpath(&p);
                // SAFETY: a raw unlink no shim sees, with a valid path.
                let rc = unsafe { libc::syscall(libc::SYS_unlink, c.as_ptr()) };
                assert_eq!(rc, 0);
            }
            "empty" => raw_truncate(&p, 0),
            "cut" => raw_truncate(&p, 2 * 8192),
            "swap" => {
                let bytes = raw_bytes(&other);
                raw_truncate(&p, 0);
                raw_write_at(&p, 0, &bytes);
            }
            _ => unreachable!(),
        }
        let fd = open(&p, libc::O_RDWR);
        let mut buf = vec![0u8; 8192];
        if fd >= 0 {
            // SAFETY: valid buffer; through the GOT.
            let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            assert_eq!(n, -1, "{damage}: read after reopen");
            assert_eq!(errno(), libc::EIO, "{damage}");
            close(fd);
        } else {
            assert_eq!(errno(), libc::EIO, "{damage}: open");
        }
    }
    // Control: a covered path this process never wrote is a plain ENOENT.
    assert_eq!(open(&dir.join("base/5/t3_19999"), libc::O_RDWR), -1);
    assert_eq!(errno(), libc::ENOENT);
}

fn raw_truncate(p: &Path, len: i64) {
    let c = cpath(p);
    // SAFETY: a raw syscall with a valid path.
    let rc = unsafe { libc::syscall(libc::SYS_truncate, c.as_ptr(), len) };
    assert_eq!(rc, 0);
}

/// copy_file_range(2) through this binary's GOT.
fn copy_range(from: i32, to: i32, len: usize) -> isize {
    // SAFETY: two fds of this process, null offsets (the file positions).
    unsafe { libc::copy_file_range(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, 0) }
}

/// The kernel's copy_file_range moves physical bytes: out of a covered file
/// it would copy ciphertext under another name, into one plaintext past the
/// format. The shim refuses either direction with EXDEV (callers such as
/// 18's `CREATE DATABASE ... STRATEGY = FILE_COPY` fall back to read and
/// write); between two uncovered files it passes through (the control).
#[test]
fn copy_file_range_touching_a_covered_file_is_exdev() {
    let (dir, _report, _guard) = setup();
    let covered = dir.join("base/pgsql_tmp/pgsql_tmp4242.77");
    let plain_a = dir.join("base/5/cfr_a");
    let plain_b = dir.join("base/5/cfr_b");
    for p in [&covered, &plain_a, &plain_b] {
        let _ = fs::remove_file(p);
    }
    let data = payload(20_000, 5);
    let c = open(&covered, libc::O_RDWR | libc::O_CREAT);
    let a = open(&plain_a, libc::O_RDWR | libc::O_CREAT);
    let b = open(&plain_b, libc::O_RDWR | libc::O_CREAT);
    assert!(c >= 0 && a >= 0 && b >= 0);
    assert_eq!(write_all(c, &data), data.len() as isize);
    assert_eq!(write_all(a, &data), data.len() as isize);
    // SAFETY: rewind our fds (through the GOT).
    unsafe {
        libc::lseek(c, 0, libc::SEEK_SET);
        libc::lseek(a, 0, libc::SEEK_SET);
    }

    // Out of the covered file, and into it.
    assert_eq!(copy_range(c, b, data.len()), -1);
    assert_eq!(errno(), libc::EXDEV);
    assert_eq!(copy_range(a, c, data.len()), -1);
    assert_eq!(errno(), libc::EXDEV);
    assert_eq!(
        fs::metadata(&plain_b).unwrap().len(),
        0,
        "nothing was copied out"
    );
    assert!(
        !contains(&raw_bytes(&covered), MARKER),
        "no plaintext reached the covered file"
    );

    // Control: between two uncovered files the call works.
    let n = copy_range(a, b, data.len());
    assert_eq!(
        n,
        data.len() as isize,
        "control copy: {}",
        std::io::Error::last_os_error()
    );
    assert_eq!(fs::read(&plain_b).unwrap(), data);

    for fd in [c, a, b] {
        close(fd);
    }
}
