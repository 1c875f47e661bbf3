//! Every data block `SealedFile` writes, and every partial block it reads
//! for itself, goes through a page-aligned buffer (FORMAT.md §8, memory per
//! open file): the kernel then copies page against page. Measured on this
//! machine: a pread of 8 KiB from the page cache into a buffer 16 bytes
//! past a page boundary cost +0.21 and +0.33 µs against an aligned one
//! (docs/DECISIONS.md #68).

use ephcrypt_format::{
    EpochKey, FileName, FormatError, Mode, NonceSequence, PhysicalIo, SealedFile, VecIo,
    BLOCK_SIZE, PAGE_SIZE,
};

const B: usize = BLOCK_SIZE;

/// Records the address alignment of every data-block access.
#[derive(Default)]
struct AlignIo {
    inner: VecIo,
    /// (offset within a 4 KiB page of the buffer's address, length) of each
    /// data write.
    writes: Vec<(usize, usize)>,
    /// The same for each data read.
    reads: Vec<(usize, usize)>,
}

fn is_meta(off: u64) -> bool {
    off.is_multiple_of(257 * PAGE_SIZE as u64)
}

fn misalignment(p: *const u8) -> usize {
    p as usize % 4096
}

impl PhysicalIo for AlignIo {
    type Error = FormatError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        // Head checks (at most 8 bytes) and metadata are not block copies.
        if !is_meta(off - off % PAGE_SIZE as u64) && buf.len() > 8 {
            self.reads.push((misalignment(buf.as_ptr()), buf.len()));
        }
        self.inner.read_at(buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), FormatError> {
        if !is_meta(off) {
            self.writes.push((misalignment(buf.as_ptr()), buf.len()));
        }
        self.inner.write_all_at(buf, off)
    }
    fn set_len(&mut self, len: u64) -> Result<(), FormatError> {
        self.inner.set_len(len)
    }
    fn len(&mut self) -> Result<u64, FormatError> {
        self.inner.len()
    }
}

/// `len` bytes starting 16 bytes past a page boundary (what malloc gives).
struct Misaligned {
    buf: Vec<u8>,
    start: usize,
}

impl Misaligned {
    fn new(len: usize, seed: u8) -> Self {
        let mut buf = vec![0u8; len + 4096 + 16];
        let start = buf.as_ptr().align_offset(4096) + 16;
        for (i, b) in buf[start..start + len].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        Self { buf, start }
    }
    fn get(&self, len: usize) -> &[u8] {
        &self.buf[self.start..self.start + len]
    }
    fn get_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.buf[self.start..self.start + len]
    }
}

fn check(mode: Mode) {
    let mut io = AlignIo::default();
    let mut nonces = NonceSequence::new([5; 8]);
    let key = EpochKey::from_bytes([0x42; 32]);
    let name = FileName::new(1, b"pgsql_tmp9.0").unwrap();
    let mut f =
        SealedFile::create(&mut io, &mut nonces, &key, &[9; 16], &[8; 16], &name, mode).unwrap();
    // Whole blocks from a misaligned caller buffer, then pieces of blocks
    // (an unaligned tail, a rewrite inside a block).
    let whole = Misaligned::new(3 * B, 1);
    f.write_at(&mut io, &mut nonces, whole.get(3 * B), 0)
        .unwrap();
    let piece = Misaligned::new(1000, 2);
    f.write_at(&mut io, &mut nonces, piece.get(1000), 3 * B as u64)
        .unwrap();
    f.write_at(&mut io, &mut nonces, piece.get(700), B as u64 + 100)
        .unwrap();
    f.flush(&mut io, &mut nonces).unwrap();
    assert!(io.writes.len() >= 4, "{:?}", io.writes);
    for &(mis, len) in &io.writes {
        assert_eq!(
            mis, 0,
            "a data write of {len} bytes from an unaligned buffer"
        );
    }
    // Partial reads (the block is opened in the file's own buffer first),
    // checked against what was written.
    let mut out = Misaligned::new(500, 0);
    f.read_at(&mut io, out.get_mut(500), B as u64 + 50).unwrap();
    let mut want = whole.get(3 * B)[B + 50..B + 550].to_vec();
    want[50..].copy_from_slice(&piece.get(700)[..450]);
    assert_eq!(out.get(500), &want[..]);
    assert!(!io.reads.is_empty(), "the partial read reads the block");
    for &(mis, len) in &io.reads {
        assert_eq!(
            mis, 0,
            "a data read of {len} bytes into an unaligned buffer"
        );
    }
}

#[test]
fn private_files_write_and_read_blocks_through_aligned_buffers() {
    check(Mode::PRIVATE);
}

#[test]
fn shared_files_write_and_read_blocks_through_aligned_buffers() {
    check(Mode::Shared);
}

/// The control: the recorder does see a misaligned buffer (the caller's,
/// which a whole-block read decrypts in place).
#[test]
fn the_recorder_sees_misaligned_buffers() {
    let mut io = AlignIo::default();
    let mut nonces = NonceSequence::new([5; 8]);
    let key = EpochKey::from_bytes([0x42; 32]);
    let name = FileName::new(1, b"pgsql_tmp9.0").unwrap();
    let mut f = SealedFile::create(
        &mut io,
        &mut nonces,
        &key,
        &[9; 16],
        &[8; 16],
        &name,
        Mode::PRIVATE,
    )
    .unwrap();
    let whole = Misaligned::new(2 * B, 3);
    f.write_at(&mut io, &mut nonces, whole.get(2 * B), 0)
        .unwrap();
    f.flush(&mut io, &mut nonces).unwrap();
    let mut f = SealedFile::open(&mut io, &key, &[9; 16], &name, Mode::PRIVATE, None).unwrap();
    io.reads.clear();
    let mut out = Misaligned::new(B, 0);
    f.read_at(&mut io, out.get_mut(B), B as u64).unwrap();
    assert_eq!(out.get(B), &whole.get(2 * B)[B..]);
    assert_eq!(
        io.reads,
        vec![(16, B)],
        "a whole block is read into the caller's buffer"
    );
}
