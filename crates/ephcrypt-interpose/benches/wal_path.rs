//! What the `wal` class costs per WAL flush, in one process, against the
//! same calls on an uncovered file through the same installed shims (the
//! plain pair of `benches/wal.py` has them too) and against raw AES-256-GCM
//! of 8 KiB in the same run. The fine instrument for issue #13: `wal.py`
//! measures TPS on two clusters, whose noise is several per cent; this
//! measures the class's own CPU per call to a few tens of nanoseconds.
//!
//! Workloads, each over `PAGES` pages per round, `FLUSHES` flushes per page
//! (512 bytes of new WAL each), on a segment created as
//! `XLogFileInitInternal` does (xlogtemp, pwritev zero fill, rename):
//!
//! * `xlogwrite`: `XLogWrite`'s tail page: the whole 8 KiB page rewritten
//!   at its offset after each flush (a prefix that grows, zeros after it);
//! * `xlogwrite+read`: the same, and after each write another fd reads the
//!   page back (a walsender, or the startup process of a standby);
//! * `walrcv`: the walreceiver's writes: only the new 512 bytes at their
//!   offset;
//! * `walrcv+read`: the same, and the startup process's 8 KiB read of the
//!   page after each.
//! * `xlogwrite|proc`, `walrcv|proc`: the writes of the first and third,
//!   with the read done by **another process** (forked, on the other core,
//!   as a walsender or the startup process is) right after each write, in
//!   strict turns. Here each side's time is the sum of its calls' own
//!   durations (TSC), so that neither counts its wait for the other; the
//!   page pool's page and the page cache's data then cross between cores
//!   as in a cluster.
//!
//! Run: `cargo bench -p ephcrypt-interpose --bench wal_path -- --rounds 31`
//! (`--profile enc|plain` loops one mode for `perf record`).

use std::ffi::CString;
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ephcrypt_classify::ArtifactClass;
use ephcrypt_interpose::secmem::{self, AllocMode};
use ephcrypt_interpose::shim::{self, Config};
use ephcrypt_interpose::stats::{self, Counter};
use ephcrypt_interpose::walkey;

const SEG: u64 = 16 * 1024 * 1024;
const PAGE: usize = 8192;
const PAGES: usize = 64;
const FLUSHES: usize = 16;
const STEP: usize = PAGE / FLUSHES;

const WORKLOADS: [&str; 4] = ["xlogwrite", "xlogwrite+read", "walrcv", "walrcv+read"];
const PROC_WORKLOADS: [&str; 2] = ["xlogwrite|proc", "walrcv|proc"];

fn tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per µs, against CLOCK_MONOTONIC over 50 ms.
fn tsc_per_us() -> f64 {
    let (w0, t0) = (clock(libc::CLOCK_MONOTONIC), tsc());
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (w1, t1) = (clock(libc::CLOCK_MONOTONIC), tsc());
    (t1 - t0) as f64 / (w1 - w0)
}

/// The turn-taking page shared with the reader process.
#[repr(C)]
struct Turns {
    /// Bumped by the writer for every read it asks for.
    seq: std::sync::atomic::AtomicU64,
    /// Set by the reader to the `seq` it served.
    ack: std::sync::atomic::AtomicU64,
    /// 0 = the enc file, 1 = the plain file, 2 = exit.
    which: std::sync::atomic::AtomicU64,
    off: std::sync::atomic::AtomicU64,
    /// TSC ticks the reader spent in its preads since the writer reset it.
    ticks: std::sync::atomic::AtomicU64,
}

/// Map the turn page (shared with children forked later).
fn turns() -> &'static Turns {
    // SAFETY: a fresh anonymous shared mapping of one page, zeroed, never
    // unmapped; `Turns` is atomics only, valid when zero.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        &*(p as *const Turns)
    }
}

/// The reader process: pread 8 KiB where the writer says, in turns, until
/// told to exit. Never returns.
fn reader_process(t: &Turns, enc_path: &Path, plain_path: &Path) -> ! {
    use std::sync::atomic::Ordering::{Acquire, Release};
    let fds = [
        open(enc_path, libc::O_RDONLY),
        open(plain_path, libc::O_RDONLY),
    ];
    let mut buf = vec![0u8; PAGE];
    let mut served = 0;
    loop {
        let seq = t.seq.load(Acquire);
        if seq == served {
            std::hint::spin_loop();
            continue;
        }
        let which = t.which.load(Acquire) as usize;
        if which == 2 {
            // SAFETY: leave the child without running the parent's exit handlers.
            unsafe { libc::_exit(0) };
        }
        let t0 = tsc();
        pread(fds[which], &mut buf, t.off.load(Acquire));
        let d = tsc() - t0;
        black_box(&buf);
        t.ticks.fetch_add(d, Release);
        served = seq;
        t.ack.store(seq, Release);
    }
}

fn clock(id: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

fn cpu_us() -> f64 {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// open(2) through this binary's GOT (so through the shims).
fn open(p: &Path, flags: i32) -> i32 {
    let c = cstr(p);
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags, 0o600) };
    assert!(
        fd >= 0,
        "open {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    fd
}

fn pwrite(fd: i32, buf: &[u8], off: u64) {
    // SAFETY: a valid fd and buffer; goes through the GOT.
    let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off as i64) };
    assert_eq!(
        n,
        buf.len() as isize,
        "pwrite: {}",
        std::io::Error::last_os_error()
    );
}

fn pread(fd: i32, buf: &mut [u8], off: u64) {
    // SAFETY: a valid fd and buffer; goes through the GOT.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as i64) };
    assert_eq!(
        n,
        buf.len() as isize,
        "pread: {}",
        std::io::Error::last_os_error()
    );
}

/// A segment as `XLogFileInitInternal` makes one: `xlogtemp.<pid>`
/// O_CREAT|O_EXCL, pwritev of 32 zero pages at a time, close, rename.
fn create_segment(tmp: &Path, to: &Path) {
    let _ = fs::remove_file(tmp);
    let fd = open(tmp, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
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
        let n = unsafe { libc::pwritev(fd, iov.as_ptr(), 32, off as i64) };
        assert_eq!(n, 32 * PAGE as isize);
        off += n as u64;
    }
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    let (a, b) = (cstr(tmp), cstr(to));
    // SAFETY: two valid paths; goes through the GOT.
    assert_eq!(unsafe { libc::rename(a.as_ptr(), b.as_ptr()) }, 0);
}

/// One file of one mode, a writer fd and a reader fd kept open (as
/// PostgreSQL keeps its segment open), and where the next round starts.
struct Target {
    writer: i32,
    reader: i32,
    next_page: usize,
}

impl Target {
    fn new(path: &Path) -> Self {
        Target {
            writer: open(path, libc::O_RDWR),
            reader: open(path, libc::O_RDONLY),
            next_page: 0,
        }
    }

    /// Run `workload` over the next `PAGES` pages; returns CPU µs.
    fn run(&mut self, workload: &str, wal: &[u8], page: &mut [u8], back: &mut [u8]) -> f64 {
        let total = (SEG as usize) / PAGE;
        if self.next_page + PAGES > total {
            self.next_page = 0;
        }
        let first = self.next_page;
        self.next_page += PAGES;
        let read = workload.ends_with("+read");
        let whole = workload.starts_with("xlogwrite");
        let t0 = cpu_us();
        for p in first..first + PAGES {
            let off = (p * PAGE) as u64;
            page.fill(0);
            for f in 1..=FLUSHES {
                let end = f * STEP;
                if whole {
                    page[..end].copy_from_slice(&wal[..end]);
                    pwrite(self.writer, page, off);
                } else {
                    pwrite(
                        self.writer,
                        &wal[end - STEP..end],
                        off + (end - STEP) as u64,
                    );
                }
                if read {
                    pread(self.reader, back, off);
                    black_box(&back);
                }
            }
        }
        cpu_us() - t0
    }
}

impl Target {
    /// `xlogwrite|proc` / `walrcv|proc`: the writes of `run`, each followed
    /// by a read in the reader process (`which` names this file to it);
    /// returns the TSC ticks of the writes and of the reads.
    fn run_proc(
        &mut self,
        workload: &str,
        wal: &[u8],
        page: &mut [u8],
        t: &Turns,
        which: u64,
    ) -> (u64, u64) {
        use std::sync::atomic::Ordering::{Acquire, Release};
        let total = (SEG as usize) / PAGE;
        if self.next_page + PAGES > total {
            self.next_page = 0;
        }
        let first = self.next_page;
        self.next_page += PAGES;
        let whole = workload.starts_with("xlogwrite");
        t.ticks.store(0, Release);
        t.which.store(which, Release);
        let mut wticks = 0;
        for p in first..first + PAGES {
            let off = (p * PAGE) as u64;
            page.fill(0);
            for f in 1..=FLUSHES {
                let end = f * STEP;
                let t0 = tsc();
                if whole {
                    page[..end].copy_from_slice(&wal[..end]);
                    pwrite(self.writer, page, off);
                } else {
                    pwrite(
                        self.writer,
                        &wal[end - STEP..end],
                        off + (end - STEP) as u64,
                    );
                }
                wticks += tsc() - t0;
                t.off.store(off, Release);
                let seq = t.seq.load(Acquire) + 1;
                t.seq.store(seq, Release);
                while t.ack.load(Acquire) != seq {
                    std::hint::spin_loop();
                }
            }
        }
        (wticks, t.ticks.load(Acquire))
    }
}

/// Raw AES-256-GCM: CPU µs to seal `seals` and open `opens` 8 KiB blocks.
struct Raw {
    key: LessSafeKey,
    buf: Vec<u8>,
    out: Vec<u8>,
    sealed: (Vec<u8>, [u8; 16]),
    counter: u64,
}

impl Raw {
    fn new() -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x24; 32]).unwrap());
        let mut v = vec![0x5a; PAGE];
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::from([7u8; 56]),
                &mut v,
            )
            .unwrap();
        let mut t = [0u8; 16];
        t.copy_from_slice(tag.as_ref());
        Raw {
            key,
            buf: vec![0x5a; PAGE],
            out: vec![0; PAGE],
            sealed: (v, t),
            counter: 0,
        }
    }

    fn run(&mut self, seals: usize, opens: usize) -> f64 {
        let t0 = cpu_us();
        for _ in 0..seals {
            self.counter += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&self.counter.to_le_bytes());
            let tag = self
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from([7u8; 56]),
                    &mut self.buf,
                )
                .unwrap();
            black_box(tag.as_ref());
        }
        for _ in 0..opens {
            self.key
                .open_separate_gather(
                    Nonce::assume_unique_for_key([1; 12]),
                    Aad::from([7u8; 56]),
                    black_box(&self.sealed.0[..]),
                    &self.sealed.1,
                    &mut self.out,
                )
                .unwrap();
            black_box(&self.out);
        }
        cpu_us() - t0
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// 95 % bootstrap interval of the median of `v` (fixed seed: repeatable).
fn bootstrap(v: &[f64]) -> (f64, f64) {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut meds = Vec::with_capacity(2000);
    let mut s = vec![0.0; v.len()];
    for _ in 0..2000 {
        for slot in s.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *slot = v[(x % v.len() as u64) as usize];
        }
        meds.push(median(&mut s));
    }
    meds.sort_by(|a, b| a.total_cmp(b));
    (meds[50], meds[1949])
}

struct Args {
    rounds: usize,
    dir: PathBuf,
    profile: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 31,
        dir: std::env::temp_dir(),
        profile: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            "--dir" => a.dir = PathBuf::from(it.next().expect("--dir PATH")),
            "--profile" => a.profile = Some(it.next().expect("--profile enc|plain")),
            "--bench" => {}
            other => {
                panic!("unknown argument {other:?} (--rounds N, --dir PATH, --profile enc|plain)")
            }
        }
    }
    a
}

/// Tell the reader process to leave, and reap it.
fn stop_reader(t: &Turns, child: libc::pid_t) {
    use std::sync::atomic::Ordering::{Acquire, Release};
    t.which.store(2, Release);
    t.seq.store(t.seq.load(Acquire) + 1, Release);
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
}

fn sealed_wal_bytes() -> u64 {
    stats::fold();
    stats::snapshot(ArtifactClass::Wal)[Counter::BytesSealed as usize]
}

fn main() {
    let a = args();
    let dir = a
        .dir
        .join(format!("ephcrypt-walpath-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("pg_wal/archive_status")).unwrap();
    fs::create_dir_all(dir.join("base/5")).unwrap();
    let dir = dir.canonicalize().unwrap();

    secmem::start_epoch(AllocMode::Auto, 1).unwrap();
    walkey::start(AllocMode::Auto, 1).unwrap();
    shim::set_enabled_classes(&ArtifactClass::ALL);
    shim::install(Config {
        data_dir: dir.as_os_str().as_encoded_bytes().to_vec(),
        io_uring_in_use: false,
        allow_extra: vec![
            ("syscall", "Rust std: futex and getrandom"),
            ("ioctl", "Rust std: FIOCLEX/FIONBIO"),
        ],
    })
    .expect("install the shims into the bench binary");

    let pid = std::process::id();
    let enc_path = dir.join("pg_wal/000000010000000000000001");
    create_segment(&dir.join(format!("pg_wal/xlogtemp.{pid}")), &enc_path);
    // Uncovered: a relation file's name, the same calls.
    let plain_path = dir.join("base/5/16384");
    create_segment(&dir.join("base/5/16383"), &plain_path);
    let sealed0 = sealed_wal_bytes();
    assert!(
        sealed0 >= SEG,
        "the segment was not sealed ({sealed0} bytes)"
    );

    let turn = turns();
    // SAFETY: fork in a single-threaded bench; the child only preads and
    // leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork");
    if child == 0 {
        reader_process(turn, &enc_path, &plain_path);
    }
    let mut enc = Target::new(&enc_path);
    let mut plain = Target::new(&plain_path);
    let mut raw = Raw::new();
    let wal: Vec<u8> = (0..PAGE).map(|i| (i * 7 + 3) as u8).collect();
    let mut page = vec![0u8; PAGE];
    let mut back = vec![0u8; PAGE];

    if let Some(mode) = &a.profile {
        let t = match mode.as_str() {
            "enc" => &mut enc,
            "plain" => &mut plain,
            m => panic!("--profile {m}: enc or plain"),
        };
        let which = if mode == "enc" { 0 } else { 1 };
        for _ in 0..a.rounds {
            for w in WORKLOADS {
                black_box(t.run(w, &wal, &mut page, &mut back));
            }
            for w in PROC_WORKLOADS {
                black_box(t.run_proc(w, &wal, &mut page, turn, which));
            }
        }
        stop_reader(turn, child);
        return;
    }
    let per_us = tsc_per_us();

    let ops = (PAGES * FLUSHES) as f64;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "wal path: {} rounds, {PAGES} pages x {FLUSHES} flushes of {STEP} B per workload per round, \
         enc/plain/raw alternating with the reverse order; load average at start {}",
        a.rounds,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    // Warm-up: one untimed round of each.
    for w in WORKLOADS {
        enc.run(w, &wal, &mut page, &mut back);
        plain.run(w, &wal, &mut page, &mut back);
    }
    for w in PROC_WORKLOADS {
        enc.run_proc(w, &wal, &mut page, turn, 0);
        plain.run_proc(w, &wal, &mut page, turn, 1);
    }
    // Per proc workload: writer overhead and reader overhead (µs per
    // flush), and the raw seal and open of the same round.
    let mut proc_w: Vec<Vec<f64>> = vec![Vec::new(); PROC_WORKLOADS.len()];
    let mut proc_r: Vec<Vec<f64>> = vec![Vec::new(); PROC_WORKLOADS.len()];
    let mut proc_wr: Vec<Vec<f64>> = vec![Vec::new(); PROC_WORKLOADS.len()];
    let mut proc_rr: Vec<Vec<f64>> = vec![Vec::new(); PROC_WORKLOADS.len()];
    let mut proc_plain: Vec<Vec<(f64, f64)>> = vec![Vec::new(); PROC_WORKLOADS.len()];
    let mut over: Vec<Vec<f64>> = vec![Vec::new(); WORKLOADS.len()];
    let mut plain_us: Vec<Vec<f64>> = vec![Vec::new(); WORKLOADS.len()];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); WORKLOADS.len()];
    let mut raw_seal = Vec::new();
    for round in 0..a.rounds {
        for (i, w) in WORKLOADS.iter().enumerate() {
            let reads = if w.ends_with("+read") {
                PAGES * FLUSHES
            } else {
                0
            };
            let (e, p, r) = if round % 2 == 0 {
                let e = enc.run(w, &wal, &mut page, &mut back);
                let p = plain.run(w, &wal, &mut page, &mut back);
                (e, p, raw.run(PAGES * FLUSHES, reads))
            } else {
                let r = raw.run(PAGES * FLUSHES, reads);
                let p = plain.run(w, &wal, &mut page, &mut back);
                (enc.run(w, &wal, &mut page, &mut back), p, r)
            };
            let o = (e - p) / ops;
            over[i].push(o);
            plain_us[i].push(p / ops);
            ratio[i].push(o / (r / ops));
            if i == 0 {
                raw_seal.push(r / ops);
            }
        }
        for (i, w) in PROC_WORKLOADS.iter().enumerate() {
            let n = PAGES * FLUSHES;
            let (e, p) = if round % 2 == 0 {
                let e = enc.run_proc(w, &wal, &mut page, turn, 0);
                (e, plain.run_proc(w, &wal, &mut page, turn, 1))
            } else {
                let p = plain.run_proc(w, &wal, &mut page, turn, 1);
                (enc.run_proc(w, &wal, &mut page, turn, 0), p)
            };
            let seal = raw.run(n, 0) / ops;
            let open = (raw.run(n, n) / ops - seal).max(1e-3);
            let us = |ticks: u64| ticks as f64 / per_us / ops;
            let (ow, or) = (us(e.0) - us(p.0), us(e.1) - us(p.1));
            proc_w[i].push(ow);
            proc_r[i].push(or);
            proc_wr[i].push(ow / seal);
            proc_rr[i].push(or / open);
            proc_plain[i].push((us(p.0), us(p.1)));
        }
    }
    stop_reader(turn, child);
    assert!(sealed_wal_bytes() > sealed0, "the enc runs sealed nothing");
    println!(
        "raw AES-256-GCM seal of 8 KiB: {:.3} µs (median)",
        median(&mut raw_seal.clone())
    );
    println!(
        "{:<16} {:>9} {:>26} {:>30}",
        "workload", "plain µs", "enc - plain µs/flush [95%]", "overhead / raw AES ops [95%]"
    );
    for (i, w) in WORKLOADS.iter().enumerate() {
        let (lo, hi) = bootstrap(&over[i]);
        let (rlo, rhi) = bootstrap(&ratio[i]);
        println!(
            "{:<16} {:>9.3} {:>8.3} [{:.3}, {:.3}] {:>14.2} [{:.2}, {:.2}]",
            w,
            median(&mut plain_us[i].clone()),
            median(&mut over[i].clone()),
            lo,
            hi,
            median(&mut ratio[i].clone()),
            rlo,
            rhi
        );
    }
    println!(
        "(raw AES ops per flush: one seal; `+read` adds one open. A ratio of 1.00 means the class \
         costs exactly its AES.)"
    );
    println!(
        "{:<16} {:>6} {:>24} {:>14} {:>6} {:>24} {:>14}",
        "reader in another process",
        "w µs",
        "writer enc - plain [95%]",
        "/ raw seal",
        "r µs",
        "reader enc - plain [95%]",
        "/ raw open"
    );
    for (i, w) in PROC_WORKLOADS.iter().enumerate() {
        let (wlo, whi) = bootstrap(&proc_w[i]);
        let (rlo, rhi) = bootstrap(&proc_r[i]);
        let mut pw: Vec<f64> = proc_plain[i].iter().map(|x| x.0).collect();
        let mut pr: Vec<f64> = proc_plain[i].iter().map(|x| x.1).collect();
        println!(
            "{:<25} {:>6.3} {:>8.3} [{:.3}, {:.3}] {:>14.2} {:>6.3} {:>8.3} [{:.3}, {:.3}] {:>14.2}",
            w,
            median(&mut pw),
            median(&mut proc_w[i].clone()),
            wlo,
            whi,
            median(&mut proc_wr[i].clone()),
            median(&mut pr),
            median(&mut proc_r[i].clone()),
            rlo,
            rhi,
            median(&mut proc_rr[i].clone()),
        );
    }
    let _ = fs::remove_dir_all(&dir);
}
