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

use common::{fstat_size, payload, setup};
use ephcrypt_interpose::shim::changes;

const B: usize = 8192;
const ROUNDS: u64 = 40;

fn block(round: u64) -> Vec<u8> {
    payload(B, 1000 + round)
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn send(fd: i32) {
    // SAFETY: one byte from a valid buffer to our pipe.
    assert_eq!(unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) }, 1);
}

fn recv(fd: i32) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: one byte into a valid buffer from our pipe.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) == 1 }
}

/// Returns (reads that saw stale or failed, calls the reader skipped).
fn run(tag: &str, writer_bumps: bool) -> (u64, u64) {
    let (dir, _, _g) = setup();
    let set = dir.join(format!(
        "base/pgsql_tmp/pgsql_tmp{}.7.fileset",
        std::process::id()
    ));
    fs::create_dir_all(&set).unwrap();
    let path = set.join(format!("{tag}.0"));
    let _ = fs::remove_file(&path);
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all_at(&block(0), 0).unwrap();
        f.write_all_at(&block(0), B as u64).unwrap();
    }
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
