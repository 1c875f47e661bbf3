//! Shared files across processes with the change counters of FORMAT.md §8.2
//! (shim/changes.rs): a reader keeps its handle open while a writer in
//! another process rewrites and appends between the reader's calls. Every
//! read must see the writer's latest bytes and length, and the reader's
//! repeated calls between two writes skip revalidation. Control: a writer
//! that does not bump the counter (as one outside the shims would) leaves
//! the reader with stale state, which the same checks catch.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;

use common::{fileset_member, fstat_size, payload, pipe, recv, send, setup};
use ephcrypt_interpose::shim::changes;

const B: usize = 8192;
const ROUNDS: u64 = 40;

fn block(round: u64) -> Vec<u8> {
    payload(B, 1000 + round)
}

/// Returns (reads that saw stale or failed, calls the reader skipped).
fn run(tag: &str, writer_bumps: bool) -> (u64, u64) {
    let (dir, _, _g) = setup();
    let mut first = block(0);
    first.extend_from_slice(&block(0));
    let path = fileset_member(dir, 7, tag, &first);
    let reader = fs::File::open(&path).unwrap();
    let (go_r, go_w) = pipe();
    let (done_r, done_w) = pipe();
    // SAFETY: fork in a test; the child only writes through the shims and
    // _exits without running destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = std::panic::catch_unwind(|| {
            changes::disable_bumps_for_tests(!writer_bumps);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            for round in 1..=ROUNDS {
                if !recv(go_r) {
                    break;
                }
                // Rewrite block 1 and append a block: both the length and
                // a block the reader has read change.
                f.write_all_at(&block(round), B as u64).unwrap();
                f.write_all_at(&block(round), (round + 1) * B as u64)
                    .unwrap();
                send(done_w);
            }
        })
        .map_or(1, |_| 0);
        // SAFETY: _exit runs no destructors.
        unsafe { libc::_exit(code) };
    }
    let skipped_before = changes::skipped();
    let mut stale = 0u64;
    let mut buf = vec![0u8; B];
    for round in 0..=ROUNDS {
        // Twice between writes: the second call may skip revalidation.
        for _ in 0..2 {
            let len = fstat_size(&reader);
            let want_len = (round + 2) * B as u64;
            let ok_len = len == want_len;
            let ok_block = reader.read_exact_at(&mut buf, B as u64).is_ok() && buf == block(round);
            let last = (round + 1) * B as u64;
            let ok_last = reader.read_exact_at(&mut buf, last).is_ok() && buf == block(round);
            if !(ok_len && ok_block && ok_last) {
                stale += 1;
            }
        }
        if round < ROUNDS {
            send(go_w);
            assert!(recv(done_r), "writer died");
        }
    }
    let skipped = changes::skipped() - skipped_before;
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0, "writer failed");
    for fd in [go_r, go_w, done_r, done_w] {
        // SAFETY: closing our pipe fds.
        unsafe { libc::close(fd) };
    }
    drop(reader);
    fs::remove_file(&path).unwrap();
    (stale, skipped)
}

#[test]
fn a_reader_sees_every_write_of_another_process_and_skips_only_between_them() {
    let (stale, skipped) = run("bumping", true);
    assert_eq!(stale, 0, "every read saw the other process's latest write");
    // Each round's second fstat and both reads after the first fstat, at
    // least: the reader's calls between two writes skip.
    assert!(
        skipped >= 3 * ROUNDS,
        "the reader skipped revalidation only {skipped} times"
    );
}

#[test]
fn control_a_writer_that_does_not_bump_leaves_the_reader_stale() {
    let (stale, _) = run("silent", false);
    assert!(
        stale >= ROUNDS / 2,
        "without bumps the reader should have gone stale ({stale} stale reads)"
    );
}

// From an attacker review: the other ways a file changes under a kept
// handle. Each fails without its fix (noted per test).

/// A private writer fd and a read-only fd of the same process (the reader
/// makes the file aliased, read in shared mode): every write must close its
/// bump bracket, or the reader keeps serving the length and blocks it saw
/// after the first one (without the fix: stale from the second round on).
#[test]
fn an_aliased_reader_follows_every_write_of_the_private_writer() {
    let (dir, _, _g) = setup();
    let path = dir.join("base/pgsql_tmp/pgsql_tmp4343.1");
    let _ = fs::remove_file(&path);
    let w = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    w.write_all_at(&block(1), 0).unwrap();
    let r = fs::File::open(&path).unwrap();
    assert_eq!(fstat_size(&r), B as u64);
    let before = changes::skipped();
    let mut buf = vec![0u8; B];
    for i in 1..8u64 {
        w.write_all_at(&block(1 + i), i * B as u64).unwrap();
        assert_eq!(fstat_size(&r), (i + 1) * B as u64, "round {i}: length");
        r.read_exact_at(&mut buf, i * B as u64).unwrap();
        assert_eq!(buf, block(1 + i), "round {i}: the new block");
        // Between two writes the reader's calls may skip.
        r.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, block(1));
    }
    assert!(
        changes::skipped() > before,
        "the reader never skipped: the test would not see a stale skip"
    );
    drop(r);
    drop(w);
    fs::remove_file(&path).unwrap();
}

/// An O_APPEND writer aliased by a reader fd: the writer's tail, sealed on
/// behalf of the reader's call, reaches the disk in that call (without the
/// fix the reader lagged one write behind).
#[test]
fn an_aliased_reader_sees_an_append_writers_tail() {
    use std::io::Write;
    let (dir, _, _g) = setup();
    let path = dir.join("pg_replslot/s1/xid-77-lsn-0-1.spill");
    let _ = fs::remove_file(&path);
    let mut a = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .unwrap();
    let rec = payload(100, 9);
    let mut all = rec.clone();
    a.write_all(&rec).unwrap();
    let r = fs::File::open(&path).unwrap();
    for i in 0..6 {
        a.write_all(&rec).unwrap();
        all.extend_from_slice(&rec);
        assert_eq!(fstat_size(&r), all.len() as u64, "round {i}: length");
        let mut buf = vec![0u8; all.len()];
        r.read_exact_at(&mut buf, 0).unwrap();
        assert!(buf == all, "round {i}: content");
    }
    drop(r);
    drop(a);
    fs::remove_file(&path).unwrap();
}

fn kept_reader_after_truncating_open(tag: &str, read_only: bool) {
    let (dir, _, _g) = setup();
    let path = fileset_member(dir, 9, tag, &payload(2 * B, 3));
    let r = fs::File::open(&path).unwrap();
    let before = changes::skipped();
    assert_eq!(fstat_size(&r), 2 * B as u64);
    assert_eq!(fstat_size(&r), 2 * B as u64);
    assert!(changes::skipped() > before, "control: the reader skips");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let flags = if read_only {
        libc::O_RDONLY | libc::O_TRUNC
    } else {
        libc::O_RDWR | libc::O_TRUNC
    };
    // SAFETY: a valid path, through the GOT (the shims).
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    assert!(fd >= 0);
    // The length first: a stale skip would keep it without touching the
    // disk (a read would fail on the missing block and so revalidate).
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: a valid fd and out-pointer, through the GOT.
    let rc = unsafe { libc::fstat(r.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: read only if fstat succeeded.
    let len = (rc == 0).then(|| unsafe { st.assume_init() }.st_size as u64);
    assert_ne!(
        len,
        Some(2 * B as u64),
        "the kept reader kept the old length"
    );
    let mut buf = vec![0u8; B];
    let read = r.read_at(&mut buf, 0);
    assert!(
        !matches!(read, Ok(n) if n > 0),
        "the kept reader returned the old bytes: {read:?}"
    );
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    drop(r);
    fs::remove_file(&path).unwrap();
}

/// A shared file truncated by an O_TRUNC open while a reader elsewhere keeps
/// its state (without any bump at the open: old length kept; the bump after
/// the new header alone also passes this test, the ones around the
/// truncation only narrow the window before it).
#[test]
fn a_kept_reader_sees_a_truncating_open() {
    kept_reader_after_truncating_open("rw", false);
}

/// The same with O_RDONLY|O_TRUNC, which Linux truncates inside open() (no
/// new header: without the bump after the open, the old length is kept).
#[test]
fn a_kept_reader_sees_a_read_only_truncating_open() {
    kept_reader_after_truncating_open("ro", true);
}
