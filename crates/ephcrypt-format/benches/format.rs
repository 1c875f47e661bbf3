//! Cost of the format on top of raw AES-256-GCM (aws-lc-rs), per 8 KiB block.
//!
//! Run: `cargo bench -p ephcrypt-format --bench format`. After criterion's
//! report it prints format/raw ratios measured in the same run by an
//! interleaved median loop (the machine is noisy; criterion's numbers for the
//! same functions are printed above). Goal: <= 1.15.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use criterion::{Criterion, Throughput};
use ephcrypt_format::{
    EpochKey, FileCipher, Header, NonceSequence, SealedFile, VecIo, BLOCK_SIZE, PHYS_BLOCK_SIZE,
};

const EPOCH: [u8; 16] = [0xE0; 16];
const FILE: [u8; 16] = [0xF0; 16];

struct Fixture {
    cipher: FileCipher,
    header: [u8; 64],
    raw: LessSafeKey,
    aad: [u8; 56],
    plain: Vec<u8>,
    sealed: Vec<u8>,
}

fn fixture() -> Fixture {
    let key = EpochKey::from_bytes([0x42; 32]);
    let (cipher, header) = FileCipher::create(&key, &EPOCH, &FILE).unwrap();
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x24; 32]).unwrap());
    let mut aad = [0u8; 56];
    aad[..48].copy_from_slice(&header[..48]);
    let plain: Vec<u8> = (0..BLOCK_SIZE).map(|i| i as u8).collect();
    let mut sealed = vec![0u8; PHYS_BLOCK_SIZE];
    cipher.seal_block(7, [1; 12], &plain, &mut sealed).unwrap();
    Fixture {
        cipher,
        header,
        raw,
        aad,
        plain,
        sealed,
    }
}

/// The operations compared, each as one closure call = one 8 KiB block.
struct Ops {
    f: Fixture,
    nonces: NonceSequence,
    out: Vec<u8>,
    buf: Vec<u8>,
    ct_tag: Vec<u8>,
}

impl Ops {
    fn new() -> Self {
        let f = fixture();
        // Raw ciphertext and tag for the raw open.
        let mut ct_tag = f.plain.clone();
        let tag = f
            .raw
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([2; 12]),
                Aad::from(f.aad),
                &mut ct_tag,
            )
            .unwrap();
        ct_tag.extend_from_slice(tag.as_ref());
        Self {
            f,
            nonces: NonceSequence::new([9; 8]),
            out: vec![0u8; PHYS_BLOCK_SIZE],
            buf: vec![0u8; BLOCK_SIZE],
            ct_tag,
        }
    }

    fn format_seal(&mut self) {
        let nonce = self.nonces.next().unwrap();
        let n = self
            .f
            .cipher
            .seal_block(black_box(7), nonce, black_box(&self.f.plain), &mut self.out)
            .unwrap();
        black_box(&self.out[..n]);
    }

    fn raw_seal(&mut self) {
        let nonce = self.nonces.next().unwrap();
        let mut aad = self.f.aad;
        aad[48..].copy_from_slice(&black_box(7u64).to_le_bytes());
        let tag = self
            .f
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
            .f
            .cipher
            .open_block(black_box(7), black_box(&self.f.sealed), &mut self.buf)
            .unwrap();
        black_box(&self.buf[..n]);
    }

    fn raw_open(&mut self) {
        let (ct, tag) = self.ct_tag.split_at(BLOCK_SIZE);
        self.f
            .raw
            .open_separate_gather(
                Nonce::assume_unique_for_key([2; 12]),
                Aad::from(self.f.aad),
                black_box(ct),
                tag,
                &mut self.buf,
            )
            .unwrap();
        black_box(&self.buf);
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
    let key = EpochKey::from_bytes([0x42; 32]);
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new([5; 8]);
    let mut file = SealedFile::create(&mut io, &key, &EPOCH, &FILE).unwrap();
    file.write_at(&mut io, &mut nonces, &vec![3u8; 4 * BLOCK_SIZE], 0)
        .unwrap();
    let rec = [7u8; 100];
    let mut g = c.benchmark_group("rmw_100B_in_8k");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    g.bench_function("uncached", |b| {
        b.iter(|| {
            file.invalidate_cache();
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

    let mut g = c.benchmark_group("header");
    let header = ops.f.header;
    g.bench_function("parse", |b| {
        b.iter(|| Header::parse(black_box(&header)).unwrap())
    });
    g.bench_function("open_derive_keys", |b| {
        b.iter(|| FileCipher::open(&key, &EPOCH, black_box(&header)).unwrap())
    });
    g.finish();
}

/// Median ns per call over `rounds` rounds of `iters` calls, `a` and `b`
/// interleaved round by round so both see the same machine noise.
fn median_pair(
    ops: &mut Ops,
    a: fn(&mut Ops),
    b: fn(&mut Ops),
    rounds: usize,
    iters: u32,
) -> (f64, f64) {
    let mut ta = Vec::with_capacity(rounds);
    let mut tb = Vec::with_capacity(rounds);
    let time = |ops: &mut Ops, f: fn(&mut Ops)| {
        let t = Instant::now();
        for _ in 0..iters {
            f(ops);
        }
        t.elapsed().as_nanos() as f64 / f64::from(iters)
    };
    for _ in 0..20 {
        a(ops);
        b(ops);
    }
    for r in 0..rounds {
        if r % 2 == 0 {
            ta.push(time(ops, a));
            tb.push(time(ops, b));
        } else {
            tb.push(time(ops, b));
            ta.push(time(ops, a));
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (med(&mut ta), med(&mut tb))
}

fn print_ratios(quick: bool) {
    let mut ops = Ops::new();
    let (rounds, iters) = if quick { (3, 10) } else { (301, 2000) };
    let (fs, rs) = median_pair(&mut ops, Ops::format_seal, Ops::raw_seal, rounds, iters);
    let (fo, ro) = median_pair(&mut ops, Ops::format_open, Ops::raw_open, rounds, iters);
    println!();
    println!("format vs raw aws-lc-rs AES-256-GCM, 8 KiB, median of {rounds} interleaved rounds x {iters}:");
    println!(
        "  seal: format {fs:7.1} ns  raw {rs:7.1} ns  ratio format-seal/raw-seal = {:.3}",
        fs / rs
    );
    println!(
        "  open: format {fo:7.1} ns  raw {ro:7.1} ns  ratio format-open/raw-open = {:.3}",
        fo / ro
    );
    println!("  goal: <= 1.15");
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
