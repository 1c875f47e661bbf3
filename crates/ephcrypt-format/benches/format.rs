//! Cost of format v2 on top of raw AES-256-GCM (aws-lc-rs), per 8 KiB block.
//!
//! Run: `cargo bench -p ephcrypt-format --bench format`. After criterion's
//! report it prints, from one interleaved median loop in the same run:
//! block seal/open vs raw aws-lc-rs seal/open (goal <= 1.15), and a whole
//! `SealedFile::write_at` / `read_at` of one aligned 8 KiB block (private and
//! shared mode, over an in-memory `VecIo`: no syscalls, so the page-cache
//! costs of FORMAT.md §3.4 come on top) vs the raw seal / open.
//!
//! Shared mode is measured two ways in the same interleaved loop: "after"
//! (cached pages revalidated by their 28-byte MAC trailer) and "before" (the
//! same code over an I/O wrapper that answers every trailer read as end of
//! file, so no cached page ever revalidates: the old behaviour, a full page
//! read and GMAC check per call). The same sets run once more over real
//! files (page cache, real `pread`/`pwrite`/`fstat`) in `$EPHCRYPT_BENCH_DIR`
//! (default: the temp directory), against raw AES plus the same plain
//! syscall.

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use criterion::{Criterion, Throughput};
use ephcrypt_format::{
    data_offset, meta, EpochKey, FileCipher, FileName, FormatError, Header, Mode, NonceSequence,
    PhysicalIo, SealedFile, VecIo, BLOCK_SIZE, PAGE_SIZE,
};

const EPOCH: [u8; 16] = [0xE0; 16];
const FILE: [u8; 16] = [0xF0; 16];
/// Blocks the file benchmarks cycle over: two groups.
const BLOCKS: u64 = 512;

fn name() -> FileName<'static> {
    FileName::new(1, b"pgsql_tmp1234.5").unwrap()
}

fn key() -> EpochKey {
    EpochKey::from_bytes([0x42; 32])
}

/// A real file in the bench directory (page cache): positional syscalls.
struct FileIo {
    file: File,
    path: PathBuf,
}

fn io_err(_: std::io::Error) -> FormatError {
    FormatError::InvalidArgument("I/O error")
}

fn bench_dir() -> PathBuf {
    std::env::var_os("EPHCRYPT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

impl FileIo {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = bench_dir().join(format!("ephcrypt-bench-{}-{n}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        Self { file, path }
    }
}

impl Drop for FileIo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl PhysicalIo for FileIo {
    type Error = FormatError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(done)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), FormatError> {
        self.file.write_all_at(buf, off).map_err(io_err)
    }
    fn set_len(&mut self, len: u64) -> Result<(), FormatError> {
        self.file.set_len(len).map_err(io_err)
    }
    fn len(&mut self) -> Result<u64, FormatError> {
        self.file.metadata().map(|m| m.len()).map_err(io_err)
    }
}

/// "Before": a trailer read (28 bytes at `meta_offset(g) + 8164`) comes back
/// as end of file, so a shared handle reloads and verifies every page in
/// full at every call, as it did before it kept pages across calls.
struct Reload<I>(I);

impl<I: PhysicalIo> PhysicalIo for Reload<I> {
    type Error = I::Error;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, I::Error> {
        let trailer = (PAGE_SIZE - meta::OFF_MAC_NONCE) as u64;
        let page = PAGE_SIZE as u64;
        if buf.len() as u64 == trailer && (off + trailer) % (257 * page) == page {
            return Ok(0);
        }
        self.0.read_at(buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), I::Error> {
        self.0.write_all_at(buf, off)
    }
    fn set_len(&mut self, len: u64) -> Result<(), I::Error> {
        self.0.set_len(len)
    }
    fn len(&mut self) -> Result<u64, I::Error> {
        self.0.len()
    }
}

/// A file of `BLOCKS` full blocks in `mode`, metadata flushed.
fn file(mode: Mode) -> (VecIo, SealedFile) {
    file_on(VecIo::default(), mode)
}

fn file_on<I: PhysicalIo>(mut io: I, mode: Mode) -> (I, SealedFile)
where
    I::Error: std::fmt::Debug,
{
    let mut nonces = NonceSequence::new([5; 8]);
    let mut f =
        SealedFile::create(&mut io, &mut nonces, &key(), &EPOCH, &FILE, &name(), mode).unwrap();
    f.write_at(
        &mut io,
        &mut nonces,
        &vec![3u8; BLOCKS as usize * BLOCK_SIZE],
        0,
    )
    .unwrap();
    f.flush(&mut io, &mut nonces).unwrap();
    (io, f)
}

/// The operations compared, each as one closure call = one 8 KiB block.
struct Ops {
    cipher: FileCipher,
    raw: LessSafeKey,
    aad: [u8; 56],
    plain: Vec<u8>,
    sealed: Vec<u8>,
    sealed_tag: [u8; 16],
    nonces: NonceSequence,
    out: Vec<u8>,
    buf: Vec<u8>,
    ct_tag: Vec<u8>,
    private: (VecIo, SealedFile),
    shared: (VecIo, SealedFile),
    /// Shared, no page ever revalidates (the old behaviour).
    shared_old: (Reload<VecIo>, SealedFile),
    real: RealFiles,
    next_block: u64,
}

/// The same handles over real files.
struct RealFiles {
    private: (FileIo, SealedFile),
    shared: (FileIo, SealedFile),
    shared_old: (Reload<FileIo>, SealedFile),
    /// A plain file for the raw baselines (8 KiB at 8 KiB-aligned offsets).
    plain: FileIo,
}

impl Ops {
    fn new() -> Self {
        let (cipher, header) = FileCipher::create(&key(), &EPOCH, &FILE, &name()).unwrap();
        let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x24; 32]).unwrap());
        let mut aad = [0u8; 56];
        aad[..48].copy_from_slice(&header[..48]);
        let plain: Vec<u8> = (0..BLOCK_SIZE).map(|i| i as u8).collect();
        let mut sealed = vec![0u8; BLOCK_SIZE];
        let sealed_tag = cipher.seal_block(7, [1; 12], &plain, &mut sealed).unwrap();
        // Raw ciphertext and tag for the raw open.
        let mut ct_tag = plain.clone();
        let tag = raw
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([2; 12]),
                Aad::from(aad),
                &mut ct_tag,
            )
            .unwrap();
        ct_tag.extend_from_slice(tag.as_ref());
        Self {
            cipher,
            raw,
            aad,
            plain,
            sealed,
            sealed_tag,
            nonces: NonceSequence::new([9; 8]),
            out: vec![0u8; BLOCK_SIZE],
            buf: vec![0u8; BLOCK_SIZE],
            ct_tag,
            private: file(Mode::PRIVATE),
            shared: file(Mode::Shared),
            shared_old: file_on(Reload(VecIo::default()), Mode::Shared),
            real: RealFiles {
                private: file_on(FileIo::new(), Mode::PRIVATE),
                shared: file_on(FileIo::new(), Mode::Shared),
                shared_old: file_on(Reload(FileIo::new()), Mode::Shared),
                plain: {
                    let p = FileIo::new();
                    p.file.set_len(data_offset(BLOCKS)).unwrap();
                    p
                },
            },
            next_block: 0,
        }
    }

    fn format_seal(&mut self) {
        let nonce = self.nonces.next().unwrap();
        let tag = self
            .cipher
            .seal_block(black_box(7), nonce, black_box(&self.plain), &mut self.out)
            .unwrap();
        black_box((&self.out, tag));
    }

    fn raw_seal(&mut self) {
        let nonce = self.nonces.next().unwrap();
        let mut aad = self.aad;
        aad[48..].copy_from_slice(&black_box(7u64).to_le_bytes());
        let tag = self
            .raw
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut self.buf,
            )
            .unwrap();
        black_box(&self.buf);
        black_box(tag.as_ref());
    }

    fn format_open(&mut self) {
        let n = self
            .cipher
            .open_block(
                black_box(7),
                &[1; 12],
                &self.sealed_tag,
                black_box(&self.sealed),
                &mut self.buf,
            )
            .unwrap();
        black_box(&self.buf[..n]);
    }

    fn raw_open(&mut self) {
        let (ct, tag) = self.ct_tag.split_at(BLOCK_SIZE);
        self.raw
            .open_separate_gather(
                Nonce::assume_unique_for_key([2; 12]),
                Aad::from(self.aad),
                black_box(ct),
                tag,
                &mut self.buf,
            )
            .unwrap();
        black_box(&self.buf);
    }

    fn block(&mut self) -> u64 {
        self.next_block = (self.next_block + 1) % BLOCKS;
        self.next_block * BLOCK_SIZE as u64
    }

    fn private_write(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.private;
        f.write_at(io, &mut self.nonces, black_box(&self.plain), off)
            .unwrap();
    }

    fn private_read(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.private;
        f.read_at(io, &mut self.buf, off).unwrap();
        black_box(&self.buf);
    }

    fn shared_write(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.shared;
        f.write_at(io, &mut self.nonces, black_box(&self.plain), off)
            .unwrap();
    }

    fn shared_read(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.shared;
        f.read_at(io, &mut self.buf, off).unwrap();
        black_box(&self.buf);
    }

    fn shared_write_before(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.shared_old;
        f.write_at(io, &mut self.nonces, black_box(&self.plain), off)
            .unwrap();
    }

    fn shared_read_before(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.shared_old;
        f.read_at(io, &mut self.buf, off).unwrap();
        black_box(&self.buf);
    }

    fn real_write<I: PhysicalIo<Error = FormatError>>(
        f: &mut (I, SealedFile),
        nonces: &mut NonceSequence,
        plain: &[u8],
        off: u64,
    ) {
        f.1.write_at(&mut f.0, nonces, black_box(plain), off)
            .unwrap();
    }

    fn real_private_write(&mut self) {
        let off = self.block();
        Self::real_write(&mut self.real.private, &mut self.nonces, &self.plain, off);
    }

    fn real_shared_write(&mut self) {
        let off = self.block();
        Self::real_write(&mut self.real.shared, &mut self.nonces, &self.plain, off);
    }

    fn real_shared_write_before(&mut self) {
        let off = self.block();
        Self::real_write(
            &mut self.real.shared_old,
            &mut self.nonces,
            &self.plain,
            off,
        );
    }

    fn real_private_read(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.real.private;
        f.read_at(io, &mut self.buf, off).unwrap();
        black_box(&self.buf);
    }

    fn real_shared_read(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.real.shared;
        f.read_at(io, &mut self.buf, off).unwrap();
        black_box(&self.buf);
    }

    fn real_shared_read_before(&mut self) {
        let off = self.block();
        let (io, f) = &mut self.real.shared_old;
        f.read_at(io, &mut self.buf, off).unwrap();
        black_box(&self.buf);
    }

    /// Raw seal, then the plain file's pwrite of the block.
    fn raw_seal_pwrite(&mut self) {
        let i = self.block() / BLOCK_SIZE as u64;
        self.raw_seal();
        self.real
            .plain
            .write_all_at(&self.buf, data_offset(i))
            .unwrap();
    }

    /// The plain file's pread of a block, then a raw open.
    fn pread_raw_open(&mut self) {
        let i = self.block() / BLOCK_SIZE as u64;
        let n = self
            .real
            .plain
            .read_at(&mut self.out, data_offset(i))
            .unwrap();
        black_box(&self.out[..n]);
        self.raw_open();
    }
}

fn benches(c: &mut Criterion) {
    let mut ops = Ops::new();

    let mut g = c.benchmark_group("seal_8k");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    g.bench_function("format", |b| b.iter(|| ops.format_seal()));
    g.bench_function("raw_aws_lc", |b| b.iter(|| ops.raw_seal()));
    g.finish();

    let mut g = c.benchmark_group("open_8k");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    g.bench_function("format", |b| b.iter(|| ops.format_open()));
    g.bench_function("raw_aws_lc", |b| b.iter(|| ops.raw_open()));
    g.finish();

    let mut g = c.benchmark_group("file_8k_block");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    g.bench_function("private_write", |b| b.iter(|| ops.private_write()));
    g.bench_function("private_read", |b| b.iter(|| ops.private_read()));
    g.bench_function("shared_write", |b| b.iter(|| ops.shared_write()));
    g.bench_function("shared_read", |b| b.iter(|| ops.shared_read()));
    g.bench_function("shared_write_before", |b| {
        b.iter(|| ops.shared_write_before())
    });
    g.bench_function("shared_read_before", |b| {
        b.iter(|| ops.shared_read_before())
    });
    g.finish();

    let mut g = c.benchmark_group("memcpy_8k");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    let src = vec![1u8; BLOCK_SIZE];
    let mut dst = vec![0u8; BLOCK_SIZE];
    g.bench_function("copy_from_slice", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.finish();

    // Partial-block write of 100 bytes into a full block: read + open +
    // patch + seal + write (uncached), or patch + seal + write (cached).
    let (mut io, mut file) = file(Mode::PRIVATE);
    let mut nonces = NonceSequence::new([6; 8]);
    let rec = [7u8; 100];
    let mut g = c.benchmark_group("rmw_100B_in_8k");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    g.bench_function("uncached", |b| {
        b.iter(|| {
            file.invalidate();
            file.write_at(&mut io, &mut nonces, black_box(&rec), 8192 + 1000)
                .unwrap()
        })
    });
    g.bench_function("cached", |b| {
        b.iter(|| {
            file.write_at(&mut io, &mut nonces, black_box(&rec), 8192 + 1000)
                .unwrap()
        })
    });
    g.finish();

    // One metadata page: MAC (write-back) and verification (load).
    let mut g = c.benchmark_group("metadata_page");
    // A full, final group 0: the largest MAC input a page has anyway.
    let mut page = [0u8; PAGE_SIZE];
    let _ = meta::init(&mut page, ops.cipher.header_bytes(), 0);
    for j in 0..256 {
        let _ = meta::set_entry(&mut page, j, &[j as u8; 12], &[!(j as u8); 16]);
    }
    let _ = meta::set_state(
        &mut page,
        meta::GroupState {
            count: 256,
            last_len: BLOCK_SIZE as u16,
            final_group: true,
        },
    );
    ops.cipher.seal_metadata(0, [4; 12], &mut page).unwrap();
    g.bench_function("seal_gmac", |b| {
        let mut p = page;
        b.iter(|| {
            ops.cipher
                .seal_metadata(0, nonces.next().unwrap(), black_box(&mut p))
                .unwrap()
        })
    });
    g.bench_function("open_gmac", |b| {
        b.iter(|| ops.cipher.open_metadata(0, black_box(&page)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("header");
    let (_, header) = FileCipher::create(&key(), &EPOCH, &FILE, &name()).unwrap();
    g.bench_function("parse", |b| {
        b.iter(|| Header::parse(black_box(&header)).unwrap())
    });
    g.bench_function("open_derive_keys", |b| {
        b.iter(|| FileCipher::open(&key(), &EPOCH, &name(), black_box(&header)).unwrap())
    });
    g.finish();
}

/// One benchmarked call.
type Op = fn(&mut Ops);

/// Median ns per call of each of `set` over `rounds` rounds of `iters`
/// calls; within a round every op runs once, in an order that rotates from
/// round to round, so that all see the same machine noise.
fn medians(ops: &mut Ops, set: &[Op], rounds: usize, iters: u32) -> Vec<f64> {
    let mut t: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); set.len()];
    let time = |ops: &mut Ops, f: Op| {
        let t = Instant::now();
        for _ in 0..iters {
            f(ops);
        }
        t.elapsed().as_nanos() as f64 / f64::from(iters)
    };
    for _ in 0..20 {
        for f in set {
            f(ops);
        }
    }
    for r in 0..rounds {
        for k in 0..set.len() {
            let i = (r + k) % set.len();
            t[i].push(time(ops, set[i]));
        }
    }
    t.iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// Run `set` interleaved; print each against the last one (the baseline).
fn print_set(ops: &mut Ops, title: &str, set: &[(&str, Op)], rounds: usize, iters: u32) {
    let fns: Vec<Op> = set.iter().map(|&(_, f)| f).collect();
    let m = medians(ops, &fns, rounds, iters);
    let (base_name, _) = set[set.len() - 1];
    let base = m[m.len() - 1];
    println!("  {title}:");
    for (k, &(n, _)) in set.iter().enumerate() {
        println!(
            "    {n:40} {:8.1} ns   {:.3}x {base_name}",
            m[k],
            m[k] / base
        );
    }
}

fn print_ratios(quick: bool) {
    let mut ops = Ops::new();
    // Short rounds: on a loaded machine a round that was descheduled is an
    // outlier the median drops, rather than a bias against slower ops.
    let (rounds, iters) = if quick { (3, 10) } else { (2001, 100) };
    println!();
    println!(
        "format v2 vs raw aws-lc-rs AES-256-GCM, 8 KiB, median of {rounds} interleaved rounds x {iters}:"
    );
    let sets: [(&str, &[(&str, Op)]); 6] = [
        (
            "block seal",
            &[
                ("block seal", Ops::format_seal),
                ("raw seal", Ops::raw_seal),
            ],
        ),
        (
            "block open",
            &[
                ("block open", Ops::format_open),
                ("raw open", Ops::raw_open),
            ],
        ),
        (
            "private, VecIo",
            &[
                ("private write_at", Ops::private_write),
                ("raw seal", Ops::raw_seal),
            ],
        ),
        (
            "private, VecIo",
            &[
                ("private read_at", Ops::private_read),
                ("raw open", Ops::raw_open),
            ],
        ),
        (
            "shared write_at, VecIo",
            &[
                ("after: trailer revalidation", Ops::shared_write),
                (
                    "before: page read + verify per call",
                    Ops::shared_write_before,
                ),
                ("raw seal", Ops::raw_seal),
            ],
        ),
        (
            "shared read_at, VecIo",
            &[
                ("after: trailer revalidation", Ops::shared_read),
                (
                    "before: page read + verify per call",
                    Ops::shared_read_before,
                ),
                ("raw open", Ops::raw_open),
            ],
        ),
    ];
    for (title, set) in sets {
        print_set(&mut ops, title, set, rounds, iters);
    }
    println!("  (VecIo: memcpy, no syscalls)");
    let dir = bench_dir();
    let real: [(&str, &[(&str, Op)]); 2] = [
        (
            "write_at, real file (page cache)",
            &[
                ("private", Ops::real_private_write),
                ("shared after", Ops::real_shared_write),
                ("shared before", Ops::real_shared_write_before),
                ("raw seal + plain pwrite", Ops::raw_seal_pwrite),
            ],
        ),
        (
            "read_at, real file (page cache)",
            &[
                ("private", Ops::real_private_read),
                ("shared after", Ops::real_shared_read),
                ("shared before", Ops::real_shared_read_before),
                ("plain pread + raw open", Ops::pread_raw_open),
            ],
        ),
    ];
    println!("  real files in {}:", dir.display());
    for (title, set) in real {
        print_set(&mut ops, title, set, rounds, iters);
    }
    println!("  goal for block seal/open: <= 1.15");
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
    if !std::env::args().any(|a| a == "--list") {
        print_ratios(quick);
    }
}
