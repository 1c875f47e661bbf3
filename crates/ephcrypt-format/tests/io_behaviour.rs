//! How `SealedFile` uses the physical file: no read-modify-write for whole
//! blocks, one size query per operation (none for reads), the block cache,
//! fresh nonces, sealed gaps, lazy headers.

use ephcrypt_format::{
    EpochKey, FormatError, NonceSequence, PhysicalIo, SealedFile, VecIo, HEADER_LEN,
    PHYS_BLOCK_SIZE,
};

const EK: [u8; 32] = [0x71; 32];
const EPOCH: [u8; 16] = [0xE7; 16];
const FILE: [u8; 16] = [0xF7; 16];
const B: usize = 8192;

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    reads: usize,
    writes: usize,
    set_lens: usize,
    lens: usize,
}

#[derive(Default)]
struct CountingIo {
    inner: VecIo,
    n: Counts,
}

impl CountingIo {
    fn take(&mut self) -> Counts {
        std::mem::take(&mut self.n)
    }
}

impl PhysicalIo for CountingIo {
    type Error = FormatError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        self.n.reads += 1;
        self.inner.read_at(buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), FormatError> {
        self.n.writes += 1;
        self.inner.write_all_at(buf, off)
    }
    fn set_len(&mut self, len: u64) -> Result<(), FormatError> {
        self.n.set_lens += 1;
        self.inner.set_len(len)
    }
    fn len(&mut self) -> Result<u64, FormatError> {
        self.n.lens += 1;
        self.inner.len()
    }
}

fn setup() -> (CountingIo, NonceSequence, SealedFile) {
    let mut io = CountingIo::default();
    let f = SealedFile::create(&mut io, &EpochKey::from_bytes(EK), &EPOCH, &FILE).unwrap();
    io.take();
    (io, NonceSequence::new([3; 8]), f)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed) | 1).collect()
}

#[test]
fn whole_block_writes_never_read() {
    let (mut io, mut nonces, mut f) = setup();
    f.write_at(&mut io, &mut nonces, &pattern(3 * B, 1), 0)
        .unwrap();
    assert_eq!(
        io.take(),
        Counts {
            reads: 0,
            writes: 3,
            set_lens: 0,
            lens: 1
        }
    );
    f.write_at(&mut io, &mut nonces, &pattern(B, 2), B as u64)
        .unwrap();
    assert_eq!(
        io.take(),
        Counts {
            reads: 0,
            writes: 1,
            set_lens: 0,
            lens: 1
        }
    );
    // Appending whole blocks at EOF.
    f.write_at(&mut io, &mut nonces, &pattern(B, 3), 3 * B as u64)
        .unwrap();
    assert_eq!(
        io.take(),
        Counts {
            reads: 0,
            writes: 1,
            set_lens: 0,
            lens: 1
        }
    );
    // A partial write of an existing block is read-modify-write.
    f.invalidate_cache();
    f.write_at(&mut io, &mut nonces, b"xy", 5).unwrap();
    assert_eq!(
        io.take(),
        Counts {
            reads: 1,
            writes: 1,
            set_lens: 0,
            lens: 1
        }
    );
}

#[test]
fn one_size_query_per_operation_and_none_for_reads() {
    let (mut io, mut nonces, mut f) = setup();
    f.write_at(&mut io, &mut nonces, b"abc", 10 * B as u64 + 7)
        .unwrap(); // gap fill
    assert_eq!(io.take().lens, 1);
    f.set_len(&mut io, &mut nonces, 3 * B as u64 + 1).unwrap();
    assert_eq!(io.take().lens, 1);
    f.set_len(&mut io, &mut nonces, 20 * B as u64).unwrap();
    assert_eq!(io.take().lens, 1);
    assert_eq!(f.len(&mut io), Ok(20 * B as u64));
    assert_eq!(io.take().lens, 1);
    let mut buf = vec![0u8; 5 * B];
    f.read_at(&mut io, &mut buf, 100).unwrap();
    assert_eq!(io.take().lens, 0);
    f.read_at(&mut io, &mut buf, 100 * B as u64).unwrap();
    assert_eq!(io.take().lens, 0);
}

#[test]
fn unaligned_sequential_reads_open_each_block_once() {
    let (mut io, mut nonces, mut f) = setup();
    let data = pattern(10 * B, 4);
    f.write_at(&mut io, &mut nonces, &data, 0).unwrap();
    io.take();
    let mut buf = vec![0u8; B];
    for i in 0..9 {
        let off = 100 + i * B;
        assert_eq!(f.read_at(&mut io, &mut buf, off as u64), Ok(B));
        assert_eq!(buf, data[off..off + B]);
    }
    // Blocks 0..=9, one physical read each.
    assert_eq!(io.take().reads, 10);
    // Aligned reads go straight into the caller's buffer; block 9 is still
    // cached from the last unaligned read.
    for i in 0..10 {
        assert_eq!(f.read_at(&mut io, &mut buf, (i * B) as u64), Ok(B));
        assert_eq!(buf, data[i * B..(i + 1) * B]);
    }
    assert_eq!(io.take().reads, 9);
}

#[test]
fn small_appends_hit_the_cache() {
    let (mut io, mut nonces, mut f) = setup();
    let mut off = 0u64;
    let mut model = Vec::new();
    for i in 0..400 {
        let rec = pattern(37 + i % 50, i as u8);
        f.write_at(&mut io, &mut nonces, &rec, off).unwrap();
        off += rec.len() as u64;
        model.extend_from_slice(&rec);
    }
    let c = io.take();
    assert_eq!(c.reads, 0, "appends re-read a block: {c:?}");
    let mut buf = vec![0u8; model.len()];
    f.invalidate_cache();
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(model.len()));
    assert_eq!(buf, model);
}

#[test]
fn every_write_of_a_block_takes_a_fresh_nonce() {
    let (mut io, mut nonces, mut f) = setup();
    let nonce_of = |io: &CountingIo, i: usize| {
        let s = HEADER_LEN + i * PHYS_BLOCK_SIZE;
        io.inner.data[s..s + 12].to_vec()
    };
    let mut seen = std::collections::HashSet::new();
    for round in 0..5u8 {
        // Same data at the same offset: still a new nonce, new ciphertext.
        f.write_at(&mut io, &mut nonces, &[7; B], 0).unwrap();
        assert!(seen.insert(nonce_of(&io, 0)), "round {round}");
        f.write_at(&mut io, &mut nonces, &[7; 10], 20).unwrap();
        assert!(seen.insert(nonce_of(&io, 0)), "round {round} rmw");
    }
}

#[test]
fn gaps_are_sealed_zero_blocks_not_holes() {
    let (mut io, mut nonces, mut f) = setup();
    f.write_at(&mut io, &mut nonces, b"head", 0).unwrap();
    f.write_at(&mut io, &mut nonces, b"tail", 5 * B as u64 + 10)
        .unwrap();
    assert_eq!(
        io.inner.data.len(),
        HEADER_LEN + 5 * PHYS_BLOCK_SIZE + 14 + 28
    );
    for chunk in io.inner.data[HEADER_LEN..].chunks(PHYS_BLOCK_SIZE) {
        assert!(
            chunk.iter().any(|&b| b != 0),
            "an all-zero physical block was written"
        );
    }
    let mut buf = vec![0xFFu8; 6 * B];
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(5 * B + 14));
    assert_eq!(&buf[..4], b"head");
    assert!(buf[4..5 * B + 10].iter().all(|&b| b == 0));
    assert_eq!(&buf[5 * B + 10..5 * B + 14], b"tail");
    // Extending truncate: same rule.
    f.set_len(&mut io, &mut nonces, 8 * B as u64).unwrap();
    for chunk in io.inner.data[HEADER_LEN..].chunks(PHYS_BLOCK_SIZE) {
        assert!(chunk.iter().any(|&b| b != 0));
    }
    assert_eq!(f.read_at(&mut io, &mut buf[..4], 5 * B as u64 + 10), Ok(4));
    assert_eq!(&buf[..4], b"tail");
}

#[test]
fn empty_file_gets_its_header_lazily() {
    let key = EpochKey::from_bytes(EK);
    let mut io = CountingIo::default();
    let mut nonces = NonceSequence::new([4; 8]);
    let mut f = SealedFile::open_or_init(&mut io, &key, &EPOCH, &FILE).unwrap();
    let mut buf = [0u8; 10];
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(0));
    assert_eq!(f.len(&mut io), Ok(0));
    f.set_len(&mut io, &mut nonces, 0).unwrap();
    assert_eq!(f.write_at(&mut io, &mut nonces, b"", 0), Ok(0));
    assert!(io.inner.data.is_empty(), "read-only use must not write");
    f.write_at(&mut io, &mut nonces, b"hello", 0).unwrap();
    assert_eq!(io.inner.data.len(), HEADER_LEN + 5 + 28);
    let mut g = SealedFile::open(&mut io, &key, &EPOCH).unwrap();
    assert_eq!(g.cipher().file_id(), FILE);
    assert_eq!(g.read_at(&mut io, &mut buf, 0), Ok(5));
    // Truncate to 0 keeps the header; an extending set_len on an empty file writes it.
    g.set_len(&mut io, &mut nonces, 0).unwrap();
    assert_eq!(io.inner.data.len(), HEADER_LEN);
    io.inner.data.clear(); // e.g. O_TRUNC by another open
    g.set_len(&mut io, &mut nonces, 3).unwrap();
    assert_eq!(io.inner.data.len(), HEADER_LEN + 3 + 28);
    let mut h = SealedFile::open(&mut io, &key, &EPOCH).unwrap();
    assert_eq!(h.read_at(&mut io, &mut buf, 0), Ok(3));
    assert_eq!(&buf[..3], &[0, 0, 0]);
    // An existing file is opened, not re-initialised, by open_or_init.
    let mut k = SealedFile::open_or_init(&mut io, &key, &EPOCH, &[9; 16]).unwrap();
    assert_eq!(k.cipher().file_id(), FILE);
    assert_eq!(k.len(&mut io), Ok(3));
}

#[test]
fn truncate_mid_block_reseals_and_keeps_reading_right() {
    let (mut io, mut nonces, mut f) = setup();
    let data = pattern(3 * B, 5);
    f.write_at(&mut io, &mut nonces, &data, 0).unwrap();
    let mut buf = vec![0u8; 3 * B];
    // Put block 1 into the cache, then cut inside it.
    assert_eq!(f.read_at(&mut io, &mut buf[..10], B as u64 + 3), Ok(10));
    f.set_len(&mut io, &mut nonces, B as u64 + 100).unwrap();
    assert_eq!(io.inner.data.len(), HEADER_LEN + PHYS_BLOCK_SIZE + 128);
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(B + 100));
    assert_eq!(buf[..B + 100], data[..B + 100]);
    assert_eq!(f.read_at(&mut io, &mut buf, B as u64 + 100), Ok(0));
    // Cut at a block boundary drops the cached block.
    f.set_len(&mut io, &mut nonces, B as u64).unwrap();
    assert_eq!(f.read_at(&mut io, &mut buf, B as u64), Ok(0));
    f.set_len(&mut io, &mut nonces, B as u64 + 5).unwrap();
    assert_eq!(f.read_at(&mut io, &mut buf, B as u64), Ok(5));
    assert_eq!(&buf[..5], &[0; 5]);
}
