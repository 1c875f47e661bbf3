//! The `wal` class through the shims installed into this test binary's GOT,
//! as PostgreSQL drives it: segments created as `xlogtemp.<pid>`, zero
//! filled (or sparse) and renamed into place; pages rewritten in place
//! while another process reads them; history files renamed out of the
//! class; restored segments renamed into it; the start-up pass.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use ephcrypt_classify::ArtifactClass;
use ephcrypt_format::{EpochKey, FileName, Mode, SealedFile, VecIo};
use ephcrypt_interpose::secmem::{self, AllocMode};
use ephcrypt_interpose::shim::pool;
use ephcrypt_interpose::shim::wal::{self, StartupPolicy};
use ephcrypt_interpose::walkey;

const SEG: u64 = 16 * 1024 * 1024;
const PAGE: usize = 8192;

fn wal_dir() -> (&'static Path, std::sync::MutexGuard<'static, ()>) {
    let (dir, _report, guard) = setup();
    fs::create_dir_all(dir.join("pg_wal/archive_status")).unwrap();
    walkey::start(AllocMode::Auto, 7).unwrap();
    (dir, guard)
}

/// A segment as XLogFileInit makes it: xlogtemp.<pid>, O_CREAT|O_EXCL,
/// zero-filled with 32-page writes (or one byte at the end), fsync,
/// close, rename.
fn create_segment(dir: &Path, name: &str, sparse: bool) {
    let tmp = dir.join(format!("pg_wal/xlogtemp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .unwrap();
    if sparse {
        f.write_all_at(&[0], SEG - 1).unwrap();
    } else if name.ends_with('1') {
        // PostgreSQL's way: pwritev of PG_IOV_MAX (32) iovecs of one zero page.
        use std::os::fd::AsRawFd;
        let zero = vec![0u8; PAGE];
        let iov: Vec<libc::iovec> = (0..32)
            .map(|_| libc::iovec {
                iov_base: zero.as_ptr() as *mut libc::c_void,
                iov_len: PAGE,
            })
            .collect();
        let mut off = 0u64;
        while off < SEG {
            // SAFETY: 32 valid iovecs over a live buffer; goes through the GOT.
            let n = unsafe { libc::pwritev(f.as_raw_fd(), iov.as_ptr(), 32, off as i64) };
            assert_eq!(n, 32 * PAGE as isize);
            off += n as u64;
        }
    } else {
        let zeros = vec![0u8; 32 * PAGE];
        let mut off = 0;
        while off < SEG {
            f.write_all_at(&zeros, off).unwrap();
            off += zeros.len() as u64;
        }
    }
    f.sync_all().unwrap();
    drop(f);
    fs::rename(&tmp, dir.join("pg_wal").join(name)).unwrap();
}

/// Create (or replace) a file with `data` through raw syscalls, which no
/// shim sees (a file written by another program).
fn raw_create(path: &Path, data: &[u8]) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: direct syscalls on a path and an fd we own.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        ) as i32;
        assert!(fd >= 0);
        let mut off = 0usize;
        while off < data.len() {
            let n = libc::syscall(
                libc::SYS_pwrite64,
                fd,
                data[off..].as_ptr(),
                data.len() - off,
                off as i64,
            );
            assert!(n > 0);
            off += n as usize;
        }
        libc::syscall(libc::SYS_close, fd);
    }
}

/// link(2) through this binary's GOT (std's hard_link calls linkat).
fn link(from: &Path, to: &Path) {
    let a = std::ffi::CString::new(from.as_os_str().as_encoded_bytes()).unwrap();
    let b = std::ffi::CString::new(to.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: two valid NUL-terminated paths.
    assert_eq!(unsafe { libc::link(a.as_ptr(), b.as_ptr()) }, 0, "link");
}

fn page_with(version: u32, fill: usize) -> Vec<u8> {
    // A WAL-like tail page: a prefix that only grows, zeros after it.
    let mut p = vec![0u8; PAGE];
    let marker = payload(fill, 99);
    p[..fill].copy_from_slice(&marker);
    p[PAGE - 4..].copy_from_slice(&version.to_le_bytes());
    p
}

#[test]
fn segments_are_sealed_sized_and_survive_renames_and_epoch_rotation() {
    let (dir, _g) = wal_dir();
    for (name, sparse) in [
        ("000000010000000000000001", false),
        ("000000010000000000000002", true),
    ] {
        create_segment(dir, name, sparse);
        let path = dir.join("pg_wal").join(name);
        let raw = raw_bytes(&path);
        assert!(raw.starts_with(b"PGEPHCR\0"), "{name}: sealed header");
        // 16 MiB of data plus one metadata page per 2 MiB group.
        assert_eq!(raw.len() as u64, SEG + 8 * PAGE as u64, "{name}");
        assert_eq!(
            stat_size(&path),
            SEG,
            "{name}: stat reports the logical size"
        );
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert_eq!(fstat_size(&f), SEG, "{name}: fstat");
        // Untouched pages read as zeros (a sparse segment too): sealed zero
        // blocks, never holes.
        let mut buf = vec![1u8; 128 * 1024];
        f.read_exact_at(&mut buf, 5 * 1024 * 1024).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "{name}: zeros");
        // XLogWrite: whole pages at page offsets, the tail rewritten.
        let p1 = page_with(1, 100);
        let p2 = page_with(2, 5000);
        f.write_all_at(&p1, 3 * PAGE as u64).unwrap();
        f.write_all_at(&p2, 3 * PAGE as u64).unwrap();
        // The walreceiver: arbitrary ranges.
        f.write_all_at(&payload(3000, 5), 10 * PAGE as u64 + 77)
            .unwrap();
        let mut back = vec![0u8; PAGE];
        f.read_exact_at(&mut back, 3 * PAGE as u64).unwrap();
        assert!(back == p2);
        assert_eq!(fstat_size(&f), SEG, "{name}: writes inside keep the size");
        drop(f);
        assert!(!contains(&raw_bytes(&path), MARKER), "{name}: no plaintext");
    }
    // Recycling: a segment renamed to a future name stays readable.
    let old = dir.join("pg_wal/000000010000000000000001");
    let future = dir.join("pg_wal/000000010000000000000009");
    fs::rename(&old, &future).unwrap();
    let mut back = vec![0u8; PAGE];
    fs::File::open(&future)
        .unwrap()
        .read_exact_at(&mut back, 3 * PAGE as u64)
        .unwrap();
    assert!(back == page_with(2, 5000));
    // link() within the class too (durable_rename_excl of older minors).
    let linked = dir.join("pg_wal/00000001000000000000000A");
    link(&future, &linked);
    fs::File::open(&linked)
        .unwrap()
        .read_exact_at(&mut back, 3 * PAGE as u64)
        .unwrap();
    assert!(back == page_with(2, 5000));

    // A crash-restart rotates the epoch key: temp files of the old epoch
    // are unreadable, WAL (under the WAL key) is not.
    let temp = dir.join("base/pgsql_tmp/pgsql_tmp7.0");
    fs::write(&temp, payload(10_000, 1)).unwrap();
    secmem::start_epoch(AllocMode::Auto, 8).unwrap();
    assert!(
        fs::read(&temp).is_err(),
        "control: the old epoch's temp file"
    );
    fs::File::open(&future)
        .unwrap()
        .read_exact_at(&mut back, 3 * PAGE as u64)
        .unwrap();
    assert!(
        back == page_with(2, 5000),
        "WAL readable after the rotation"
    );
    fs::remove_file(&temp).unwrap();
    for f in [
        &future,
        &linked,
        &dir.join("pg_wal/000000010000000000000002"),
    ] {
        fs::remove_file(f).unwrap();
    }
}

#[test]
fn renames_out_of_the_class_unseal_and_into_it_seal() {
    let (dir, _g) = wal_dir();
    // writeTimeLineHistory: xlogtemp.<pid> written with write(), renamed
    // to <tli>.history, then read with stdio: it must be plaintext.
    let text = b"1\t0/3000060\tno recovery target specified\n";
    let tmp = dir.join("pg_wal/xlogtemp.4242");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .unwrap();
    f.write_all(text).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert!(
        raw_bytes(&tmp).starts_with(b"PGEPHCR\0"),
        "sealed while temporary"
    );
    let history = dir.join("pg_wal/00000002.history");
    fs::rename(&tmp, &history).unwrap();
    assert!(
        raw_bytes(&history) == text,
        "plaintext under its history name"
    );
    assert!(!tmp.exists());
    // The same through link() + unlink() (durable_rename_excl).
    let tmp2 = dir.join("pg_wal/xlogtemp.4243");
    fs::write(&tmp2, text).unwrap();
    let history3 = dir.join("pg_wal/00000003.history");
    link(&tmp2, &history3);
    fs::remove_file(&tmp2).unwrap();
    assert!(
        raw_bytes(&history3) == text,
        "link out of the class unseals too"
    );

    // KeepFileRestoredFromArchive: a plaintext RECOVERYXLOG written by
    // restore_command, renamed to a segment name: sealed on the way in.
    let restored = dir.join("pg_wal/RECOVERYXLOG");
    let content = payload(3 * 1024 * 1024 + 123, 42);
    fs::write(&restored, &content).unwrap();
    assert!(
        contains(&raw_bytes(&restored), MARKER),
        "control: plaintext before"
    );
    let seg = dir.join("pg_wal/000000010000000000000005");
    fs::rename(&restored, &seg).unwrap();
    assert!(!restored.exists());
    let raw = raw_bytes(&seg);
    assert!(raw.starts_with(b"PGEPHCR\0"));
    assert!(!contains(&raw, MARKER), "sealed under its segment name");
    assert_eq!(stat_size(&seg), content.len() as u64);
    assert!(
        fs::read(&seg).unwrap() == content,
        "readable through the shims"
    );
    // A plaintext file put at a WAL name behind our back never reads.
    let planted = dir.join("pg_wal/000000010000000000000006");
    raw_create(&planted, &content[..PAGE]);
    assert!(fs::read(&planted).is_err(), "plaintext at a WAL name: EIO");
    for f in [&history, &history3, &seg, &planted] {
        fs::remove_file(f).unwrap();
    }
}

#[test]
fn readers_retry_a_tail_page_rewritten_by_another_process() {
    let (dir, _g) = wal_dir();
    create_segment(dir, "000000010000000000000011", false);
    let path = dir.join("pg_wal/000000010000000000000011");
    let tail = 300u64; // a page in group 1: its metadata page is rewritten too
    let rounds = 4000u32;
    let stop = dir.join("writer.stop");
    let last_version = dir.join("writer.last");
    let _ = fs::remove_file(&stop);
    // SAFETY: fork in a test; the child only writes through the shims and
    // _exits without running destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = std::panic::catch_unwind(|| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            // Rewrite until the reader has overlapped enough (a loaded
            // machine may otherwise finish the writes before it reads),
            // then say which version was last.
            let mut v = 0u32;
            let started = std::time::Instant::now();
            while v < rounds
                || (!stop.exists() && started.elapsed() < std::time::Duration::from_secs(60))
            {
                v += 1;
                let fill = 16 + (v as usize * 2) % (PAGE - 64);
                f.write_all_at(&page_with(v, fill), tail * PAGE as u64)
                    .unwrap();
                // A flush rate PostgreSQL can reach with fsync = off (one
                // tail rewrite per ~20-80 µs). Back-to-back rewrites with no
                // gap at all would tear nearly every 128 kB read attempt
                // and starve the reader; XLogWrite never runs that way.
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            fs::write(&last_version, v.to_le_bytes()).unwrap();
        })
        .map_or(1, |_| 0);
        // SAFETY: _exit runs no destructors.
        unsafe { libc::_exit(code) };
    }
    let f = fs::File::open(&path).unwrap();
    let before = wal::retries();
    let (mut reads, mut status) = (0u64, 0);
    let mut buf = vec![0u8; 16 * PAGE];
    loop {
        // Walsender-style: 128 kB around the tail page, and the page alone.
        f.read_exact_at(&mut buf, (tail - 8) * PAGE as u64)
            .expect("a reader never fails while the tail is rewritten");
        let page = &buf[8 * PAGE..9 * PAGE];
        let v = u32::from_le_bytes(page[PAGE - 4..].try_into().unwrap());
        if v != 0 {
            let fill = 16 + (v as usize * 2) % (PAGE - 64);
            assert!(page == &page_with(v, fill)[..], "an authentic version");
        }
        assert!(buf[..8 * PAGE].iter().all(|&b| b == 0));
        reads += 1;
        if reads == 300 {
            fs::write(&stop, b"").unwrap();
        }
        // SAFETY: waitpid on our child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "writer ok"
    );
    assert!(reads >= 300, "reads overlapped the writes ({reads})");
    eprintln!(
        "{reads} reads during {rounds} rewrites, {} retries",
        wal::retries() - before
    );
    let mut last = vec![0u8; PAGE];
    f.read_exact_at(&mut last, tail * PAGE as u64).unwrap();
    let v = u32::from_le_bytes(fs::read(&last_version).unwrap().try_into().unwrap());
    assert!(v >= rounds);
    let fill = 16 + (v as usize * 2) % (PAGE - 64);
    assert!(last == page_with(v, fill), "the last write wins");
    fs::remove_file(&stop).unwrap();
    fs::remove_file(&last_version).unwrap();

    // Control: a genuinely damaged block fails, after a bounded wait.
    let phys = (tail + tail / 256 + 1) * PAGE as u64 + 10;
    let mut b = raw_bytes(&path)[phys as usize];
    b ^= 0x40;
    raw_write_at(&path, phys, &[b]);
    let t = std::time::Instant::now();
    let err = f.read_exact_at(&mut last, tail * PAGE as u64).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    drop(f);
    fs::remove_file(&path).unwrap();
}

extern "C" fn exit_at_once(_: libc::c_int) {
    // SAFETY: async-signal-safe; as PostgreSQL's SignalHandlerForCrashExit.
    unsafe { libc::_exit(2) };
}

/// Writers ended by `signal` in the middle of tail-page rewrites (a page
/// whose first 100 bytes were written, "flushed", before), then a read of
/// that page under the same WAL key, as crash recovery does it. Returns how
/// many of at most `rounds` kills left the page unreadable; stops at the
/// first one when `stop_at_first`.
fn kill_tail_writers(
    path: &Path,
    tail: u64,
    signal: libc::c_int,
    write_ahead: bool,
    rounds: u64,
    stop_at_first: bool,
) -> u64 {
    let durable = 100usize;
    let mut torn = 0;
    for round in 0..rounds {
        {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            f.write_all_at(&page_with(1, durable), tail * PAGE as u64)
                .unwrap();
        }
        // SAFETY: fork in a test; the child only writes through the shims
        // until it is killed.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            wal::set_write_ahead(write_ahead);
            // SAFETY: installing an async-signal-safe handler in our child.
            unsafe {
                libc::signal(
                    libc::SIGQUIT,
                    exit_at_once as *const () as libc::sighandler_t,
                )
            };
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            let mut fill = durable;
            loop {
                // XLogWrite's tail page: the flushed prefix, then more.
                fill = if fill >= PAGE - 64 { durable } else { fill + 8 };
                let mut page = page_with(1, fill);
                page[PAGE - 4..].copy_from_slice(&[0; 4]);
                page[..durable].copy_from_slice(&page_with(1, durable)[..durable]);
                let _ = f.write_all_at(&page, tail * PAGE as u64);
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(
            2000 + (round * 373) % 3000,
        ));
        // SAFETY: our child.
        unsafe { libc::kill(pid, signal) };
        let mut st = 0;
        // SAFETY: our child, valid out-pointer.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        // What the postmaster does next (a child died: crash-restart): the
        // page pool keeps its WAL pages, and a set the dead writer held
        // (killed inside a publish) is released (shim/pool.rs).
        pool::reset();
        let f = fs::File::open(path).unwrap();
        let mut buf = vec![0u8; durable];
        match f.read_exact_at(&mut buf, tail * PAGE as u64) {
            Ok(()) => assert_eq!(buf, page_with(1, durable)[..durable], "the flushed bytes"),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "never other bytes");
                torn += 1;
                if stop_at_first {
                    break;
                }
            }
        }
    }
    torn
}

/// PostgreSQL ends its children from a SIGQUIT handler at a crash-restart
/// (`_exit(2)`, possibly between a rewrite's two writes); no signals are held
/// (DECISIONS.md #61): the write ahead (the metadata page first, the
/// previous version kept, FORMAT.md §14) must leave the flushed bytes of the
/// tail page readable. Control: the same writers without write ahead tear
/// the page.
#[test]
fn a_writer_ended_by_a_signal_handler_mid_rewrite_keeps_flushed_bytes() {
    let (dir, _g) = wal_dir();
    create_segment(dir, "000000010000000000000015", false);
    let path = dir.join("pg_wal/000000010000000000000015");
    let tail = 300u64;
    let torn = kill_tail_writers(&path, tail, libc::SIGQUIT, true, 100, false);
    assert_eq!(torn, 0, "{torn} of 100 SIGQUIT kills tore the tail page");
    let torn = kill_tail_writers(&path, tail, libc::SIGQUIT, false, 400, true);
    assert_eq!(
        torn, 1,
        "the check can fail: 400 SIGQUIT kills without write ahead never tore the page"
    );
    fs::remove_file(&path).unwrap();
}

/// SIGKILL (the OOM killer) cannot be caught. With write ahead a writer
/// killed between its two writes leaves the previous version readable
/// (FORMAT.md §14). Control: without write ahead the same kills tear the
/// page.
#[test]
fn a_writer_killed_by_sigkill_mid_rewrite_keeps_flushed_bytes_with_write_ahead() {
    let (dir, _g) = wal_dir();
    create_segment(dir, "000000010000000000000016", false);
    let path = dir.join("pg_wal/000000010000000000000016");
    let tail = 300u64;
    let rounds = std::env::var("WAL_SIGKILL_ROUNDS").map_or(200, |v| v.parse().unwrap());
    let torn = kill_tail_writers(&path, tail, libc::SIGKILL, true, rounds, false);
    assert_eq!(torn, 0, "{torn} of {rounds} SIGKILLs tore the tail page");
    let torn = kill_tail_writers(&path, tail, libc::SIGKILL, false, 400, true);
    assert_eq!(
        torn, 1,
        "the check can fail: 400 SIGKILLs without write ahead never tore the page"
    );
    fs::remove_file(&path).unwrap();
}

/// A sealed segment of another (ended) postmaster's WAL key.
fn ended_segment(path: &Path) {
    let key = EpochKey::from_bytes([9; 32]);
    let name = FileName::new(ArtifactClass::Wal.index() as u8, b"pg_wal").unwrap();
    let mut io = VecIo::default();
    let mut nonces = ephcrypt_format::NonceSequence::new([5; 8]);
    let mut s = SealedFile::create(
        &mut io,
        &mut nonces,
        &key,
        &[3; 16],
        &[4; 16],
        &name,
        Mode::Shared,
    )
    .unwrap();
    s.write_at(&mut io, &mut nonces, &payload(PAGE * 3, 1), 0)
        .unwrap();
    raw_create(path, &io.data);
}

#[test]
fn startup_pass_removes_ended_wal_on_a_standby_and_touches_nothing_on_a_primary() {
    let (dir, _g) = wal_dir();
    let w = dir.join("pg_wal");
    let ended = [
        "000000010000000000000021",
        "000000010000000000000022.partial",
    ];
    for n in ended {
        ended_segment(&w.join(n));
    }
    fs::write(w.join("archive_status/000000010000000000000021.ready"), b"").unwrap();
    fs::write(
        w.join("archive_status/000000010000000000000022.partial.done"),
        b"",
    )
    .unwrap();
    // A plaintext segment (a base backup's), a stale temp file, and files
    // the class does not cover.
    let plain = payload(SEG as usize, 3);
    raw_create(&w.join("000000010000000000000023"), &plain);
    raw_create(&w.join("xlogtemp.99"), b"junk");
    raw_create(&w.join("00000002.history"), b"1\t0/1\tx\n");

    // Primary: report, change nothing.
    let primary = StartupPolicy {
        remove_ended: false,
        seal_plaintext: true,
    };
    let r = wal::startup_pass(dir, primary).unwrap();
    assert_eq!(r.ended, ended.map(String::from).to_vec());
    assert!(r.removed.is_empty() && r.converted.is_empty() && r.temps_removed == 0);
    for n in ended {
        assert!(w.join(n).exists(), "a primary's WAL is never deleted");
    }
    assert!(contains(
        &raw_bytes(&w.join("000000010000000000000023")),
        MARKER
    ));

    // Standby: the ended files and their status files go, the plaintext
    // segment is sealed under the live WAL key, the temp file goes.
    let standby = StartupPolicy {
        remove_ended: true,
        seal_plaintext: true,
    };
    let r = wal::startup_pass(dir, standby).unwrap();
    assert_eq!(r.removed, ended.map(String::from).to_vec());
    assert_eq!(r.status_removed, 2);
    assert_eq!(r.temps_removed, 1);
    assert_eq!(r.converted, vec!["000000010000000000000023".to_string()]);
    for n in ended {
        assert!(!w.join(n).exists());
    }
    assert!(!w.join("xlogtemp.99").exists());
    assert!(fs::read_dir(w.join("archive_status"))
        .unwrap()
        .next()
        .is_none());
    let seg = w.join("000000010000000000000023");
    assert!(!contains(&raw_bytes(&seg), MARKER), "sealed in place");
    assert!(
        fs::read(&seg).unwrap() == plain,
        "and readable through the shims"
    );
    assert!(raw_bytes(&w.join("00000002.history")) == b"1\t0/1\tx\n");
    // Idempotent: a second pass finds nothing to do.
    let r = wal::startup_pass(dir, standby).unwrap();
    assert_eq!(r, Default::default());
    fs::remove_file(&seg).unwrap();
    fs::remove_file(w.join("00000002.history")).unwrap();
}

/// A writer stopped between its two writes (a CPU quota, a SIGSTOP): here
/// the data block of a new version is on disk and its metadata page is not
/// yet, the order of every write but a write ahead. A reader retries for
/// about 0.5 s (MAX_RETRIES): a 150 ms stop is waited out and the new
/// version read; a 2 s stop ends in EIO after the budget, never in other
/// bytes (the control: the retry budget is what the first case relies on).
#[test]
fn a_reader_waits_out_a_writer_stopped_between_its_writes_for_a_bounded_time() {
    let (dir, _g) = wal_dir();
    create_segment(dir, "000000010000000000000017", false);
    let path = dir.join("pg_wal/000000010000000000000017");
    let tail = 300u64; // group 1
    let data_at = (tail + tail / 256 + 1) * PAGE as u64;
    let meta_at = (256 + 1) * PAGE as u64;
    let write = |v: u32| {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&page_with(v, 500), tail * PAGE as u64)
            .unwrap();
    };
    write(1);
    let old = raw_bytes(&path);
    write(2);
    let new = raw_bytes(&path);
    let (pg, dt) = (PAGE, data_at as usize);
    let (new_data, new_meta) = (
        new[dt..dt + pg].to_vec(),
        new[meta_at as usize..meta_at as usize + pg].to_vec(),
    );
    for (stop_ms, should_read) in [(150u64, true), (2000, false)] {
        raw_write_at(&path, 0, &old); // version 1 on disk
        raw_write_at(&path, data_at, &new_data); // the stopped writer's first write
        let p = path.clone();
        let meta = new_meta.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(stop_ms));
            raw_write_at(&p, meta_at, &meta); // ... and its second
        });
        let f = fs::File::open(&path).unwrap();
        let mut got = vec![0u8; PAGE];
        let t = std::time::Instant::now();
        let r = f.read_exact_at(&mut got, tail * PAGE as u64);
        let waited = t.elapsed();
        writer.join().unwrap();
        if should_read {
            r.unwrap_or_else(|e| {
                panic!("a {stop_ms} ms stop was not waited out ({waited:?}): {e}")
            });
            assert_eq!(got, page_with(2, 500), "the new version");
            assert!(
                waited >= std::time::Duration::from_millis(100),
                "{waited:?}"
            );
        } else {
            let e = r.expect_err("a 2 s stop outlasts the retry budget");
            assert_eq!(e.raw_os_error(), Some(libc::EIO));
            assert!(
                waited >= std::time::Duration::from_millis(300)
                    && waited < std::time::Duration::from_millis(1900),
                "the budget is about 0.5 s: {waited:?}"
            );
            // Once the writer resumed, the page reads.
            f.read_exact_at(&mut got, tail * PAGE as u64).unwrap();
            assert_eq!(got, page_with(2, 500));
        }
    }
    fs::remove_file(&path).unwrap();
}
