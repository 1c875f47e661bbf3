//! A physical file whose writer dies, shared by the tests of shared files
//! (`write_ahead.rs`, `write_ahead_model.rs`, `kept_block.rs`,
//! `page_replay.rs`, `shared_model.rs`): the shared-file key, name and ids
//! of a WAL-like file, [`DyingIo`], a sealed file to start from, block
//! patterns, and the randomized models' generator and oracle.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ephcrypt_format::meta::{Page, CHUNK_LEN};
use ephcrypt_format::{
    meta_offset, EpochKey, FileCipher, FileName, FormatError, Mode, NonceSequence, NonceSource,
    PhysicalIo, PoolBase, Published, SealedFile, VecIo, BLOCK_SIZE, PAGE_SIZE,
};

pub const EK: [u8; 32] = [0x5A; 32];
pub const EPOCH: [u8; 16] = [0xE5; 16];
pub const FILE: [u8; 16] = [0xF5; 16];

pub fn name() -> FileName<'static> {
    FileName::new(3, b"pg_wal").unwrap()
}

pub fn key() -> EpochKey {
    EpochKey::from_bytes(EK)
}

/// What a write does when the writer "dies" at it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Death {
    /// The write does not happen.
    Before,
    /// Half of it happens (a page-granular torn write).
    Torn,
}

/// Metadata pages sit at multiples of 257 pages.
pub fn is_meta(off: u64) -> bool {
    off.is_multiple_of(257 * PAGE_SIZE as u64)
}

/// A physical file whose writer dies at write number `dies_at` (0-based):
/// that write and every later one (and any truncate) fail, after
/// `Death::Torn` wrote half of it.
pub struct DyingIo {
    pub inner: VecIo,
    pub writes: usize,
    pub dies_at: Option<usize>,
    pub death: Death,
    /// (is_metadata, offset) of every write that happened.
    pub log: Vec<(bool, u64)>,
    /// (is_metadata, offset) of the write a `Death::Torn` tore.
    pub torn: Option<(bool, u64)>,
    /// Reads of at most 8 bytes in a data block (a write ahead's check).
    pub head_reads: usize,
    /// Size queries.
    pub lens: usize,
    /// 28-byte reads of a metadata page's MAC trailer.
    pub trailer_reads: usize,
    /// Reads of more than 8 bytes in data blocks.
    pub data_reads: usize,
    /// Hold back the next data-block write (a writer stopped between its
    /// two writes): it returns success, and lands at [`Self::land`].
    pub defer_next_data: bool,
    pub deferred: Option<(u64, Vec<u8>)>,
    /// The shared page pool of FORMAT.md §8.3, when the file's handles
    /// publish their pages.
    pub pool: Option<PagePool>,
}

/// The page pool of FORMAT.md §8.3 as the shims keep it (`shim/pool.rs`),
/// for one file: at most `room` pages; a page whose group it holds is
/// always replaced in place. Every page has a version; a publish based on
/// the current version applies only the chunks it names, and a lookup that
/// holds the current version copies nothing, as in the shims. Both claims
/// are checked: a publish whose named chunks do not make the caller's page,
/// or a caller told its copy is current when it is not, panics.
#[derive(Default)]
pub struct PagePool {
    pub pages: BTreeMap<([u8; 16], u64), Box<Page>>,
    versions: BTreeMap<([u8; 16], u64), u64>,
    last_version: u64,
    pub room: usize,
    /// Pages published, and published pages handed to readers.
    pub published: usize,
    pub served: usize,
    /// Publishes that copied only the chunks named; lookups that copied
    /// nothing.
    pub partial: usize,
    pub current: usize,
    /// Control: readers never find a page (a pool other processes do not
    /// see).
    pub hidden: bool,
}

impl PagePool {
    pub fn with_room(room: usize) -> Self {
        Self {
            room,
            ..Self::default()
        }
    }

    /// Replace a page as another process would (a new version).
    pub fn set_page(&mut self, key: ([u8; 16], u64), page: Box<Page>) {
        self.last_version += 1;
        self.versions.insert(key, self.last_version);
        self.pages.insert(key, page);
    }

    /// FORMAT.md §8.3 as `shim/pool.rs` does it; `Some(version)`: published.
    pub fn publish(
        &mut self,
        key: ([u8; 16], u64),
        page: &Page,
        base: Option<PoolBase>,
    ) -> Option<u64> {
        let current = self.versions.get(&key).copied();
        if let Some(p) = self.pages.get_mut(&key) {
            match base {
                Some(b) if Some(b.version) == current => {
                    for c in 0..64 {
                        if b.changed.0 & (1 << c) != 0 {
                            let r = c * CHUNK_LEN..(c + 1) * CHUNK_LEN;
                            p[r.clone()].copy_from_slice(&page[r]);
                        }
                    }
                    assert!(
                        p[..] == page[..],
                        "a publish based on version {} named chunks {:#x} that do not \
                         make the page",
                        b.version,
                        b.changed.0
                    );
                    self.partial += 1;
                }
                _ => **p = *page,
            }
        } else if self.pages.len() < self.room {
            self.pages.insert(key, Box::new(*page));
        } else {
            return None;
        }
        self.last_version += 1;
        self.versions.insert(key, self.last_version);
        self.published += 1;
        Some(self.last_version)
    }

    pub fn lookup(
        &mut self,
        key: ([u8; 16], u64),
        page: &mut Page,
        have: Option<u64>,
    ) -> Published {
        if self.hidden {
            return Published::Absent;
        }
        let Some(p) = self.pages.get(&key) else {
            return Published::Absent;
        };
        let version = self.versions.get(&key).copied().unwrap_or(0);
        self.served += 1;
        if have == Some(version) {
            assert!(
                p[..] == page[..],
                "a copy claimed to be version {version} is not"
            );
            self.current += 1;
            return Published::Current;
        }
        *page = **p;
        Published::Copied(version)
    }
}

impl DyingIo {
    pub fn new(inner: VecIo) -> Self {
        Self {
            inner,
            writes: 0,
            dies_at: None,
            death: Death::Before,
            log: Vec::new(),
            torn: None,
            head_reads: 0,
            lens: 0,
            trailer_reads: 0,
            data_reads: 0,
            defer_next_data: false,
            deferred: None,
            pool: None,
        }
    }

    /// What the shims' drain does at a writer's close (FORMAT.md §8.3):
    /// every published page inside the file is sealed with a fresh nonce
    /// and written to its place, then leaves the pool; a page past the end
    /// just leaves.
    pub fn drain(&mut self, cipher: &FileCipher, nonces: &mut dyn NonceSource) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        let len = self.inner.data.len() as u64;
        for ((_, group), mut page) in std::mem::take(&mut pool.pages) {
            if meta_offset(group) < len {
                let nonce = nonces.next_nonce().unwrap();
                cipher.seal_metadata(group, nonce, &mut page).unwrap();
                self.inner
                    .write_all_at(&page[..], meta_offset(group))
                    .unwrap();
            }
        }
    }

    /// The held-back data write reaches the file.
    pub fn land(&mut self) {
        let (off, buf) = self.deferred.take().expect("a deferred write");
        self.inner.write_all_at(&buf, off).unwrap();
    }

    fn dead(&self) -> bool {
        self.dies_at.is_some_and(|d| self.writes >= d)
    }
}

impl PhysicalIo for DyingIo {
    type Error = FormatError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        let in_data = !is_meta(off - off % PAGE_SIZE as u64);
        if buf.len() <= 8 && in_data {
            self.head_reads += 1;
        } else if in_data {
            self.data_reads += 1;
        }
        if buf.len() == 28 && is_meta(off - (PAGE_SIZE as u64 - 28)) {
            self.trailer_reads += 1;
        }
        self.inner.read_at(buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), FormatError> {
        let dying_now = self.dies_at == Some(self.writes);
        let dead = self.dead();
        self.writes += 1;
        if dead {
            if dying_now && self.death == Death::Torn {
                self.torn = Some((is_meta(off), off));
                self.inner.write_all_at(&buf[..buf.len() / 2], off)?;
            }
            return Err(FormatError::InvalidArgument("the writer died"));
        }
        self.log.push((is_meta(off), off));
        if self.defer_next_data && !is_meta(off) {
            self.defer_next_data = false;
            self.deferred = Some((off, buf.to_vec()));
            return Ok(());
        }
        self.inner.write_all_at(buf, off)
    }
    fn set_len(&mut self, len: u64) -> Result<(), FormatError> {
        if self.dead() {
            return Err(FormatError::InvalidArgument("the writer died"));
        }
        self.inner.set_len(len)
    }
    fn len(&mut self) -> Result<u64, FormatError> {
        self.lens += 1;
        self.inner.len()
    }
    fn publishes(&self) -> bool {
        self.pool.is_some()
    }
    fn publish_page(
        &mut self,
        file_id: &[u8; 16],
        group: u64,
        page: &Page,
        base: Option<PoolBase>,
    ) -> Result<Option<u64>, FormatError> {
        // A publish counts as a write for deaths; it never tears (the
        // pool's slots have two buffers): dying at it, it does not happen.
        let dead = self.dead();
        self.writes += 1;
        if dead {
            return Err(FormatError::InvalidArgument("the writer died"));
        }
        let pool = self.pool.as_mut().expect("publishes");
        Ok(pool.publish((*file_id, group), page, base))
    }
    fn published_page(
        &mut self,
        file_id: &[u8; 16],
        group: u64,
        page: &mut Page,
        have: Option<u64>,
    ) -> Result<Published, FormatError> {
        let pool = self.pool.as_mut().expect("publishes");
        Ok(pool.lookup((*file_id, group), page, have))
    }
}

/// Open the WAL-like file as another process would (shared mode), with
/// write ahead `on` or off.
pub fn open_shared<I: PhysicalIo>(
    io: &mut I,
    write_ahead: bool,
) -> Result<ephcrypt_format::SealedFile, I::Error> {
    let mut f = ephcrypt_format::SealedFile::open(
        io,
        &key(),
        &EPOCH,
        &name(),
        ephcrypt_format::Mode::Shared,
        None,
    )?;
    f.set_write_ahead(write_ahead);
    Ok(f)
}

/// Create the WAL-like file (shared mode) in the empty `io` and write
/// `bytes` at 0, as one process would.
pub fn create_sealed<I: PhysicalIo>(io: &mut I, bytes: &[u8])
where
    I::Error: std::fmt::Debug,
{
    let mut nonces = NonceSequence::new([1; 8]);
    let mut f = SealedFile::create(
        io,
        &mut nonces,
        &key(),
        &EPOCH,
        &FILE,
        &name(),
        Mode::Shared,
    )
    .unwrap();
    f.write_at(io, &mut nonces, bytes, 0).unwrap();
}

/// A full block of a pattern that differs per `seed`.
pub fn block(seed: u8) -> Vec<u8> {
    (0..BLOCK_SIZE)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// A sealed shared file of 4 full blocks, block i = `block(i)`.
pub fn four_blocks() -> VecIo {
    let mut io = VecIo::default();
    let all: Vec<u8> = (0..4).flat_map(block).collect();
    create_sealed(&mut io, &all);
    io
}

/// xorshift64: the randomized models' reproducible generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `0..n` (0 for n = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// What a block of a randomized model may read as: one of `versions`, or
/// EIO where `eio` allows it.
#[derive(Clone, Debug)]
pub struct Allowed {
    pub versions: Vec<Vec<u8>>,
    pub eio: bool,
}

impl Allowed {
    pub fn exact(v: Vec<u8>) -> Self {
        Self {
            versions: vec![v],
            eio: false,
        }
    }
    pub fn is_exact(&self) -> bool {
        self.versions.len() == 1 && !self.eio
    }
}
