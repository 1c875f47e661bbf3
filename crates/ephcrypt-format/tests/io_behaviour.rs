//! How `SealedFile` uses the physical file (FORMAT.md §7, §8): in private
//! mode one 8 KiB block write is one data pwrite and metadata goes back only
//! on eviction and flush; in shared mode every call starts with one size
//! query and writes its metadata through; reads never write; the plaintext
//! cache; fresh nonces; sealed gaps; eager page 0.

use ephcrypt_format::{
    data_offset, meta_offset, EpochKey, FileName, FormatError, Mode, NonceSequence, PhysicalIo,
    SealedFile, VecIo, BLOCK_SIZE, PAGE_SIZE,
};

const EK: [u8; 32] = [0x71; 32];
const EPOCH: [u8; 16] = [0xE7; 16];
const FILE: [u8; 16] = [0xF7; 16];
const B: usize = BLOCK_SIZE;
const G: usize = 256;
/// MAC nonce and tag at the end of every metadata page.
const TRAILER: usize = 28;

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    data_reads: usize,
    meta_reads: usize,
    /// 28-byte reads of a metadata page's MAC trailer (nonce || tag).
    trailer_reads: usize,
    /// Reads of at most 8 bytes in a data block (a kept block's check of
    /// its ciphertext head, a write ahead's check).
    head_reads: usize,
    data_writes: usize,
    meta_writes: usize,
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

fn is_meta(off: u64) -> bool {
    off.is_multiple_of(257 * PAGE_SIZE as u64)
}

fn is_trailer(buf: &[u8], off: u64) -> bool {
    buf.len() == TRAILER && is_meta(off - (PAGE_SIZE - TRAILER) as u64)
}

impl PhysicalIo for CountingIo {
    type Error = FormatError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        if is_meta(off) && buf.len() == PAGE_SIZE {
            self.n.meta_reads += 1;
        } else if is_trailer(buf, off) {
            self.n.trailer_reads += 1;
        } else if buf.len() <= 8 {
            self.n.head_reads += 1;
        } else {
            self.n.data_reads += 1;
        }
        self.inner.read_at(buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), FormatError> {
        if is_meta(off) {
            assert_eq!(buf.len(), PAGE_SIZE, "metadata pages are written whole");
            self.n.meta_writes += 1;
        } else {
            assert_eq!(off % PAGE_SIZE as u64, 0, "data blocks start 8 KiB-aligned");
            self.n.data_writes += 1;
        }
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

fn name() -> FileName<'static> {
    FileName::new(1, b"pgsql_tmp77.0").unwrap()
}

fn setup(mode: Mode) -> (CountingIo, NonceSequence, SealedFile) {
    let mut io = CountingIo::default();
    let mut nonces = NonceSequence::new([3; 8]);
    let f = SealedFile::create(
        &mut io,
        &mut nonces,
        &EpochKey::from_bytes(EK),
        &EPOCH,
        &FILE,
        &name(),
        mode,
    )
    .unwrap();
    io.take();
    (io, nonces, f)
}

fn reopen(io: &mut CountingIo, mode: Mode) -> SealedFile {
    SealedFile::open(io, &EpochKey::from_bytes(EK), &EPOCH, &name(), mode, None).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed) | 1).collect()
}

fn counts(data_writes: usize) -> Counts {
    Counts {
        data_writes,
        ..Counts::default()
    }
}

#[test]
fn create_writes_page_0_and_open_reads_header_page_0_and_size() {
    let mut io = CountingIo::default();
    let mut nonces = NonceSequence::new([3; 8]);
    let key = EpochKey::from_bytes(EK);
    SealedFile::create(
        &mut io,
        &mut nonces,
        &key,
        &EPOCH,
        &FILE,
        &name(),
        Mode::PRIVATE,
    )
    .unwrap();
    assert_eq!(io.inner.data.len(), PAGE_SIZE);
    assert_eq!(
        io.take(),
        Counts {
            meta_writes: 1,
            lens: 1,
            ..Counts::default()
        }
    );
    reopen(&mut io, Mode::PRIVATE);
    // 64-byte header read + page 0, and one size query (the length).
    let c = io.take();
    assert_eq!(
        (
            c.meta_reads,
            c.data_reads,
            c.lens,
            c.data_writes,
            c.meta_writes
        ),
        (1, 1, 1, 0, 0)
    );
}

#[test]
fn private_block_writes_are_one_data_pwrite_each() {
    let (mut io, mut nonces, mut f) = setup(Mode::PRIVATE);
    f.write_at(&mut io, &mut nonces, &pattern(3 * B, 1), 0)
        .unwrap();
    assert_eq!(io.take(), counts(3));
    // Rewrite of a whole block, and appends, to the end of group 0.
    f.write_at(&mut io, &mut nonces, &pattern(B, 2), B as u64)
        .unwrap();
    assert_eq!(io.take(), counts(1));
    for i in 3..G {
        f.write_at(&mut io, &mut nonces, &pattern(B, 3), (i * B) as u64)
            .unwrap();
    }
    assert_eq!(io.take(), counts(G - 3));
    // Starting group 1: still no metadata I/O (both pages are cached).
    f.write_at(&mut io, &mut nonces, &pattern(B, 4), (G * B) as u64)
        .unwrap();
    assert_eq!(io.take(), counts(1));
    assert_eq!(f.len(&mut io), Ok((G * B + B) as u64));
    assert_eq!(io.take(), Counts::default(), "len is from memory");
    // flush writes one page per dirty group, once.
    f.flush(&mut io, &mut nonces).unwrap();
    assert_eq!(
        io.take(),
        Counts {
            meta_writes: 2,
            ..Counts::default()
        }
    );
    f.flush(&mut io, &mut nonces).unwrap();
    assert_eq!(io.take(), Counts::default(), "flush is idempotent");
    // A partial write of an existing block is read-modify-write; as the
    // write's last (partial) block it is held and sealed later, once.
    f.invalidate();
    f.write_at(&mut io, &mut nonces, b"xy", 5).unwrap();
    assert_eq!(
        io.take(),
        Counts {
            data_reads: 1,
            ..Counts::default()
        }
    );
    f.write_at(&mut io, &mut nonces, b"zw", 9).unwrap();
    assert_eq!(
        io.take(),
        Counts::default(),
        "the held block takes more bytes"
    );
    f.flush(&mut io, &mut nonces).unwrap();
    assert_eq!(
        io.take(),
        Counts {
            data_writes: 1,
            meta_writes: 1,
            ..Counts::default()
        }
    );
}

#[test]
fn shared_calls_revalidate_cached_pages_and_write_through() {
    let (mut io, mut nonces, mut f) = setup(Mode::Shared);
    // Size query + the final page's trailer (page 0 is cached since
    // create), the data block, the re-sealed page.
    let write = Counts {
        lens: 1,
        trailer_reads: 1,
        data_writes: 1,
        meta_writes: 1,
        ..Counts::default()
    };
    let read = Counts {
        lens: 1,
        trailer_reads: 1,
        data_reads: 1,
        ..Counts::default()
    };
    f.write_at(&mut io, &mut nonces, &pattern(B, 1), 0).unwrap();
    assert_eq!(io.take(), write);
    f.write_at(&mut io, &mut nonces, &pattern(B, 1), B as u64)
        .unwrap();
    assert_eq!(io.take(), write, "its own write-through keeps it valid");
    // Another process can read it at once; its page 0 is cached from open.
    let mut other = reopen(&mut io, Mode::Shared);
    let mut buf = vec![0u8; B];
    io.take();
    assert_eq!(other.read_at(&mut io, &mut buf, 0), Ok(B));
    assert_eq!(buf, pattern(B, 1));
    assert_eq!(io.take(), read);
    assert_eq!(other.read_at(&mut io, &mut buf, 0), Ok(B));
    assert_eq!(
        io.take(),
        read,
        "unchanged trailer: the page is not re-read"
    );
    // ...and sees the next write without being told: the trailer changed,
    // so the page is loaded and verified again, once.
    f.write_at(&mut io, &mut nonces, &pattern(B, 2), 0).unwrap();
    io.take();
    assert_eq!(other.read_at(&mut io, &mut buf, 0), Ok(B));
    assert_eq!(buf, pattern(B, 2));
    assert_eq!(
        io.take(),
        Counts {
            meta_reads: 1,
            ..read
        },
        "another handle's write forces a reload"
    );
    assert_eq!(other.read_at(&mut io, &mut buf, 0), Ok(B));
    assert_eq!(io.take(), read);
    // The writer's own copy is stale now too: its next write reloads.
    other
        .write_at(&mut io, &mut nonces, &pattern(B, 3), 0)
        .unwrap();
    assert_eq!(io.take(), write);
    f.write_at(&mut io, &mut nonces, &pattern(B, 4), 0).unwrap();
    assert_eq!(
        io.take(),
        Counts {
            meta_reads: 1,
            ..write
        }
    );
    f.set_len(&mut io, &mut nonces, 100).unwrap();
    assert_eq!(
        io.take(),
        Counts {
            lens: 1,
            trailer_reads: 1,
            data_reads: 1,
            data_writes: 1,
            set_lens: 1,
            meta_writes: 1,
            ..Counts::default()
        }
    );
    assert_eq!(other.len(&mut io), Ok(100));
    assert_eq!(
        io.take(),
        Counts {
            lens: 1,
            trailer_reads: 1,
            meta_reads: 1,
            ..Counts::default()
        }
    );
    // Nothing stays dirty between calls.
    assert!(!f.is_dirty());
    // invalidate() (the shims call it before every call on a shared file)
    // keeps the verified pages as stale copies; at the physical size this
    // handle verified last, the length is not re-checked: one size query.
    other.invalidate();
    assert_eq!(other.len(&mut io), Ok(100));
    assert_eq!(
        io.take(),
        Counts {
            lens: 1,
            ..Counts::default()
        }
    );
    // Control: another size (the writer grew the file) is checked again.
    f.write_at(&mut io, &mut nonces, &pattern(10, 5), 100)
        .unwrap();
    io.take();
    assert_eq!(other.len(&mut io), Ok(110));
    assert_eq!(
        io.take(),
        Counts {
            lens: 1,
            trailer_reads: 1,
            meta_reads: 1,
            ..Counts::default()
        }
    );
}

/// A shared handle skips the length check at the size it verified last;
/// content changed behind it at that size is still caught, by page MACs
/// and block tags (never other bytes).
#[test]
fn a_same_size_shared_call_trusts_the_length_and_still_fails_closed() {
    let (mut io, mut nonces, mut f) = setup(Mode::Shared);
    f.write_at(&mut io, &mut nonces, &pattern(3 * B, 1), 0)
        .unwrap();
    let mut other = reopen(&mut io, Mode::Shared);
    let mut buf = vec![0u8; B];
    assert_eq!(other.read_at(&mut io, &mut buf, 2 * B as u64), Ok(B));
    // Cut to one block and regrow to the same physical size with zeros,
    // behind both handles' backs.
    let size = io.inner.data.len();
    io.inner.data.truncate(2 * PAGE_SIZE);
    io.inner.data.resize(size, 0);
    io.take();
    assert!(other.read_at(&mut io, &mut buf, 2 * B as u64).is_err());
    assert!(buf.iter().all(|&b| b == 0), "nothing but zeros returned");
    // A replayed page 0 of another time at the same size: its entries no
    // longer match the blocks.
    let (mut io2, mut n2, mut g) = setup(Mode::Shared);
    g.write_at(&mut io2, &mut n2, &pattern(3 * B, 1), 0)
        .unwrap();
    let old_page = io2.inner.data[..PAGE_SIZE].to_vec();
    let mut reader = reopen(&mut io2, Mode::Shared);
    assert_eq!(reader.read_at(&mut io2, &mut buf, 0), Ok(B));
    g.write_at(&mut io2, &mut n2, &pattern(3 * B, 2), 0)
        .unwrap();
    io2.inner.data[..PAGE_SIZE].copy_from_slice(&old_page);
    assert!(
        reader.read_at(&mut io2, &mut buf, 0).is_err(),
        "the replayed page"
    );
}

/// Outside the final group a call revalidates the block's page, and also
/// the final one (the length) when the file's size changed since the
/// handle's last call; at the group boundary two pages change and both are
/// written through.
#[test]
fn shared_calls_outside_the_final_group_revalidate_two_pages() {
    let (mut io, mut nonces, mut f) = setup(Mode::Shared);
    f.set_len(&mut io, &mut nonces, ((G + 2) * B) as u64)
        .unwrap();
    let c = io.take();
    assert_eq!((c.meta_writes, c.data_writes), (2, G + 2));
    let mut other = reopen(&mut io, Mode::Shared);
    let mut buf = vec![0u8; B];
    assert_eq!(other.read_at(&mut io, &mut buf, 0), Ok(B));
    io.take();
    for i in [0, 5, G - 1] {
        assert_eq!(other.read_at(&mut io, &mut buf, (i * B) as u64), Ok(B));
        assert_eq!(
            io.take(),
            Counts {
                lens: 1,
                trailer_reads: 1,
                data_reads: 1,
                ..Counts::default()
            },
            "block {i}"
        );
    }
    // The writer's own set_len left the size it now finds: only the
    // block's page is revalidated.
    f.write_at(&mut io, &mut nonces, &pattern(B, 1), (3 * B) as u64)
        .unwrap();
    assert_eq!(
        io.take(),
        Counts {
            lens: 1,
            trailer_reads: 1,
            data_writes: 1,
            meta_writes: 1,
            ..Counts::default()
        }
    );
    // Only group 0 changed, the size did not: only its page is revalidated
    // and reloaded.
    assert_eq!(other.read_at(&mut io, &mut buf, (3 * B) as u64), Ok(B));
    assert_eq!(buf, pattern(B, 1));
    assert_eq!(
        io.take(),
        Counts {
            lens: 1,
            trailer_reads: 1,
            meta_reads: 1,
            data_reads: 1,
            ..Counts::default()
        }
    );
    // A write that starts group 2 (the old final group 1 fills up and
    // becomes non-final): both pages go through.
    f.set_len(&mut io, &mut nonces, (2 * G * B) as u64).unwrap();
    io.take();
    f.write_at(&mut io, &mut nonces, &pattern(B, 2), (2 * G * B) as u64)
        .unwrap();
    assert_eq!(
        io.take(),
        Counts {
            lens: 1,
            trailer_reads: 1,
            data_writes: 1,
            meta_writes: 2,
            ..Counts::default()
        }
    );
    assert_eq!(other.len(&mut io), Ok((2 * G * B + B) as u64));
    assert_eq!(other.read_at(&mut io, &mut buf, (2 * G * B) as u64), Ok(B));
    assert_eq!(buf, pattern(B, 2));
}

#[test]
fn private_eviction_writes_back_the_least_recently_used_page() {
    let mode = Mode::Private { cache_groups: 2 };
    let (mut io, mut nonces, mut f) = setup(mode);
    // Three groups through two slots.
    f.set_len(&mut io, &mut nonces, (3 * G * B) as u64).unwrap();
    let c = io.take();
    assert_eq!(c.data_writes, 3 * G);
    assert_eq!(c.meta_writes, 1, "group 0 evicted when group 2 started");
    // Touching group 0 again evicts the least recently used (group 1).
    f.write_at(&mut io, &mut nonces, &pattern(B, 1), 0).unwrap();
    let c = io.take();
    assert_eq!((c.meta_reads, c.meta_writes, c.data_writes), (1, 1, 1));
    f.flush(&mut io, &mut nonces).unwrap();
    assert_eq!(io.take().meta_writes, 2);
}

#[test]
fn reads_never_write_even_when_every_slot_is_dirty() {
    let mode = Mode::Private { cache_groups: 2 };
    let (mut io, mut nonces, mut f) = setup(mode);
    f.set_len(&mut io, &mut nonces, (3 * G * B) as u64).unwrap();
    f.flush(&mut io, &mut nonces).unwrap();
    // Dirty groups 1 and 2 (whole blocks: sealed at once), then read group
    // 0 (not cached).
    f.write_at(&mut io, &mut nonces, &pattern(B, 1), (G * B) as u64)
        .unwrap();
    f.write_at(&mut io, &mut nonces, &pattern(B, 2), (2 * G * B) as u64)
        .unwrap();
    io.take();
    let mut buf = [0u8; 10];
    for _ in 0..3 {
        f.invalidate();
        assert_eq!(f.read_at(&mut io, &mut buf, 100), Ok(10));
    }
    let c = io.take();
    assert_eq!((c.data_writes, c.meta_writes, c.set_lens), (0, 0, 0));
    assert_eq!(
        c.meta_reads, 3,
        "group 0 is read into the scratch page each time"
    );
    assert!(f.is_dirty());
}

#[test]
fn unaligned_sequential_reads_open_each_block_once() {
    let (mut io, mut nonces, mut f) = setup(Mode::PRIVATE);
    let data = pattern(10 * B, 4);
    f.write_at(&mut io, &mut nonces, &data, 0).unwrap();
    io.take();
    let mut buf = vec![0u8; B];
    for i in 0..9 {
        let off = 100 + i * B;
        assert_eq!(f.read_at(&mut io, &mut buf, off as u64), Ok(B));
        assert_eq!(buf, data[off..off + B]);
    }
    // Blocks 0..=9, one physical read each; metadata from memory.
    assert_eq!(
        io.take(),
        Counts {
            data_reads: 10,
            ..Counts::default()
        }
    );
    // Aligned reads go straight into the caller's buffer; block 9 is still
    // cached from the last unaligned read.
    for i in 0..10 {
        assert_eq!(f.read_at(&mut io, &mut buf, (i * B) as u64), Ok(B));
        assert_eq!(buf, data[i * B..(i + 1) * B]);
    }
    assert_eq!(io.take().data_reads, 9);
}

#[test]
fn small_appends_hit_the_cache() {
    for mode in [Mode::PRIVATE, Mode::Shared] {
        let (mut io, mut nonces, mut f) = setup(mode);
        let mut off = 0u64;
        let mut model = Vec::new();
        for i in 0..400 {
            let rec = pattern(37 + i % 50, i as u8);
            f.write_at(&mut io, &mut nonces, &rec, off).unwrap();
            off += rec.len() as u64;
            model.extend_from_slice(&rec);
        }
        let c = io.take();
        // Shared mode too: the block this handle wrote last is kept while
        // its page is unchanged (FORMAT.md §8.1; tests/kept_block.rs),
        // checked by its 8-byte ciphertext head.
        assert_eq!(c.data_reads, 0, "appends re-read a block: {c:?}");
        if mode == Mode::Shared {
            assert!(c.head_reads <= 400, "{c:?}");
        } else {
            assert_eq!(c.head_reads, 0, "{c:?}");
        }
        let mut buf = vec![0u8; model.len()];
        f.invalidate();
        assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(model.len()));
        assert_eq!(buf, model);
    }
}

#[test]
fn every_write_of_a_block_takes_a_fresh_nonce() {
    let (mut io, mut nonces, mut f) = setup(Mode::Shared);
    let entry0 = |io: &CountingIo| io.inner.data[128..128 + 28].to_vec();
    let mac = |io: &CountingIo| io.inner.data[8164..8176].to_vec();
    let mut seen = std::collections::HashSet::new();
    for round in 0..5u8 {
        // Same data at the same offset: still a new nonce, new ciphertext.
        f.write_at(&mut io, &mut nonces, &[7; B], 0).unwrap();
        assert!(seen.insert(entry0(&io)), "round {round}");
        assert!(seen.insert(mac(&io)), "round {round} page");
        f.write_at(&mut io, &mut nonces, &[7; 10], 20).unwrap();
        assert!(seen.insert(entry0(&io)), "round {round} rmw");
        assert!(seen.insert(mac(&io)), "round {round} rmw page");
    }
}

#[test]
fn gaps_are_sealed_zero_blocks_not_holes() {
    for mode in [Mode::PRIVATE, Mode::Shared] {
        let (mut io, mut nonces, mut f) = setup(mode);
        f.write_at(&mut io, &mut nonces, b"head", 0).unwrap();
        f.write_at(
            &mut io,
            &mut nonces,
            b"tail",
            (G + 5) as u64 * B as u64 + 10,
        )
        .unwrap();
        f.flush(&mut io, &mut nonces).unwrap();
        assert_eq!(io.inner.data.len() as u64, data_offset((G + 5) as u64) + 14);
        for chunk in io.inner.data.chunks(PAGE_SIZE) {
            assert!(
                chunk.iter().any(|&b| b != 0),
                "an all-zero physical page was written"
            );
        }
        let mut buf = vec![0xFFu8; (G + 6) * B];
        assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok((G + 5) * B + 14));
        assert_eq!(&buf[..4], b"head");
        assert!(buf[4..(G + 5) * B + 10].iter().all(|&b| b == 0));
        assert_eq!(&buf[(G + 5) * B + 10..(G + 5) * B + 14], b"tail");
        // Extending truncate: same rule.
        f.set_len(&mut io, &mut nonces, ((G + 8) * B) as u64)
            .unwrap();
        f.flush(&mut io, &mut nonces).unwrap();
        for chunk in io.inner.data.chunks(PAGE_SIZE) {
            assert!(chunk.iter().any(|&b| b != 0));
        }
    }
}

#[test]
fn truncation_reseals_cuts_and_keeps_page_0() {
    for mode in [Mode::PRIVATE, Mode::Shared] {
        let (mut io, mut nonces, mut f) = setup(mode);
        let data = pattern((G + 3) * B, 5);
        f.write_at(&mut io, &mut nonces, &data, 0).unwrap();
        let mut buf = vec![0u8; 3 * B];
        // Put block 1 into the cache, then cut inside it.
        assert_eq!(f.read_at(&mut io, &mut buf[..10], B as u64 + 3), Ok(10));
        f.set_len(&mut io, &mut nonces, B as u64 + 100).unwrap();
        assert_eq!(io.inner.data.len(), 2 * PAGE_SIZE + 100);
        assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(B + 100));
        assert_eq!(buf[..B + 100], data[..B + 100]);
        assert_eq!(f.read_at(&mut io, &mut buf, B as u64 + 100), Ok(0));
        // Cut at a block boundary, regrow: zeros.
        f.set_len(&mut io, &mut nonces, B as u64).unwrap();
        assert_eq!(f.read_at(&mut io, &mut buf, B as u64), Ok(0));
        f.set_len(&mut io, &mut nonces, B as u64 + 5).unwrap();
        assert_eq!(f.read_at(&mut io, &mut buf, B as u64), Ok(5));
        assert_eq!(&buf[..5], &[0; 5]);
        // To 0: page 0 stays, and the file reopens as empty.
        f.set_len(&mut io, &mut nonces, 0).unwrap();
        f.flush(&mut io, &mut nonces).unwrap();
        assert_eq!(io.inner.data.len(), PAGE_SIZE);
        drop(f);
        let mut g = reopen(&mut io, mode);
        assert_eq!(g.len(&mut io), Ok(0));
        assert_eq!(g.read_at(&mut io, &mut buf, 0), Ok(0));
        assert_eq!(meta_offset(0), 0);
    }
}

/// File-set members: handles in different processes take turns writing
/// (appends, rewrites, a truncate, across the group boundary) and reading;
/// each sees the others' writes at its next call.
#[test]
fn shared_handles_take_turns() {
    let (mut io, mut nonces, a) = setup(Mode::Shared);
    let mut handles = [
        a,
        reopen(&mut io, Mode::Shared),
        reopen(&mut io, Mode::Shared),
    ];
    let mut model: Vec<u8> = Vec::new();
    let mut other_nonces = NonceSequence::new([4; 8]);
    for step in 0..40usize {
        let h = step % 3;
        let nonces = if h == 1 {
            &mut other_nonces
        } else {
            &mut nonces
        };
        let off = match step % 4 {
            0 => model.len(),                         // append
            1 => (step * 977) % (model.len().max(1)), // rewrite inside
            2 => G * B - 100 + step,                  // around the boundary
            _ => model.len() / 2,
        };
        let data = pattern(B + step, step as u8);
        handles[h]
            .write_at(&mut io, nonces, &data, off as u64)
            .unwrap();
        if model.len() < off + data.len() {
            model.resize(off + data.len(), 0);
        }
        model[off..off + data.len()].copy_from_slice(&data);
        if step == 30 {
            handles[h]
                .set_len(&mut io, nonces, (G * B + 5) as u64)
                .unwrap();
            model.truncate(G * B + 5);
        }
        let r = (h + 1) % 3;
        assert_eq!(
            handles[r].len(&mut io),
            Ok(model.len() as u64),
            "step {step}"
        );
        let mut buf = vec![0u8; model.len()];
        assert_eq!(handles[r].read_at(&mut io, &mut buf, 0), Ok(model.len()));
        assert!(buf == model, "step {step}");
    }
}

#[test]
fn a_writing_handle_keeps_a_third_group_cached_instead_of_rereading_it_per_block() {
    let mode = Mode::Private { cache_groups: 2 };
    let (mut io, mut nonces, mut f) = setup(mode);
    // Three groups; then dirty groups 1 and 2 (both cache slots) and read
    // group 0 block by block.
    let data = pattern(3 * G * B, 5);
    f.write_at(&mut io, &mut nonces, &data, 0).unwrap();
    f.flush(&mut io, &mut nonces).unwrap();
    f.write_at(&mut io, &mut nonces, &pattern(B, 6), (G * B) as u64)
        .unwrap();
    f.write_at(&mut io, &mut nonces, &pattern(B, 7), (2 * G * B) as u64)
        .unwrap();
    io.take();
    let mut buf = vec![0u8; B];
    for i in 1..33 {
        f.read_at(&mut io, &mut buf, (i * B) as u64).unwrap();
        assert_eq!(buf, data[i * B..(i + 1) * B]);
    }
    let plain = io.take();
    // Control: the read path that never writes re-reads group 0's page for
    // every block (both slots are dirty).
    assert_eq!(plain.meta_reads, 32, "{plain:?}");
    assert_eq!(plain.meta_writes, 0);
    for i in 33..65 {
        f.read_at_mut(&mut io, &mut nonces, &mut buf, (i * B) as u64)
            .unwrap();
        assert_eq!(buf, data[i * B..(i + 1) * B]);
    }
    let c = io.take();
    // One dirty page written back, group 0 loaded once, then cached.
    assert_eq!(c.meta_writes, 1, "{c:?}");
    assert_eq!(c.meta_reads, 1, "{c:?}");
    assert_eq!(c.data_reads, 32);
    // And the file is still whole for a fresh handle.
    f.flush(&mut io, &mut nonces).unwrap();
    let mut g = reopen(&mut io, mode);
    let mut all = vec![0u8; 3 * G * B];
    assert_eq!(g.read_at(&mut io, &mut all, 0).unwrap(), all.len());
    assert_eq!(all[..B], data[..B]);
    assert_eq!(all[G * B..G * B + B], pattern(B, 6)[..]);
}

#[test]
fn unaligned_sequential_writes_seal_each_block_once() {
    // A tuplestore writes 8 KiB at unaligned offsets: every block is
    // written in two pieces. Held partial blocks make that one seal each.
    let (mut io, mut nonces, mut f) = setup(Mode::PRIVATE);
    let n = 20;
    let data = pattern(n * B + 2559, 9);
    f.write_at(&mut io, &mut nonces, &data[..2559], 0).unwrap();
    for i in 0..n {
        let off = 2559 + i * B;
        f.write_at(&mut io, &mut nonces, &data[off..off + B], off as u64)
            .unwrap();
    }
    let c = io.take();
    assert_eq!(c.data_writes, n, "{c:?}");
    assert_eq!(c.data_reads, 0, "the held block is completed from memory");
    let mut buf = vec![0u8; data.len()];
    assert_eq!(
        f.read_at(&mut io, &mut buf, 0),
        Ok(data.len()),
        "held bytes are readable"
    );
    assert_eq!(buf, data);
    f.flush(&mut io, &mut nonces).unwrap();
    let c = io.take();
    assert_eq!((c.data_writes, c.meta_writes), (1, 1), "{c:?}");
    // Control: a fresh handle sees all of it on disk.
    let mut g = reopen(&mut io, Mode::PRIVATE);
    let mut all = vec![0u8; data.len()];
    assert_eq!(g.read_at(&mut io, &mut all, 0), Ok(data.len()));
    assert_eq!(all, data);
    // Shared handles never hold a block: every write is on disk at once.
    let (mut io, mut nonces, mut s) = setup(Mode::Shared);
    s.write_at(&mut io, &mut nonces, &data[..2559], 0).unwrap();
    assert_eq!(io.take().data_writes, 1);
}

/// `set_cache_limit`: reads that come back to groups whose pages were
/// evicted (a merge over tapes) grow the cache instead of reloading the
/// pages each time; a sequential write and a sequential read never grow it;
/// the limit holds. Control: the same reads without a limit reload.
#[test]
fn a_private_cache_grows_for_reloads_only_and_up_to_its_limit() {
    let mode = Mode::Private { cache_groups: 2 };
    let groups = 6;
    let run = |limit: Option<u8>| {
        let (mut io, mut nonces, mut f) = setup(mode);
        if let Some(l) = limit {
            f.set_cache_limit(l);
        }
        // Append six groups, then read them back in order.
        f.write_at(&mut io, &mut nonces, &pattern(groups * G * B, 1), 0)
            .unwrap();
        assert_eq!(f.cache_slots(), 2, "appending never grows the cache");
        let mut buf = vec![0u8; B];
        for g in 0..groups {
            f.read_at_mut(&mut io, &mut nonces, &mut buf, (g * G * B) as u64)
                .unwrap();
        }
        // The first read pushed out the final group's dirty page, which
        // the read comes back to at the end: one slot more, no more.
        let after_read = f.cache_slots();
        assert!(
            after_read <= 3,
            "a sequential read grows it by one at most ({after_read})"
        );
        io.take();
        // A merge: round-robin over blocks in groups 0, 2, 4 (and 5).
        for round in 0..20 {
            for g in [0, 2, 4, 5] {
                let at = (g * G + round) * B;
                f.read_at_mut(&mut io, &mut nonces, &mut buf, at as u64)
                    .unwrap();
                assert_eq!(buf, pattern(groups * G * B, 1)[at..at + B]);
            }
        }
        (io.take().meta_reads, f.cache_slots())
    };
    let (reloads, slots) = run(None);
    assert_eq!(slots, 2);
    assert!(
        reloads >= 40,
        "control: without a limit pages are reloaded ({reloads})"
    );
    let (reloads, slots) = run(Some(16));
    assert!(
        (4..=5).contains(&slots),
        "grown to the working set of 4 (and the read-back's one): {slots}"
    );
    assert!(reloads <= 4, "each page loaded about once ({reloads})");
    let (_, slots) = run(Some(3));
    assert_eq!(slots, 3, "never past the limit");
}

#[test]
fn a_reader_following_a_writer_reloads_pages_without_asking_their_trailer() {
    // A standby's startup process reads the tail page the walreceiver
    // rewrites between any two of its reads (FORMAT.md §8.1).
    let (mut io, mut nonces, mut writer) = setup(Mode::Shared);
    writer
        .write_at(&mut io, &mut nonces, &pattern(4 * B, 1), 0)
        .unwrap();
    let mut reader = reopen(&mut io, Mode::Shared);
    let mut buf = vec![0u8; B];
    let mut per_read = Vec::new();
    for round in 0..6u8 {
        let data = pattern(B, 10 + round);
        writer
            .write_at(&mut io, &mut nonces, &data, B as u64)
            .unwrap();
        io.take();
        assert_eq!(reader.read_at(&mut io, &mut buf, B as u64), Ok(B));
        assert_eq!(buf, data, "round {round}: the writer's latest bytes");
        let c = io.take();
        per_read.push((c.trailer_reads, c.meta_reads, c.data_reads));
    }
    // The first reads ask the trailer (changed) and reload; after two
    // misses in a row the page is reloaded straight away.
    assert_eq!(per_read[1], (1, 1, 1), "{per_read:?}");
    assert_eq!(per_read[5], (0, 1, 1), "{per_read:?}");
    // The writer stops: one reload finds the page unchanged, and the reader
    // goes back to 28-byte trailer reads.
    io.take();
    for _ in 0..3 {
        assert_eq!(reader.read_at(&mut io, &mut buf, B as u64), Ok(B));
        assert_eq!(buf, pattern(B, 15));
    }
    let c = io.take();
    assert_eq!((c.trailer_reads, c.meta_reads), (2, 1), "{c:?}");
}

/// FORMAT.md §8.2: a shared handle whose caller vouches that nobody changed
/// the file since its last successful call skips the size query and the
/// trailer reads; each call with the claim is checked against the same call
/// without it (the control), which must revalidate.
#[test]
fn an_unchanged_claim_spares_the_size_query_and_the_trailer_read() {
    let (mut io, mut nonces, mut f) = setup(Mode::Shared);
    let write = Counts {
        data_writes: 1,
        meta_writes: 1,
        ..Counts::default()
    };
    let revalidated = |c: Counts| Counts {
        lens: 1,
        trailer_reads: 1,
        ..c
    };
    f.write_at(&mut io, &mut nonces, &pattern(B, 1), 0).unwrap();
    assert_eq!(io.take(), revalidated(write), "no claim before a call");
    assert!(f.is_settled());
    f.assume_unchanged();
    f.write_at(&mut io, &mut nonces, &pattern(B, 2), B as u64)
        .unwrap();
    assert_eq!(io.take(), write, "claimed: data and page only");
    f.write_at(&mut io, &mut nonces, &pattern(B, 3), 2 * B as u64)
        .unwrap();
    assert_eq!(io.take(), revalidated(write), "control: no claim");
    let mut buf = vec![0u8; B];
    f.assume_unchanged();
    assert_eq!(f.read_at(&mut io, &mut buf, B as u64), Ok(B));
    assert_eq!(buf, pattern(B, 2));
    assert_eq!(io.take(), counts_reads(1), "claimed read: the block only");
    f.assume_unchanged();
    assert_eq!(f.len(&mut io), Ok(3 * B as u64));
    assert_eq!(io.take(), Counts::default(), "claimed length: from memory");
    // A short tail kept in the cache: claimed appends to it read nothing.
    f.write_at(&mut io, &mut nonces, b"abc", 3 * B as u64)
        .unwrap();
    io.take();
    f.assume_unchanged();
    f.write_at(&mut io, &mut nonces, b"def", 3 * B as u64 + 3)
        .unwrap();
    assert_eq!(io.take(), write, "claimed append: no head or block read");
    f.write_at(&mut io, &mut nonces, b"ghi", 3 * B as u64 + 6)
        .unwrap();
    let c = io.take();
    assert_eq!((c.lens, c.trailer_reads), (1, 1), "control: {c:?}");
    f.assume_unchanged();
    let mut tail = [0u8; 9];
    assert_eq!(f.read_at(&mut io, &mut tail, 3 * B as u64), Ok(9));
    assert_eq!(&tail, b"abcdefghi");
    assert_eq!(io.take(), Counts::default(), "claimed read of the cache");
}

fn counts_reads(data_reads: usize) -> Counts {
    Counts {
        data_reads,
        ..Counts::default()
    }
}

#[test]
fn an_unchanged_claim_is_ignored_after_a_failure_an_invalidation_or_in_private_mode() {
    let (mut io, mut nonces, mut f) = setup(Mode::Shared);
    f.write_at(&mut io, &mut nonces, &pattern(2 * B, 1), 0)
        .unwrap();
    io.take();
    // A failed call (a data block tampered) leaves the handle unsettled.
    let at = data_offset(1) as usize;
    io.inner.data[at] ^= 1;
    let mut buf = vec![0u8; B];
    f.assume_unchanged();
    assert!(f.read_at(&mut io, &mut buf, B as u64).is_err());
    assert!(!f.is_settled());
    io.inner.data[at] ^= 1;
    io.take();
    f.assume_unchanged();
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(B));
    let c = io.take();
    assert_eq!((c.lens, c.trailer_reads), (1, 1), "after a failure: {c:?}");
    // invalidate() drops the settled state and a pending claim.
    f.invalidate();
    f.assume_unchanged();
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(B));
    let c = io.take();
    assert_eq!((c.lens, c.trailer_reads), (1, 1), "after invalidate: {c:?}");
    f.assume_unchanged();
    f.invalidate();
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(B));
    let c = io.take();
    assert_eq!(
        (c.lens, c.trailer_reads),
        (1, 1),
        "claim then invalidate: {c:?}"
    );
    // A claim is for one call only.
    f.assume_unchanged();
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(B));
    assert_eq!(io.take(), counts_reads(1));
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(B));
    let c = io.take();
    assert_eq!((c.lens, c.trailer_reads), (1, 1), "second call: {c:?}");
    // Private handles never revalidate; the claim changes nothing.
    let (mut io, mut nonces, mut p) = setup(Mode::PRIVATE);
    p.write_at(&mut io, &mut nonces, &pattern(B, 1), 0).unwrap();
    assert_eq!(io.take(), counts(1));
    p.assume_unchanged();
    assert!(!p.is_settled());
    assert_eq!(p.read_at(&mut io, &mut buf, 0), Ok(B));
    assert_eq!(io.take(), counts_reads(1));
}

/// Under a claim a handle uses what it verified, never the disk's changed
/// bytes: a tampered block fails, a cut file fails at the first read that
/// needs the missing data (never a short read), and an edited metadata page
/// is not read at all (the handle's verified copy is used). The controls
/// are the untampered reads before each edit.
#[test]
fn under_an_unchanged_claim_changed_bytes_still_fail_closed() {
    let (mut io, mut nonces, mut f) = setup(Mode::Shared);
    f.write_at(&mut io, &mut nonces, &pattern(4 * B, 7), 0)
        .unwrap();
    let mut buf = vec![0u8; B];
    let claim_read = |f: &mut SealedFile, io: &mut CountingIo, buf: &mut [u8], at: u64| {
        f.assume_unchanged();
        f.read_at(io, buf, at)
    };
    assert_eq!(claim_read(&mut f, &mut io, &mut buf, 0), Ok(B), "control");
    // A data block edited on disk.
    let at = data_offset(0) as usize + 100;
    io.inner.data[at] ^= 0x40;
    assert!(matches!(
        claim_read(&mut f, &mut io, &mut buf, 0),
        Err(FormatError::BlockAuthFailed { index: 0 })
    ));
    io.inner.data[at] ^= 0x40;
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(B), "control");
    // The metadata page edited (not only its body): not read at all; the
    // genuine data still reads as itself.
    let page = meta_offset(0) as usize;
    io.inner.data[page + 200] ^= 1;
    io.inner.data[page + PAGE_SIZE - 1] ^= 1;
    assert_eq!(claim_read(&mut f, &mut io, &mut buf, B as u64), Ok(B));
    assert_eq!(buf, pattern(4 * B, 7)[B..2 * B]);
    // A handle without the claim loads it and fails (control).
    assert!(f.read_at(&mut io, &mut buf, B as u64).is_err());
    io.inner.data[page + 200] ^= 1;
    io.inner.data[page + PAGE_SIZE - 1] ^= 1;
    assert_eq!(f.read_at(&mut io, &mut buf, B as u64), Ok(B), "control");
    // The file cut, from a settled handle: a read under a claim that
    // reaches the cut fails (a block cut in half, or cut away), never a
    // short read; the next call, unclaimed, fails too.
    for (cut, index) in [(B + B / 2, 2u64), (B, 3)] {
        let (mut io, mut nonces, mut f) = setup(Mode::Shared);
        f.write_at(&mut io, &mut nonces, &pattern(4 * B, 7), 0)
            .unwrap();
        let full = io.inner.data.len();
        io.inner.data.truncate(full - cut);
        assert_eq!(claim_read(&mut f, &mut io, &mut buf, B as u64), Ok(B));
        assert!(f.is_settled(), "the next read is made under a claim");
        assert!(
            matches!(
                claim_read(&mut f, &mut io, &mut buf, index * B as u64),
                Err(FormatError::Truncated { .. })
            ),
            "cut {cut}: block {index}"
        );
        assert!(f.read_at(&mut io, &mut buf, B as u64).is_err());
    }
}
