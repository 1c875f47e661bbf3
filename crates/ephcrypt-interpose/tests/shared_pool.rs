//! The shared page pool of FORMAT.md §8.3 (shim/pool.rs) across processes:
//! a file-set member's writer publishes its metadata pages instead of
//! writing them, a reader in another process reads the file through the
//! pool while the disk holds only data blocks, and close or exit drains
//! the pages (sealed) to disk. Controls: a reader that cannot see the
//! pool's pages fails (the disk alone is stale), and a writer that leaves
//! through `_exit` (no exit callback) leaves its pages in the pool, where
//! readers still find them.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{fileset_member, payload, raw_bytes, setup};
use ephcrypt_format::{meta_offset, PAGE_SIZE};
use ephcrypt_interpose::shim::pool;

/// Three groups and a bit: pages 0 to 3.
const LEN: usize = 3 * 256 * 8192 + 100;

fn content() -> Vec<u8> {
    payload(LEN, 77)
}

/// Group `g`'s metadata page as the disk holds it.
fn disk_page(path: &Path, g: u64) -> Vec<u8> {
    let raw = raw_bytes(path);
    let at = meta_offset(g) as usize;
    raw.get(at..at + PAGE_SIZE)
        .map_or_else(Vec::new, <[u8]>::to_vec)
}

/// A sealed page: present, and its trailer is a MAC tag, not a stamp.
fn sealed(page: &[u8]) -> bool {
    page.len() == PAGE_SIZE && !page.iter().all(|&b| b == 0) && &page[PAGE_SIZE - 4..] != b"POOL"
}

/// Fork a child that runs `f` and exits with its result (0 = success).
fn in_child(f: impl FnOnce() -> bool) -> i32 {
    // SAFETY: fork in a test; the child runs `f` and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
        // SAFETY: _exit runs no destructors.
        unsafe { libc::_exit(i32::from(!ok)) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

fn reads_back(path: &Path, want: &[u8]) -> bool {
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let mut got = vec![0u8; want.len()];
    f.read_exact_at(&mut got, 0).is_ok() && got == want
}

fn open_rw(path: &Path) -> fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// Open a member read-write and write `content()` at 0 through the shims.
fn write_content(path: &Path) -> (fs::File, Vec<u8>) {
    let w = open_rw(path);
    let data = content();
    w.write_all_at(&data, 0).unwrap();
    (w, data)
}

#[test]
fn a_reader_elsewhere_reads_through_the_pool_and_close_drains_it() {
    let (dir, _, _g) = setup();
    let before = pool::occupied();
    let path = fileset_member(dir, 11, "pool", &[]);
    let (w, data) = write_content(&path);
    // Published, not written: page 1 is a hole on disk, page 0 is the one
    // create wrote (count 0).
    assert!(pool::occupied() >= before + 4, "pages 0 to 3 published");
    assert!(disk_page(&path, 1).iter().all(|&b| b == 0));
    assert_eq!(in_child(|| reads_back(&path, &data)), 0, "reader elsewhere");
    drop(w);
    assert_eq!(pool::occupied(), before, "close drained every page");
    for g in 0..4 {
        assert!(sealed(&disk_page(&path, g)), "page {g} sealed on disk");
    }
    assert_eq!(in_child(|| reads_back(&path, &data)), 0, "after the drain");
    fs::remove_file(&path).unwrap();
}

#[test]
fn control_a_reader_without_the_pool_pages_fails() {
    let (dir, _, _g) = setup();
    let path = fileset_member(dir, 12, "pool", &[]);
    let (w, data) = write_content(&path);
    // The child empties the pool (as a pool mapped after fork would look
    // to it): the disk's pages are older than the data.
    let status = in_child(|| {
        pool::reset();
        reads_back(&path, &data)
    });
    assert_ne!(status, 0, "the disk alone must not read back");
    drop(w);
    fs::remove_file(&path).unwrap();
}

#[test]
fn exit_drains_and_underscore_exit_leaves_the_pages_readable() {
    let (dir, _, _g) = setup();
    let data = content();
    let before = pool::occupied();
    for (tag, clean_exit) in [("exit", true), ("quick", false)] {
        let path = fileset_member(dir, 13, tag, &[]);
        // SAFETY: fork in a test; the child writes through the shims and
        // leaves by exit() (running the exit callback) or _exit().
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = std::panic::catch_unwind(|| {
                let w = open_rw(&path);
                w.write_all_at(&data, 0).unwrap();
                std::mem::forget(w); // left open
            })
            .is_ok();
            // SAFETY: leaving the child; exit() runs the atexit callbacks.
            unsafe {
                if clean_exit {
                    libc::exit(i32::from(!ok));
                }
                libc::_exit(i32::from(!ok));
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0);
        if clean_exit {
            assert_eq!(pool::occupied(), before, "exit drained");
            assert!(sealed(&disk_page(&path, 1)));
        } else {
            assert!(pool::occupied() >= before + 4, "its pages stay");
            assert!(disk_page(&path, 1).iter().all(|&b| b == 0));
        }
        assert!(reads_back(&path, &data), "{tag}: readable");
        fs::remove_file(&path).unwrap();
    }
    // What the crash-restart does for pages of dead writers.
    pool::reset();
    assert_eq!(pool::occupied(), 0);
}

/// A writer's fd closed behind the shims' back (its number then reused)
/// never drains: its pages stay published, readers still find them, and
/// the next close of a writable handle of the file in the same process
/// drains them (a review finding: they used to stay in the pool for good);
/// a read-only handle cannot write them, and leaves them.
#[test]
fn a_forgotten_writers_pages_are_drained_by_the_next_close_in_that_process() {
    use std::os::fd::IntoRawFd;
    let (dir, _, _g) = setup();
    let before = pool::occupied();
    let path = fileset_member(dir, 14, "forgot", &[]);
    let (w, data) = write_content(&path);
    let fd = w.into_raw_fd();
    // SAFETY: closing our own fd with a raw syscall (no shim sees it).
    unsafe { libc::syscall(libc::SYS_close, fd) };
    let other = fileset_member(dir, 14, "other", b"x");
    drop(open_rw(&other));
    assert!(pool::occupied() >= before + 4, "still published");
    assert!(disk_page(&path, 1).iter().all(|&b| b == 0), "not on disk");
    assert_eq!(
        in_child(|| reads_back(&path, &data)),
        0,
        "readers use the pool"
    );
    // A read-only open and close cannot write the pages: they stay.
    assert!(reads_back(&path, &data));
    assert!(pool::occupied() >= before + 4);
    // A writable one drains what this process owns.
    drop(open_rw(&path));
    assert_eq!(pool::occupied(), before);
    assert!(sealed(&disk_page(&path, 1)));
    assert_eq!(in_child(|| reads_back(&path, &data)), 0, "after the drain");
    fs::remove_file(&path).unwrap();
    fs::remove_file(&other).unwrap();
}
