//! Logical file operations on top of any physical I/O (FORMAT.md §7 to §9).
//!
//! The libc shims and the property tests run this same code: the shims
//! implement [`PhysicalIo`] with `pread`/`pwrite`/`ftruncate`/`fstat`, the
//! tests with a `Vec<u8>` ([`VecIo`]).

use zeroize::Zeroize;

use crate::block::FileCipher;
use crate::error::{FormatError, Result};
use crate::keys::{EpochKey, FileName};
use crate::layout::{
    block_index, block_plain_len, checked_range_end, data_offset, expected_group_state, group_of,
    groups_for_len, logical_to_physical_size, meta_offset, physical_shape, slot_in_group,
    BlockSpans, PhysicalShape, BLOCK_SIZE, GROUP_BLOCKS, HEADER_LEN, MAX_LOGICAL_SIZE, NONCE_LEN,
    PAGE_SIZE, TAG_LEN,
};
use crate::meta::{self, GroupState, Page, Touched, OFF_MAC_NONCE};
use crate::nonce::NonceSource;

const B: u64 = BLOCK_SIZE as u64;

/// Metadata pages a private handle caches unless told otherwise.
pub const DEFAULT_CACHE_GROUPS: u8 = 4;
/// Fewest cached pages of a private handle: a write that starts a new group
/// changes two groups.
pub const MIN_CACHE_GROUPS: u8 = 2;
/// Most cached pages of a private handle (512 KiB).
pub const MAX_CACHE_GROUPS: u8 = 64;
/// Metadata pages of a shared handle: kept across calls, revalidated by
/// their MAC trailer at the first use in each call (FORMAT.md §8.1). Two
/// cover the final group (the length) plus the group of an access.
const SHARED_SLOTS: usize = 2;
/// MAC nonce and tag at the end of a metadata page.
const MAC_TRAILER_LEN: usize = PAGE_SIZE - OFF_MAC_NONCE;
/// Evicted groups remembered to tell a reload from a first visit.
const EVICTED_RING: usize = 8;
/// Shared mode: after this many revalidations in a row found a page changed
/// (a reader following a writer: a standby's startup process), stale pages
/// are reloaded without reading their trailer first (FORMAT.md §8.1).
const TRAILER_MISSES_TO_SKIP: u8 = 2;

/// Digests reserved at open: 512 groups = a 1 GiB segment, PostgreSQL's split.
pub const DIGEST_RESERVE: usize = 512;
/// "No digest known yet" (a real tag is all zero with probability 2^-128).
const UNKNOWN: [u8; TAG_LEN] = [0; TAG_LEN];

/// Plaintext of gap blocks: read-only data, so no allocation and no memset.
static ZEROS: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];

/// Positional I/O on the physical (encrypted) file.
#[allow(clippy::len_without_is_empty)] // `len` is fstat; emptiness means nothing here
pub trait PhysicalIo {
    /// The caller's error type; format errors convert into it (the shims map
    /// them to errno, FORMAT.md §10).
    type Error: From<FormatError>;

    /// Read up to `buf.len()` bytes at physical offset `off`.
    ///
    /// Returns fewer bytes than asked **only at end of file**: implementations
    /// retry `EINTR` and short reads themselves. (A short read reported early
    /// makes the file look truncated: safe, but an error.)
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, Self::Error>;

    /// Write all of `buf` at physical offset `off`, extending the file if needed.
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), Self::Error>;

    /// Set the physical length (truncate or extend).
    fn set_len(&mut self, len: u64) -> Result<(), Self::Error>;

    /// The current physical length (`fstat`). Private handles ask only in
    /// `create` and `open`; shared handles once per call.
    fn len(&mut self) -> Result<u64, Self::Error>;

    /// Shared mode (FORMAT.md §8.3): whether this file's metadata pages go
    /// to a page pool that every process opening the file consults. Only
    /// then are [`Self::publish_page`] and [`Self::published_page`] called.
    fn publishes(&self) -> bool {
        false
    }

    /// Publish group `group`'s stamped, unsealed page of the file `file_id`
    /// in the pool, replacing the version it holds, and return the new
    /// version's number. `base`: `page` is the pool's version
    /// `base.version` but for the chunks `base.changed`; while that is
    /// still the pool's version, only those chunks need copying (any other
    /// version: all of the page). `Ok(None)`: the pool holds no page of
    /// that group and has no room; the caller writes the page through
    /// (sealed).
    fn publish_page(
        &mut self,
        _file_id: &[u8; 16],
        _group: u64,
        _page: &Page,
        _base: Option<PoolBase>,
    ) -> Result<Option<u64>, Self::Error> {
        Ok(None)
    }

    /// The pool's page of group `group` of `file_id`. `have`: `page`
    /// already holds the pool's version `have`; if that is still the
    /// pool's version, [`Published::Current`] and nothing is copied.
    /// Otherwise the page is copied into `page` ([`Published::Copied`]),
    /// or the pool holds none ([`Published::Absent`]: read the disk;
    /// `page` may then hold anything).
    fn published_page(
        &mut self,
        _file_id: &[u8; 16],
        _group: u64,
        _page: &mut Page,
        _have: Option<u64>,
    ) -> Result<Published, Self::Error> {
        Ok(Published::Absent)
    }
}

/// A cached page as the pool knows it (FORMAT.md §8.3): the pool version
/// it was copied from or published as, and the chunks changed in it since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBase {
    /// The pool's version number.
    pub version: u64,
    /// Chunks of the page that may differ from that version.
    pub changed: Touched,
}

/// What [`PhysicalIo::published_page`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The pool holds no page of the group.
    Absent,
    /// The caller's copy is the pool's current version; nothing copied.
    Current,
    /// The pool's page, copied; its version.
    Copied(u64),
}

/// Who may use the file while this handle exists (FORMAT.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only this process: metadata of up to `cache_groups` groups
    /// (`MIN_CACHE_GROUPS..=MAX_CACHE_GROUPS`) is cached, trusted and written
    /// back on eviction and [`SealedFile::flush`].
    Private {
        /// Metadata pages cached (8 KiB each).
        cache_groups: u8,
    },
    /// Other processes may read and write the file meanwhile: every call
    /// asks the file's size (re-establishing the length when it changed,
    /// FORMAT.md §8.1) and uses a cached metadata
    /// page only after finding its MAC trailer unchanged on disk (else it
    /// reloads and verifies the page); writes go through before returning.
    Shared,
}

impl Mode {
    /// Private with [`DEFAULT_CACHE_GROUPS`].
    pub const PRIVATE: Self = Self::Private {
        cache_groups: DEFAULT_CACHE_GROUPS,
    };

    fn slots(self) -> Result<usize> {
        match self {
            Self::Shared => Ok(SHARED_SLOTS),
            Self::Private { cache_groups } => {
                if (MIN_CACHE_GROUPS..=MAX_CACHE_GROUPS).contains(&cache_groups) {
                    Ok(usize::from(cache_groups))
                } else {
                    Err(FormatError::InvalidArgument("cache_groups must be 2..=64"))
                }
            }
        }
    }
}

/// What the writing process keeps about a private file after its handle is
/// gone (FORMAT.md §9): 24 bytes plus 16 per group.
#[derive(Clone, PartialEq, Eq)]
pub struct Remembered {
    file_id: [u8; 16],
    len: u64,
    /// MAC tag of each group's page as last written or verified; all zero =
    /// not known (trusted on first load).
    digests: Vec<[u8; TAG_LEN]>,
}

impl Remembered {
    /// The file id.
    #[must_use]
    pub const fn file_id(&self) -> [u8; 16] {
        self.file_id
    }

    /// The authenticated logical length when it was taken.
    #[must_use]
    #[allow(clippy::len_without_is_empty)] // a length field, not a container
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Number of groups (one digest each).
    #[must_use]
    pub fn groups(&self) -> usize {
        self.digests.len()
    }

    /// Heap bytes held (the digests).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.digests.capacity() * TAG_LEN
    }
}

impl core::fmt::Debug for Remembered {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Remembered")
            .field("len", &self.len)
            .field("groups", &self.digests.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    /// Same as the disk (loaded, revalidated or written in this call; in
    /// private mode: since it was loaded or written back).
    Clean,
    /// Shared mode: verified in an earlier call; used only once its MAC
    /// trailer is found unchanged on disk (FORMAT.md §8.1).
    Stale,
    Dirty,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    group: u64,
    state: SlotState,
    last_use: u64,
    /// Shared mode with a pool: the page is the pool's version `pool` but
    /// for the chunks `changed` (FORMAT.md §8.3); `None`: unknown (loaded
    /// from disk, sealed, new), the next publish copies all of it.
    pool: Option<u64>,
    changed: Touched,
}

impl Slot {
    const FREE: Self = Self {
        group: 0,
        state: SlotState::Free,
        last_use: 0,
        pool: None,
        changed: Touched(0),
    };

    fn touch(&mut self, t: Touched) {
        self.changed = self.changed.or(t);
    }

    /// The page came whole from the pool's version `version` (or, `None`,
    /// from anywhere else).
    fn set_origin(&mut self, version: Option<u64>) {
        self.pool = version;
        self.changed = Touched(0);
    }
}

/// Where a block's plaintext comes from (the cache is a field of `self`, so
/// it cannot be passed as a slice).
#[derive(Clone, Copy)]
enum Plain<'a> {
    Buf(&'a [u8]),
    Cache(usize),
    Zeros(usize),
}

/// An open encrypted file: its keys, the authenticated length, cached
/// metadata pages and two block buffers, all allocated at open, so that
/// reads, writes and truncates never touch the heap (FORMAT.md §8).
///
/// A one-block plaintext cache holds the block last opened or written through
/// a partial access, so that unaligned sequential reads and small appends
/// open each block once.
pub struct SealedFile {
    cipher: FileCipher,
    mode: Mode,
    /// Ciphertext scratch (page-aligned); also a scratch metadata page for
    /// reads when every cache slot is dirty.
    phys: AlignedBlock,
    cache: Box<[u8; BLOCK_SIZE]>,
    cache_index: Option<u64>,
    cache_len: usize,
    /// Private mode: the cached block holds bytes not sealed yet (the
    /// partial tail of the last write, FORMAT.md §8): it is sealed when the
    /// cache moves to another block, at `flush()` and before `set_len`, so
    /// that a block written in two pieces (unaligned sequential writes,
    /// small appends) is sealed once, not twice.
    cache_dirty: bool,
    /// Shared mode: the MAC tag of the cached block's group page as it was
    /// when the cached plaintext was that block's current version on disk
    /// (opened under its current entry, or written by this handle and its
    /// page written back). Every write of a block by any handle changes its
    /// page, and so this tag.
    cache_mark: Option<[u8; TAG_LEN]>,
    /// Shared mode: the cache is kept from an earlier call; it is used only
    /// once the group's page revalidates from disk with the mark's tag and
    /// the block's ciphertext still starts with `cache_head`.
    cache_kept: bool,
    /// Shared mode: block index and first ciphertext bytes of the block
    /// version last opened or written by this handle; becomes the cached
    /// block's head when the cache is marked.
    last_head: Option<(u64, [u8; meta::HEAD_LEN])>,
    /// Shared mode: the first ciphertext bytes of the cached block's version
    /// (with the mark).
    cache_head: [u8; meta::HEAD_LEN],
    /// `slots.len()` metadata pages, back to back.
    pages: Vec<u8>,
    slots: Vec<Slot>,
    /// Private mode: the cache may grow to this many slots
    /// ([`Self::set_cache_limit`]); `slots.len()` otherwise.
    max_slots: usize,
    /// The groups whose pages were evicted last (a ring; `u64::MAX` =
    /// empty): loading one of them again means the cache is too small.
    evicted: [u64; EVICTED_RING],
    evicted_next: usize,
    tick: u64,
    /// Authenticated logical length; `None` only in shared mode between calls.
    len: Option<u64>,
    /// Private mode: one digest per group (`groups_for_len(len)` entries).
    digests: Vec<[u8; TAG_LEN]>,
    /// Shared mode: rewrite a call's first block metadata-first, keeping its
    /// previous version readable until its data is written
    /// ([`Self::set_write_ahead`]).
    write_ahead: bool,
    /// Shared mode: the length, once established, is kept across calls
    /// ([`Self::set_fixed_len`]).
    fixed_len: bool,
    /// Shared mode: the physical size and the logical length this handle
    /// last established or left the file at (its own writes go through).
    /// A call that finds the same physical size skips re-checking the last
    /// group's page: a genuine file of that size has that length, and any
    /// other content at that size fails its page MACs or block tags.
    verified_size: Option<(u64, u64)>,
    /// Shared mode: group and page MAC of this handle's last completed
    /// write ahead (its data write returned), so that the next one in an
    /// unchanged page need not read the block's head back.
    last_ahead: Option<(u64, [u8; TAG_LEN])>,
    /// Shared mode: revalidations in a row that found the page changed.
    trailer_misses: u8,
    /// Shared mode: group and tag of the stale copy last dropped without a
    /// trailer read; a reload that finds the same tag ends the skipping.
    skipped: Option<(u64, [u8; TAG_LEN])>,
    /// Shared mode: the last call returned successfully and nothing
    /// invalidated the handle since: its length, clean pages and cached
    /// block were the disk's when it returned (FORMAT.md §8.2).
    settled: bool,
    /// Shared mode: the caller vouches that no handle changed the file since
    /// the handle settled ([`Self::assume_unchanged`]); taken by the next
    /// call.
    unchanged: bool,
}

impl core::fmt::Debug for SealedFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SealedFile")
            .field("mode", &self.mode)
            .field("len", &self.len)
            .field("cache_index", &self.cache_index)
            .finish_non_exhaustive()
    }
}

impl Drop for SealedFile {
    fn drop(&mut self) {
        self.cache.zeroize();
        self.phys.zeroize();
    }
}

/// The error for a physical file of `bytes.len()` < 64 bytes: "not ours"
/// (bad magic) before "too short".
fn short_header(bytes: &[u8]) -> FormatError {
    if bytes.is_empty() {
        return FormatError::EmptyFile;
    }
    match crate::header::Header::parse(bytes) {
        Err(e) => e,
        Ok(_) => FormatError::TruncatedHeader {
            physical_len: bytes.len() as u64,
        },
    }
}

/// A zeroed vector of `n` items, or [`FormatError::OutOfMemory`]: the shims
/// call this inside libc calls, where an allocation failure must become an
/// errno, never an abort.
fn try_vec<T: Clone>(n: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| FormatError::OutOfMemory)?;
    v.resize(n, value);
    Ok(v)
}

fn boxed<const N: usize>() -> Result<Box<[u8; N]>> {
    // Through a Vec so that no N-byte temporary lands on the stack.
    match try_vec(N, 0u8)?.into_boxed_slice().try_into() {
        Ok(b) => Ok(b),
        Err(_) => unreachable!("length is N by construction"),
    }
}

/// Where [`AlignedBlock`] starts: a page boundary.
const IO_ALIGN: usize = 4096;

/// A block buffer at a page-aligned address: the source of every data
/// `pwrite` of a sealed block, and the target of partial-block reads, so
/// that the kernel's copy between it and the page cache runs page against
/// page (DECISIONS.md #68: a read into a buffer 16 bytes off a page cost
/// +0.2-0.3 µs per block). Safe code: a
/// `Vec` with [`IO_ALIGN`] - 1 bytes of slack, seen from its first aligned
/// byte.
struct AlignedBlock {
    buf: Vec<u8>,
    start: usize,
}

impl AlignedBlock {
    fn new() -> Result<Self> {
        let buf = try_vec(BLOCK_SIZE + IO_ALIGN - 1, 0u8)?;
        // `align_offset` may refuse (usize::MAX): then unaligned, as before.
        let start = match buf.as_ptr().align_offset(IO_ALIGN) {
            a if a < IO_ALIGN => a,
            _ => 0,
        };
        Ok(Self { buf, start })
    }
}

impl std::ops::Deref for AlignedBlock {
    type Target = [u8; BLOCK_SIZE];
    fn deref(&self) -> &Self::Target {
        match self.buf[self.start..self.start + BLOCK_SIZE].try_into() {
            Ok(b) => b,
            Err(_) => unreachable!("the buffer has BLOCK_SIZE bytes from start"),
        }
    }
}

impl std::ops::DerefMut for AlignedBlock {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match (&mut self.buf[self.start..self.start + BLOCK_SIZE]).try_into() {
            Ok(b) => b,
            Err(_) => unreachable!("the buffer has BLOCK_SIZE bytes from start"),
        }
    }
}

fn page_at(pages: &mut [u8], slot: usize) -> &mut Page {
    match (&mut pages[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE]).try_into() {
        Ok(p) => p,
        Err(_) => unreachable!("slices are PAGE_SIZE long"),
    }
}

fn digest_index(group: u64) -> usize {
    usize::try_from(group).unwrap_or(usize::MAX)
}

/// Whether block `index` (of `plain_len` bytes) on disk starts with the
/// ciphertext head `head` ([`meta::head_of`]): one read of at most 8 bytes.
fn block_starts_with<I: PhysicalIo>(
    io: &mut I,
    index: u64,
    plain_len: usize,
    head: &[u8; meta::HEAD_LEN],
) -> Result<bool, I::Error> {
    let m = plain_len.min(meta::HEAD_LEN);
    let mut got = [0u8; meta::HEAD_LEN];
    let n = io.read_at(&mut got[..m], data_offset(index))?;
    Ok(n == m && got[..m] == head[..m])
}

/// Read and verify group `group`'s page into `page` (FORMAT.md §5.5, §7.1):
/// MAC, position, then (if given) the state the length implies and the
/// digest this process remembers. Also returns the pool version the page
/// was copied from, if it came from the pool.
fn load_page<I: PhysicalIo>(
    cipher: &FileCipher,
    io: &mut I,
    page: &mut Page,
    group: u64,
    expect: Option<(u16, u16, bool)>,
    digests: Option<&mut Vec<[u8; TAG_LEN]>>,
) -> Result<(GroupState, Option<u64>), I::Error> {
    let published = if io.publishes() {
        match io.published_page(&cipher.file_id(), group, page, None)? {
            Published::Copied(v) => Some(v),
            // (`Current` needs a `have`: not asked.)
            Published::Absent | Published::Current => None,
        }
    } else {
        None
    };
    let state = if published.is_some() {
        // FORMAT.md §8.3: newer than the disk's, checked but not MACed.
        cipher.check_published(group, page)?
    } else {
        let n = io.read_at(&mut page[..], meta_offset(group))?;
        if n < PAGE_SIZE {
            return Err(if group == 0 {
                FormatError::TruncatedHeader {
                    physical_len: n as u64,
                }
            } else {
                FormatError::Truncated { group }
            }
            .into());
        }
        cipher.open_metadata(group, page)?
    };
    if expect.is_some_and(|e| e != state.tuple()) {
        return Err(FormatError::MetadataReplayed { group }.into());
    }
    if let Some(d) = digests.and_then(|d| d.get_mut(digest_index(group))) {
        let tag = meta::mac_tag(page);
        if *d == UNKNOWN {
            *d = tag;
        } else if *d != tag {
            return Err(FormatError::MetadataReplayed { group }.into());
        }
    }
    Ok((state, published))
}

/// A block's nonce and tag, and its previous version's when the page's
/// previous-version record names it (FORMAT.md §14).
struct BlockEntry {
    nonce: [u8; NONCE_LEN],
    tag: [u8; TAG_LEN],
    previous: Option<([u8; NONCE_LEN], [u8; TAG_LEN])>,
    /// The MAC tag of the page the entry was read from.
    page_tag: [u8; TAG_LEN],
}

impl BlockEntry {
    fn of(page: &Page, j: usize) -> Self {
        let (nonce, tag) = meta::entry(page, j);
        let previous = meta::previous(page)
            .filter(|p| p.entry == j)
            .map(|p| (p.nonce, p.tag));
        Self {
            nonce,
            tag,
            previous,
            page_tag: meta::mac_tag(page),
        }
    }
}

/// Read block `index`'s ciphertext (exactly `buf.len()` bytes) into `buf`
/// and open it in place; if that fails and the block has a previous version
/// (a write ahead whose data write never happened), read it again and open
/// it under that. The first failure is the one reported.
fn read_and_open<I: PhysicalIo>(
    cipher: &FileCipher,
    io: &mut I,
    index: u64,
    e: &BlockEntry,
    buf: &mut [u8],
) -> Result<(), I::Error> {
    let read = |io: &mut I, buf: &mut [u8]| -> Result<(), I::Error> {
        if io.read_at(buf, data_offset(index))? != buf.len() {
            buf.fill(0);
            return Err(FormatError::Truncated {
                group: group_of(index),
            }
            .into());
        }
        Ok(())
    };
    read(io, buf)?;
    let Err(err) = cipher.open_block_in_place(index, &e.nonce, &e.tag, buf) else {
        return Ok(());
    };
    let Some((nonce, tag)) = e.previous else {
        return Err(err.into());
    };
    read(io, buf)?;
    cipher
        .open_block_in_place(index, &nonce, &tag, buf)
        .map_err(|_| err.into())
}

impl SealedFile {
    fn new(cipher: FileCipher, mode: Mode) -> Result<Self> {
        let slots = mode.slots()?;
        Ok(Self {
            cipher,
            mode,
            phys: AlignedBlock::new()?,
            cache: boxed()?,
            cache_index: None,
            cache_len: 0,
            cache_dirty: false,
            cache_mark: None,
            cache_kept: false,
            last_head: None,
            cache_head: [0; meta::HEAD_LEN],
            pages: try_vec(slots * PAGE_SIZE, 0u8)?,
            slots: try_vec(slots, Slot::FREE)?,
            max_slots: slots,
            evicted: [u64::MAX; EVICTED_RING],
            evicted_next: 0,
            tick: 0,
            len: None,
            digests: Vec::new(),
            write_ahead: false,
            fixed_len: false,
            verified_size: None,
            last_ahead: None,
            trailer_misses: 0,
            skipped: None,
            settled: false,
            unchanged: false,
        })
    }

    fn is_private(&self) -> bool {
        matches!(self.mode, Mode::Private { .. })
    }

    /// Start a new file bound to `name`: writes page 0 (header and the
    /// metadata of group 0, count 0) before returning, so that a 0-byte file
    /// is never a valid one. `io` must be empty (fresh `O_CREAT|O_TRUNC`).
    ///
    /// # Errors
    /// [`FormatError::InvalidArgument`] (non-empty file, bad mode),
    /// [`FileCipher::create`]'s errors; nonce and I/O errors.
    #[allow(clippy::too_many_arguments)] // mirrors open(): one per input of the key schedule
    pub fn create<I: PhysicalIo, N: NonceSource + ?Sized>(
        io: &mut I,
        nonces: &mut N,
        key: &EpochKey,
        epoch_id: &[u8; 16],
        file_id: &[u8; 16],
        name: &FileName<'_>,
        mode: Mode,
    ) -> Result<Self, I::Error> {
        mode.slots()?;
        if io.len()? != 0 {
            return Err(FormatError::InvalidArgument("create needs an empty file").into());
        }
        let (cipher, _) = FileCipher::create(key, epoch_id, file_id, name)?;
        let mut f = Self::new(cipher, mode)?;
        if f.is_private() {
            f.digests = Vec::with_capacity(DIGEST_RESERVE);
            f.digests.push(UNKNOWN);
        }
        f.len = Some(0);
        let s = 0;
        // A new page, in no pool (`Slot::FREE` has no origin).
        let _ = meta::init(page_at(&mut f.pages, s), f.cipher.header_bytes(), 0);
        let _ = meta::set_state(
            page_at(&mut f.pages, s),
            GroupState {
                count: 0,
                last_len: 0,
                final_group: true,
            },
        );
        f.slots[s] = Slot {
            group: 0,
            state: SlotState::Dirty,
            ..Slot::FREE
        };
        // Through to disk even where pages are published (FORMAT.md §8.3):
        // other processes open the file by its header.
        f.write_through(io, nonces, s)?;
        Ok(f)
    }

    /// Open an existing file bound to `name` (FORMAT.md §10): header, group
    /// 0, the authenticated length, and (private mode) the remembered state
    /// if the caller kept one.
    ///
    /// # Errors
    /// [`FormatError::EmptyFile`] for a 0-byte file (the caller decides);
    /// header errors ([`FileCipher::open`]); [`FormatError::RememberedFileId`],
    /// [`FormatError::RememberedLength`], [`FormatError::MetadataReplayed`];
    /// length errors ([`FormatError::TruncatedHeader`],
    /// [`FormatError::CorruptPhysicalSize`], [`FormatError::Truncated`],
    /// [`FormatError::SizeMismatch`]); [`FormatError::MetadataAuthFailed`];
    /// [`FormatError::InvalidArgument`] for remembered state with
    /// [`Mode::Shared`]; I/O errors.
    pub fn open<I: PhysicalIo>(
        io: &mut I,
        key: &EpochKey,
        current_epoch: &[u8; 16],
        name: &FileName<'_>,
        mode: Mode,
        remembered: Option<&Remembered>,
    ) -> Result<Self, I::Error> {
        mode.slots()?;
        if remembered.is_some() && mode == Mode::Shared {
            return Err(
                FormatError::InvalidArgument("remembered state is for private files").into(),
            );
        }
        let mut header = [0u8; HEADER_LEN];
        let n = io.read_at(&mut header, 0)?;
        if n < HEADER_LEN {
            return Err(short_header(&header[..n]).into());
        }
        let cipher = FileCipher::open(key, current_epoch, name, &header)?;
        if remembered.is_some_and(|r| r.file_id != cipher.file_id()) {
            return Err(FormatError::RememberedFileId.into());
        }
        let mut f = Self::new(cipher, mode)?;
        if f.is_private() {
            // Sized from our own memory or, below, from the authenticated
            // length: never from the physical size an attacker can set.
            let groups = remembered.map_or(0, |r| r.digests.len());
            f.digests
                .try_reserve_exact(groups.max(DIGEST_RESERVE))
                .map_err(|_| FormatError::OutOfMemory)?;
            if let Some(r) = remembered {
                f.digests.extend_from_slice(&r.digests);
            }
        }
        // Group 0 first: a cut inside page 0 is reported as such.
        let s = 0;
        let digests = if f.is_private() {
            Some(&mut f.digests)
        } else {
            None
        };
        let (state0, origin) =
            load_page(&f.cipher, io, page_at(&mut f.pages, s), 0, None, digests)?;
        f.slots[s] = Slot {
            group: 0,
            state: SlotState::Clean,
            ..Slot::FREE
        };
        f.slots[s].set_origin(origin);
        let len = f.establish_len(io)?;
        if expected_group_state(len, 0) != Some(state0.tuple()) {
            return Err(FormatError::MetadataReplayed { group: 0 }.into());
        }
        if let Some(r) = remembered {
            if r.len != len {
                return Err(FormatError::RememberedLength {
                    remembered: r.len,
                    found: len,
                }
                .into());
            }
        } else if f.is_private() {
            // Trust on first use: the pages just verified are remembered.
            let groups = digest_index(groups_for_len(len));
            f.digests
                .try_reserve_exact(groups)
                .map_err(|_| FormatError::OutOfMemory)?;
            f.digests.resize(groups, UNKNOWN);
            for s in 0..f.slots.len() {
                if f.slots[s].state != SlotState::Free {
                    let tag = meta::mac_tag(page_at(&mut f.pages, s));
                    f.digests[digest_index(f.slots[s].group)] = tag;
                }
            }
        }
        Ok(f)
    }

    /// The file's keys and header.
    #[must_use]
    pub const fn cipher(&self) -> &FileCipher {
        &self.cipher
    }

    /// The mode chosen at create/open.
    #[must_use]
    pub const fn mode(&self) -> Mode {
        self.mode
    }

    /// Shared mode: make every in-place rewrite of an existing block (same
    /// length) write the metadata page first, with the block's previous
    /// nonce and tag kept in the page's previous-version record, and the
    /// data block second (FORMAT.md §14).
    /// A writer that ends between the two, or before either, leaves a block
    /// that authenticates under its previous version; readers fall back to
    /// that record. Costs one metadata page write per rewritten block: none
    /// more than without for a one-block call, one more per further block
    /// of a longer call. No effect in private mode.
    pub fn set_write_ahead(&mut self, on: bool) {
        self.write_ahead = on && self.mode == Mode::Shared;
    }

    /// Private mode: let the metadata cache grow, one 8 KiB page at a time,
    /// up to `groups` pages (`MIN_CACHE_GROUPS..=MAX_CACHE_GROUPS`), when a
    /// read or an in-place rewrite needs a group *before the final one* and
    /// every slot is taken: the access pattern of logical tapes (sort
    /// merges, hash aggregate batches) and tuplestores, which otherwise
    /// write back and reload pages at every turn. Appending never grows it
    /// (a sequentially written file keeps the slots it was opened with, so
    /// a hash join's many batch files stay small), and neither does a
    /// failed allocation (the least recently used page is evicted, as
    /// without a limit). At most `groups - slots` allocations per handle,
    /// each bounded; FORMAT.md §8. No effect in shared mode.
    pub fn set_cache_limit(&mut self, groups: u8) {
        if self.is_private() {
            let g = groups.clamp(MIN_CACHE_GROUPS, MAX_CACHE_GROUPS);
            self.max_slots = usize::from(g).max(self.slots.len());
        }
    }

    /// Metadata pages the cache holds now (8 KiB each).
    #[must_use]
    pub fn cache_slots(&self) -> usize {
        self.slots.len()
    }

    /// Shared mode: the caller vouches that no other process changes this
    /// file's length (a WAL segment, created at its full size, FORMAT.md
    /// §14), so that calls after the first reuse the authenticated length
    /// without asking the file's size each time. This handle's own writes and truncates still update
    /// it. Should another writer cut the file anyway, reads past the cut
    /// fail ([`FormatError::Truncated`]) or their blocks fail their tags:
    /// never other bytes. No effect in private mode (which keeps its length
    /// anyway).
    pub fn set_fixed_len(&mut self, on: bool) {
        self.fixed_len = on && self.mode == Mode::Shared;
    }

    /// True if metadata is cached that the disk does not have yet.
    #[must_use]
    pub fn is_dirty(&self) -> bool {
        self.cache_dirty || self.slots.iter().any(|s| s.state == SlotState::Dirty)
    }

    /// Shared mode: the caller knows that no handle, in any process, has
    /// changed the file on disk since this handle's last call returned (a
    /// change counter every writer bumps before and after it writes,
    /// FORMAT.md §8.2). The next call then keeps the length, the verified
    /// pages and the cached block that call left, without a size query or a
    /// trailer read. No effect if that call failed, if the handle was
    /// invalidated since, or in private mode.
    pub fn assume_unchanged(&mut self) {
        self.unchanged = self.mode == Mode::Shared;
    }

    /// Take back a claim of [`Self::assume_unchanged`] that no call used.
    pub fn withdraw_claim(&mut self) {
        self.unchanged = false;
    }

    /// Whether the last call left the handle settled (shared mode: the last
    /// call that reached the file returned successfully, and nothing
    /// invalidated the handle since).
    #[must_use]
    pub const fn is_settled(&self) -> bool {
        self.settled
    }

    /// Forget cached plaintext; in shared mode also the length, and keep
    /// the verified metadata pages only as stale copies, which the next call
    /// uses only after finding their MAC trailers unchanged on disk (else it
    /// reloads and verifies them, FORMAT.md §8.1). Shared mode keeps the
    /// plaintext of the one cached block too, as a stale copy under its
    /// group page's MAC tag: used only if that page revalidates unchanged
    /// (FORMAT.md §8.1). Every call of a shared handle does this itself
    /// first, unless made under [`Self::assume_unchanged`] (§8.2); this
    /// also drops such a claim and the settled state. Dirty metadata of a
    /// private handle is kept: it is the only copy.
    pub fn invalidate(&mut self) {
        self.settled = false;
        self.unchanged = false;
        if self.mode == Mode::Shared && self.cache_mark.is_some() && self.cache_index.is_some() {
            // Kept under its page's tag (`cache_holds`).
            self.cache_kept = true;
        } else if !self.cache_dirty {
            self.cache_index = None;
            self.cache_len = 0;
            self.cache_mark = None;
        }
        if self.mode == Mode::Shared {
            if !self.fixed_len {
                self.len = None;
            }
            for s in self.slots.iter_mut() {
                s.state = match s.state {
                    SlotState::Clean | SlotState::Stale => SlotState::Stale,
                    // A page a failed write-through left dirty is not the
                    // disk's.
                    SlotState::Free | SlotState::Dirty => SlotState::Free,
                };
            }
        }
    }

    /// The state to keep after closing a private file, for
    /// [`Self::open`] (FORMAT.md §9). Allocates `16 * groups` bytes.
    ///
    /// # Errors
    /// [`FormatError::InvalidArgument`] in shared mode;
    /// [`FormatError::Unflushed`] with dirty metadata (call [`Self::flush`]).
    pub fn remembered(&self) -> Result<Remembered> {
        if !self.is_private() {
            return Err(FormatError::InvalidArgument(
                "remembered state is for private files",
            ));
        }
        if self.is_dirty() {
            return Err(FormatError::Unflushed);
        }
        let mut digests = Vec::new();
        digests
            .try_reserve_exact(self.digests.len())
            .map_err(|_| FormatError::OutOfMemory)?;
        digests.extend_from_slice(&self.digests);
        Ok(Remembered {
            file_id: self.cipher.file_id(),
            len: self.len.unwrap_or(0),
            digests,
        })
    }

    /// Authenticated logical size (FORMAT.md §7.1). Private: from memory;
    /// shared: one size query and the final group's metadata page (its
    /// 28-byte MAC trailer if the handle holds a verified copy).
    ///
    /// # Errors
    /// Shared mode: the length errors of [`Self::open`]; I/O errors.
    pub fn len<I: PhysicalIo>(&mut self, io: &mut I) -> Result<u64, I::Error> {
        let len = self.begin_call(io);
        // Nothing was written: what the call verified is the disk's.
        self.settled = self.mode == Mode::Shared && len.is_ok();
        len
    }

    /// Write every dirty metadata page back, in ascending group order, each
    /// with a fresh nonce. Idempotent: a clean handle writes nothing.
    ///
    /// # Errors
    /// Nonce and I/O errors; a failed page stays dirty (and gets a new nonce
    /// when retried).
    pub fn flush<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
    ) -> Result<(), I::Error> {
        self.clean_cache(io, nonces)?;
        loop {
            let next = (0..self.slots.len())
                .filter(|&s| self.slots[s].state == SlotState::Dirty)
                .min_by_key(|&s| self.slots[s].group);
            match next {
                Some(s) => self.write_back(io, nonces, s)?,
                None => return Ok(()),
            }
        }
    }

    /// Read logical bytes at `off` into `buf`. Returns fewer bytes than asked
    /// only at the authenticated length, and 0 at or past it. Never writes.
    ///
    /// # Errors
    /// [`FormatError::BlockAuthFailed`] (nothing of that block is returned),
    /// [`FormatError::Truncated`], metadata errors; in shared mode the length
    /// errors of [`Self::open`]; I/O errors.
    pub fn read_at<I: PhysicalIo>(
        &mut self,
        io: &mut I,
        buf: &mut [u8],
        off: u64,
    ) -> Result<usize, I::Error> {
        self.read_inner(io, None::<&mut crate::nonce::NonceSequence>, buf, off)
    }

    /// [`Self::read_at`] for a handle that also writes: when every cached
    /// metadata page is dirty and the read needs another group, the least
    /// recently used page is written back (with a nonce from `nonces`) so
    /// that the group stays cached, instead of re-reading it for every
    /// block (FORMAT.md §8). A handle that never wrote never writes.
    ///
    /// # Errors
    /// As [`Self::read_at`]; nonce and I/O errors of the write-back.
    pub fn read_at_mut<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        buf: &mut [u8],
        off: u64,
    ) -> Result<usize, I::Error> {
        self.read_inner(io, Some(nonces), buf, off)
    }

    fn read_inner<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: Option<&mut N>,
        buf: &mut [u8],
        off: u64,
    ) -> Result<usize, I::Error> {
        let read = self.read_call(io, nonces, buf, off);
        // A read writes nothing the disk lacks (a shared handle holds no
        // dirty page between calls): what it verified is the disk's.
        self.settled = self.mode == Mode::Shared && read.is_ok() && !self.is_dirty();
        read
    }

    fn read_call<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        mut nonces: Option<&mut N>,
        buf: &mut [u8],
        off: u64,
    ) -> Result<usize, I::Error> {
        let len = self.begin_call(io)?;
        let end = off.saturating_add(buf.len() as u64).min(len);
        if off >= end {
            return Ok(0);
        }
        let mut total = 0usize;
        for span in BlockSpans::new(off, (end - off) as usize) {
            let want = span.end - span.start;
            let dst = &mut buf[span.buf_pos..span.buf_pos + want];
            let plain_len = block_plain_len(len, span.index);
            if !self.cache_holds(io, span.index, plain_len)? {
                if span.start == 0 && want == plain_len {
                    // The whole block is wanted: decrypt in the caller's
                    // buffer, no copy.
                    let e = self.entry_for_read(io, span.index, nonces.as_deref_mut())?;
                    read_and_open(&self.cipher, io, span.index, &e, dst)?;
                    total += want;
                    continue;
                }
                if self.cache_dirty && nonces.is_none() {
                    // The cache holds another block's unsealed bytes and this
                    // handle may not write: decrypt around the cache.
                    let e = self.entry_for_read(io, span.index, None::<&mut N>)?;
                    read_and_open(
                        &self.cipher,
                        io,
                        span.index,
                        &e,
                        &mut self.phys[..plain_len],
                    )?;
                    dst.copy_from_slice(&self.phys[span.start..span.end]);
                    total += want;
                    continue;
                }
                self.load_block(io, span.index, plain_len, nonces.as_deref_mut())?;
            }
            dst.copy_from_slice(&self.cache[span.start..span.end]);
            total += want;
        }
        Ok(total)
    }

    /// Write `buf` at logical offset `off`; any offset and length, also past
    /// EOF (the gap becomes sealed zeros). Returns `buf.len()`.
    ///
    /// Blocks whose whole content is replaced are sealed directly; partial
    /// writes of existing blocks are read-modify-write. Every seal takes a
    /// fresh nonce from `nonces`. Shared mode writes the changed metadata
    /// pages before returning.
    ///
    /// # Errors
    /// [`FormatError::OffsetTooLarge`], [`FormatError::OutOfMemory`],
    /// authentication errors of blocks read back for read-modify-write and of
    /// metadata; nonce and I/O errors. After an error the file may be partly
    /// written, as with a failed `pwrite`.
    pub fn write_at<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        buf: &[u8],
        off: u64,
    ) -> Result<usize, I::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        checked_range_end(off, buf.len())?;
        self.begin_call(io)?;
        let result = self.write_inner(io, nonces, buf, off);
        self.end_call(io, nonces, result)?;
        Ok(buf.len())
    }

    /// Truncate or extend to `new_len` logical bytes (FORMAT.md §7.4, §7.5).
    /// Extending writes sealed zero blocks (no holes); cutting inside a block
    /// re-seals that block.
    ///
    /// # Errors
    /// [`FormatError::OffsetTooLarge`]; as [`Self::write_at`].
    pub fn set_len<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        new_len: u64,
    ) -> Result<(), I::Error> {
        if new_len > MAX_LOGICAL_SIZE {
            return Err(FormatError::OffsetTooLarge.into());
        }
        self.begin_call(io)?;
        let result = self
            .clean_cache(io, nonces)
            .and_then(|()| self.set_len_inner(io, nonces, new_len));
        self.end_call(io, nonces, result)
    }

    /// Shared mode: [`Self::invalidate`] (plaintext and length dropped,
    /// verified pages kept as stale copies) and re-establish the length from
    /// disk; under a claim of [`Self::assume_unchanged`] on a settled handle,
    /// nothing (FORMAT.md §8.2).
    fn begin_call<I: PhysicalIo>(&mut self, io: &mut I) -> Result<u64, I::Error> {
        // (Plaintext kept under a page's tag survives: `cache_holds`.)
        if self.mode == Mode::Shared {
            let unchanged = core::mem::take(&mut self.unchanged);
            if core::mem::take(&mut self.settled) && unchanged {
                // FORMAT.md §8.2: the disk is what the last call left.
                if let Some(len) = self.len {
                    return Ok(len);
                }
            }
            self.invalidate();
            if let (true, Some(len)) = (self.fixed_len, self.len) {
                return Ok(len);
            }
            let physical = io.len()?;
            if let Some((size, len)) = self.verified_size {
                if size == physical {
                    self.len = Some(len);
                    return Ok(len);
                }
            }
            self.verified_size = None;
            let len = self.establish_len_of(io, physical)?;
            self.verified_size = Some((physical, len));
            return Ok(len);
        }
        match self.len {
            Some(l) => Ok(l),
            None => self.establish_len(io),
        }
    }

    /// Shared mode: write through what the call changed, even after an error
    /// (what was written to data pages must be described on disk).
    fn end_call<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        result: Result<(), I::Error>,
    ) -> Result<(), I::Error> {
        if result.is_err() && !self.cache_dirty {
            self.cache_index = None;
        }
        let flushed = if self.mode == Mode::Shared {
            self.flush(io, nonces)
        } else {
            Ok(())
        };
        let result = result.and(flushed);
        if self.mode == Mode::Shared {
            // What the cache holds, if this call filled or verified it, is
            // now on disk under the group page this handle holds clean (just
            // written back, or revalidated). A copy still kept from an
            // earlier call and not verified in this one keeps its old mark.
            self.cache_mark = match (&result, self.cache_index) {
                _ if self.cache_kept => self.cache_mark,
                (Ok(()), Some(i)) if !self.cache_dirty => match self.last_head {
                    Some((k, head)) if k == i => {
                        self.cache_head = head;
                        self.slots
                            .iter()
                            .position(|sl| sl.state == SlotState::Clean && sl.group == group_of(i))
                            .map(|s| meta::mac_tag(page_at(&mut self.pages, s)))
                    }
                    // The cache holds a block this call did not write last.
                    _ => None,
                },
                _ => None,
            };
            // Written through: the file is now exactly what this length
            // needs (a failed call leaves it unknown).
            self.verified_size = match (&result, self.len) {
                (Ok(()), Some(len)) => logical_to_physical_size(len).ok().map(|p| (p, len)),
                _ => None,
            };
            self.settled = result.is_ok() && self.len.is_some() && !self.is_dirty();
        }
        result
    }

    /// FORMAT.md §7.1: one size query and the page of the group that holds
    /// the last block.
    fn establish_len<I: PhysicalIo>(&mut self, io: &mut I) -> Result<u64, I::Error> {
        let physical = io.len()?;
        self.establish_len_of(io, physical)
    }

    /// [`Self::establish_len`] for a file of `physical` bytes.
    fn establish_len_of<I: PhysicalIo>(
        &mut self,
        io: &mut I,
        physical: u64,
    ) -> Result<u64, I::Error> {
        let (group, expect, len) = match physical_shape(physical)? {
            PhysicalShape::Empty => return Err(FormatError::EmptyFile.into()),
            PhysicalShape::HeaderOnly => (0, (0, 0), 0),
            PhysicalShape::Data {
                last_block,
                last_len,
            } => (
                group_of(last_block),
                (slot_in_group(last_block) as u16 + 1, last_len as u16),
                last_block * B + last_len as u64,
            ),
        };
        let state = match self.find_slot(io, group, None)? {
            Some(s) => {
                let page = page_at(&mut self.pages, s);
                meta::state(page).unwrap_or(GroupState {
                    count: 0,
                    last_len: 0,
                    final_group: false,
                })
            }
            None => {
                let slot = self.take_clean_slot(None, group);
                let digests = if self.is_private() {
                    Some(&mut self.digests)
                } else {
                    None
                };
                match slot {
                    Some(s) => {
                        let page = page_at(&mut self.pages, s);
                        let (st, origin) = load_page(&self.cipher, io, page, group, None, digests)?;
                        let tag = meta::mac_tag(page);
                        self.mark(s, group, SlotState::Clean);
                        self.slots[s].set_origin(origin);
                        self.note_reload(group, tag);
                        st
                    }
                    None => load_page(&self.cipher, io, &mut self.phys, group, None, digests)?.0,
                }
            }
        };
        if !state.final_group {
            return Err(FormatError::Truncated { group }.into());
        }
        let found = (state.count, state.last_len);
        if found != expect {
            return Err(if found > expect {
                FormatError::Truncated { group }
            } else {
                FormatError::SizeMismatch {
                    physical_len: physical,
                }
            }
            .into());
        }
        self.len = Some(len);
        Ok(len)
    }

    fn write_inner<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        buf: &[u8],
        off: u64,
    ) -> Result<(), I::Error> {
        let aligned = block_index(off) * B;
        if aligned > self.current_len() {
            self.extend(io, nonces, aligned)?;
        }
        for span in BlockSpans::new(off, buf.len()) {
            let data = &buf[span.buf_pos..span.buf_pos + (span.end - span.start)];
            // Every block rewritten in place is written ahead: any of them
            // may hold bytes a caller relies on (a walreceiver that
            // restarts streaming rewrites a whole segment's flushed pages
            // in 16-page calls), not only a call's first (XLogWrite's tail).
            let ahead = true;
            let len = self.current_len();
            let existing = block_plain_len(len, span.index);
            // The write's partial last block is held unsealed (private mode)
            // unless it would start a new group: its page does not exist yet.
            let last = span.buf_pos + data.len() == buf.len();
            let defer = self.is_private()
                && last
                && span.end < BLOCK_SIZE
                && groups_for_len(len.max(span.index * B + span.end as u64)) == groups_for_len(len);
            if span.start == 0 && span.end >= existing {
                // Replaces the block's whole content: no read needed.
                if self.cache_index != Some(span.index) {
                    self.clean_cache(io, nonces)?;
                }
                if defer {
                    self.cache[..data.len()].copy_from_slice(data);
                    self.cache_index = Some(span.index);
                    self.cache_len = data.len();
                    self.cache_kept = false;
                    self.hold_cache(span.index);
                    continue;
                }
                self.cache_dirty = false;
                self.write_block(io, nonces, span.index, Plain::Buf(data), ahead)?;
                if data.len() < BLOCK_SIZE {
                    // A short last block: likely appended to next (spill
                    // files), so keep it for the next read-modify-write.
                    self.cache[..data.len()].copy_from_slice(data);
                    self.cache_index = Some(span.index);
                    self.cache_len = data.len();
                    self.cache_kept = false;
                } else if self.cache_index == Some(span.index) {
                    self.cache_index = None;
                }
            } else {
                self.load_block(io, span.index, existing, Some(&mut *nonces))?;
                if span.start > existing {
                    self.cache[existing..span.start].fill(0);
                }
                self.cache[span.start..span.end].copy_from_slice(data);
                let new_len = existing.max(span.end);
                self.cache_len = new_len;
                if defer {
                    self.hold_cache(span.index);
                    continue;
                }
                let written =
                    self.write_block(io, nonces, span.index, Plain::Cache(new_len), ahead);
                if let Err(e) = written {
                    if self.is_private() {
                        // The cache holds bytes earlier writes acknowledged:
                        // keep them to seal later (flush retries).
                        self.hold_cache(span.index);
                    } else {
                        self.cache_index = None;
                    }
                    return Err(e);
                }
                self.cache_dirty = false;
            }
        }
        Ok(())
    }

    /// A page of `group` with MAC tag `tag` was just loaded: if it is the
    /// stale copy dropped unasked, the page had not changed after all, and
    /// trailers are worth reading again.
    fn note_reload(&mut self, group: u64, tag: [u8; TAG_LEN]) {
        if self.skipped.take() == Some((group, tag)) {
            self.trailer_misses = 0;
        }
    }

    /// Whether the plaintext cache holds block `index` with `plain_len`
    /// bytes. In shared mode plaintext kept from an earlier call counts only
    /// if the block's group page revalidates from disk (one 28-byte trailer
    /// read, the same the call needs for its entry anyway) with the tag it
    /// had when the cache was the block's current version: every write of
    /// the block, by any process, rewrites that page under a fresh nonce.
    fn cache_holds<I: PhysicalIo>(
        &mut self,
        io: &mut I,
        index: u64,
        plain_len: usize,
    ) -> Result<bool, I::Error> {
        if self.cache_index != Some(index) || self.cache_len != plain_len {
            return Ok(false);
        }
        if !self.cache_kept {
            return Ok(true);
        }
        self.cache_kept = false;
        let group = group_of(index);
        let expect = expected_group_state(self.current_len(), group);
        let mut unchanged = match self.find_slot(io, group, expect)? {
            Some(s) => Some(meta::mac_tag(page_at(&mut self.pages, s))) == self.cache_mark,
            None => false,
        };
        if unchanged {
            // An unchanged tag may also be an older page put back alone
            // (replay): the block's ciphertext must still be this version's.
            unchanged = block_starts_with(io, index, plain_len, &self.cache_head)?;
        }
        if !unchanged {
            self.cache_index = None;
            self.cache_mark = None;
        }
        Ok(unchanged)
    }

    /// The cached block `index` now holds unsealed bytes; the logical length
    /// includes them.
    fn hold_cache(&mut self, index: u64) {
        self.cache_dirty = true;
        let end = index * B + self.cache_len as u64;
        self.len = Some(self.current_len().max(end));
    }

    /// Seal the held block, if any (private mode).
    fn clean_cache<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
    ) -> Result<(), I::Error> {
        if !self.cache_dirty {
            return Ok(());
        }
        let Some(index) = self.cache_index else {
            self.cache_dirty = false;
            return Ok(());
        };
        self.write_block(io, nonces, index, Plain::Cache(self.cache_len), false)?;
        self.cache_dirty = false;
        Ok(())
    }

    fn set_len_inner<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        new_len: u64,
    ) -> Result<(), I::Error> {
        let len = self.current_len();
        if new_len > len {
            return self.extend(io, nonces, new_len);
        }
        if new_len == len {
            return Ok(());
        }
        // The new last block (if any), its new and its current length.
        let (last, cut_len) = if new_len == 0 {
            (None, 0)
        } else {
            let k = (new_len - 1) / B;
            (Some(k), (new_len - k * B) as usize)
        };
        let group = last.map_or(0, group_of);
        let s = self.acquire_group(io, nonces, group, None)?;
        let mut resealed = None;
        if let Some(k) = last {
            let existing = block_plain_len(len, k);
            if cut_len < existing {
                // Slot `s` is pinned: no write-back that could evict it.
                self.load_block(io, k, existing, None::<&mut N>)?;
                let nonce = nonces.next_nonce()?;
                let tag =
                    self.cipher
                        .seal_block(k, nonce, &self.cache[..cut_len], &mut self.phys[..])?;
                // The cached plaintext is no longer what block k holds on
                // disk until the commit below.
                self.cache_index = None;
                io.write_all_at(&self.phys[..cut_len], data_offset(k))?;
                self.last_head = Some((k, meta::head_of(&self.phys[..cut_len])));
                resealed = Some((k, nonce, tag));
            }
        }
        io.set_len(logical_to_physical_size(new_len)?)?;
        // Commit (no failure from here on).
        let page = page_at(&mut self.pages, s);
        if let Some((k, nonce, tag)) = resealed {
            self.slots[s].touch(meta::replace_entry(page, slot_in_group(k), &nonce, &tag));
            self.cache_index = Some(k);
            self.cache_len = cut_len;
            self.cache_kept = false;
        }
        if let Some((count, last_len, final_group)) = expected_group_state(new_len, group) {
            self.slots[s].touch(meta::set_state(
                page,
                GroupState {
                    count,
                    last_len,
                    final_group,
                },
            ));
        }
        self.mark(s, group, SlotState::Dirty);
        for slot in self.slots.iter_mut() {
            if slot.state != SlotState::Free && slot.group > group {
                slot.state = SlotState::Free;
            }
        }
        if self.is_private() {
            self.digests.truncate(digest_index(groups_for_len(new_len)));
        }
        if matches!(self.cache_index, Some(i) if i * B >= new_len) {
            self.cache_index = None;
        }
        self.len = Some(new_len);
        Ok(())
    }

    fn current_len(&self) -> u64 {
        // Every caller runs after begin_call, which set it.
        self.len.unwrap_or(0)
    }

    /// Grow the logical file from its current size to `to` with zeros.
    fn extend<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        to: u64,
    ) -> Result<(), I::Error> {
        let mut from = self.current_len();
        let partial = (from % B) as usize;
        if partial != 0 && from < to {
            // Zero-pad the old partial last block and re-seal it.
            let index = block_index(from);
            self.load_block(io, index, partial, Some(&mut *nonces))?;
            let new_len = (to - index * B).min(B) as usize;
            self.cache[partial..new_len].fill(0);
            self.cache_len = new_len;
            if let Err(e) = self.write_block(io, nonces, index, Plain::Cache(new_len), false) {
                if self.cache_dirty {
                    // Keep the held bytes to seal later; the failed
                    // extension does not count.
                    self.cache_len = partial;
                    self.hold_cache(index);
                } else {
                    self.cache_index = None;
                }
                return Err(e);
            }
            self.cache_dirty = false;
            from = index * B + new_len as u64;
        }
        while from < to {
            let index = block_index(from);
            let n = (to - from).min(B) as usize;
            if self.cache_index == Some(index) {
                self.cache_index = None;
            }
            self.write_block(io, nonces, index, Plain::Zeros(n), false)?;
            from += n as u64;
        }
        Ok(())
    }

    /// Seal and write block `index`, which must start at or before the
    /// current end (gaps are filled first) and ends at or after the block's
    /// current end. Memory changes only after the data `pwrite` succeeded,
    /// except in a write ahead (`ahead`, [`Self::set_write_ahead`]), where
    /// the metadata page goes first.
    fn write_block<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        index: u64,
        plain: Plain<'_>,
        ahead: bool,
    ) -> Result<(), I::Error> {
        let len = self.current_len();
        debug_assert!(index * B <= len);
        let n = match plain {
            Plain::Buf(b) => b.len(),
            Plain::Cache(n) | Plain::Zeros(n) => n,
        };
        let new_len = len.max(index * B + n as u64);
        let group = group_of(index);
        let new_group = groups_for_len(new_len) > groups_for_len(len);
        // Prepare everything that can fail before the data pwrite.
        let (target, previous) = if new_group {
            if self.is_private() && self.digests.len() == self.digests.capacity() {
                self.digests
                    .try_reserve(self.digests.len().max(1))
                    .map_err(|_| FormatError::OutOfMemory)?;
            }
            let prev = self.acquire_group(io, nonces, group - 1, None)?;
            (
                self.take_slot_for_write(io, nonces, Some(prev), group)?,
                Some(prev),
            )
        } else {
            (self.acquire_group(io, nonces, group, None)?, None)
        };
        let nonce = nonces.next_nonce()?;
        let src: &[u8] = match plain {
            Plain::Buf(b) => b,
            Plain::Cache(n) => &self.cache[..n],
            Plain::Zeros(n) => &ZEROS[..n],
        };
        let tag = self
            .cipher
            .seal_block(index, nonce, src, &mut self.phys[..])?;
        // A rewrite in place of a block that keeps its length (so that its
        // previous version's ciphertext length still matches the group
        // state the new page records).
        if ahead && self.write_ahead && previous.is_none() && block_plain_len(len, index) == n {
            let page = page_at(&mut self.pages, target);
            // This handle's own last write ahead, in the page as it left it
            // (revalidated this call): its data write returned, nothing to
            // check.
            let ours = self.last_ahead == Some((group, meta::mac_tag(page)));
            if let Some(p) = meta::previous(page).filter(|_| !ours) {
                // The last write ahead in this group: if its data never got
                // to disk, its block still holds the previous version, and
                // the entry must say so before the record moves on.
                let k = group * GROUP_BLOCKS as u64 + p.entry as u64;
                if !block_starts_with(io, k, block_plain_len(len, k), &p.new_head)? {
                    self.slots[target].touch(meta::set_entry(page, p.entry, &p.nonce, &p.tag));
                }
            }
            let j = slot_in_group(index);
            let kept = meta::keep_previous(page, j, &self.phys[..n]);
            let set = meta::set_entry(page, j, &nonce, &tag);
            self.slots[target].touch(kept.or(set));
            self.mark(target, group, SlotState::Dirty);
            self.last_ahead = None;
            if let Err(e) = self.write_back(io, nonces, target) {
                // Not on disk: forget the changed page (the next call
                // loads the disk's).
                self.slots[target].state = SlotState::Free;
                return Err(e);
            }
            io.write_all_at(&self.phys[..n], data_offset(index))?;
            self.last_ahead = Some((group, meta::mac_tag(page_at(&mut self.pages, target))));
            self.last_head = Some((index, meta::head_of(&self.phys[..n])));
            return Ok(());
        }
        io.write_all_at(&self.phys[..n], data_offset(index))?;
        if !self.is_private() {
            self.last_head = Some((index, meta::head_of(&self.phys[..n])));
        }
        // Commit.
        if let Some(prev) = previous {
            // A stale copy of an earlier page of this group (another handle
            // cut the file meanwhile) must not shadow the new one.
            for (s, slot) in self.slots.iter_mut().enumerate() {
                if s != target && slot.state != SlotState::Free && slot.group == group {
                    slot.state = SlotState::Free;
                }
            }
            let header = *self.cipher.header_bytes();
            let fresh = meta::init(page_at(&mut self.pages, target), &header, group);
            self.slots[target].touch(fresh);
            self.set_group_state(prev, group - 1, new_len);
            if self.is_private() {
                self.digests.push(UNKNOWN);
            }
        }
        let page = page_at(&mut self.pages, target);
        let j = slot_in_group(index);
        self.slots[target].touch(meta::replace_entry(page, j, &nonce, &tag));
        self.set_group_state(target, group, new_len);
        self.len = Some(new_len);
        Ok(())
    }

    /// Store in slot `s` the state group `group` has in a file of `len`
    /// bytes, and mark it dirty.
    fn set_group_state(&mut self, s: usize, group: u64, len: u64) {
        if let Some((count, last_len, final_group)) = expected_group_state(len, group) {
            self.slots[s].touch(meta::set_state(
                page_at(&mut self.pages, s),
                GroupState {
                    count,
                    last_len,
                    final_group,
                },
            ));
        }
        self.mark(s, group, SlotState::Dirty);
    }

    /// Slot `s` holds group `group`'s page in `state`. What the pool knows
    /// of the page is kept only while the slot keeps its group (a load
    /// sets it afresh: [`Slot::set_origin`]).
    fn mark(&mut self, s: usize, group: u64, state: SlotState) {
        self.tick += 1;
        let old = self.slots[s];
        let (pool, changed) = if old.state != SlotState::Free && old.group == group {
            (old.pool, old.changed)
        } else {
            (None, Touched(0))
        };
        self.slots[s] = Slot {
            group,
            state,
            last_use: self.tick,
            pool,
            changed,
        };
    }

    /// The slot holding group `group`'s page, usable in this call. A stale
    /// page (shared mode, verified in an earlier call) is revalidated first
    /// by reading only its 28-byte MAC trailer: unchanged, it is the page on
    /// disk (every seal takes a fresh nonce) and must still agree with the
    /// length (`expect`, as a loaded page must); changed or cut short, it is
    /// dropped and `None` says "load it" (FORMAT.md §8.1).
    fn find_slot<I: PhysicalIo>(
        &mut self,
        io: &mut I,
        group: u64,
        expect: Option<(u16, u16, bool)>,
    ) -> Result<Option<usize>, I::Error> {
        let Some(s) = self
            .slots
            .iter()
            .position(|s| s.state != SlotState::Free && s.group == group)
        else {
            return Ok(None);
        };
        if self.slots[s].state == SlotState::Stale && io.publishes() {
            // FORMAT.md §8.3: the pool's page, when it has one, is the
            // newest; without one, load from disk (the copy may be a
            // published version since drained).
            let fid = self.cipher.file_id();
            let page = page_at(&mut self.pages, s);
            // A stale page has no changes of its own (those made it dirty,
            // and a dirty page is dropped, not kept stale).
            let slot = self.slots[s];
            let have = slot.pool.filter(|_| slot.changed == Touched(0));
            let found = io.published_page(&fid, group, page, have)?;
            let state = match found {
                // The page this handle checked or published itself.
                Published::Current => meta::state(page),
                Published::Copied(v) => {
                    self.slots[s].set_origin(Some(v));
                    self.cipher.check_published(group, page).ok()
                }
                Published::Absent => None,
            };
            let Some(state) = state else {
                self.slots[s].state = SlotState::Free;
                if found != Published::Absent {
                    return Err(FormatError::MetadataAuthFailed { group }.into());
                }
                return Ok(None);
            };
            if expect.is_some_and(|e| e != state.tuple()) {
                self.slots[s].state = SlotState::Free;
                return Err(FormatError::MetadataReplayed { group }.into());
            }
            self.slots[s].state = SlotState::Clean;
        } else if self.slots[s].state == SlotState::Stale {
            if self.trailer_misses >= TRAILER_MISSES_TO_SKIP {
                // The trailer has differed every time lately: reload
                // without asking (one read instead of two).
                self.skipped = Some((group, meta::mac_tag(page_at(&mut self.pages, s))));
                self.slots[s].state = SlotState::Free;
                return Ok(None);
            }
            let page = page_at(&mut self.pages, s);
            let mut trailer = [0u8; MAC_TRAILER_LEN];
            let n = io.read_at(&mut trailer, meta_offset(group) + OFF_MAC_NONCE as u64)?;
            if n != MAC_TRAILER_LEN || trailer[..] != page[OFF_MAC_NONCE..] {
                self.slots[s].state = SlotState::Free;
                self.trailer_misses = self.trailer_misses.saturating_add(1);
                return Ok(None);
            }
            self.trailer_misses = 0;
            let state = meta::state(page).map(|st| st.tuple());
            if expect.is_some_and(|e| Some(e) != state) {
                self.slots[s].state = SlotState::Free;
                return Err(FormatError::MetadataReplayed { group }.into());
            }
            self.slots[s].state = SlotState::Clean;
        }
        self.tick += 1;
        self.slots[s].last_use = self.tick;
        Ok(Some(s))
    }

    /// A free slot, else the least recently used clean one; never `pin`.
    /// `for_group`: the group it is taken for.
    fn take_clean_slot(&mut self, pin: Option<usize>, for_group: u64) -> Option<usize> {
        let candidates = (0..self.slots.len()).filter(|&s| Some(s) != pin);
        let s = candidates
            .filter(|&s| self.slots[s].state != SlotState::Dirty)
            .min_by_key(|&s| {
                (
                    self.slots[s].state != SlotState::Free,
                    self.slots[s].last_use,
                )
            })?;
        self.note_eviction(s, for_group);
        self.slots[s].state = SlotState::Free;
        Some(s)
    }

    /// Slot `s` is about to be reused for `for_group`: remember which group
    /// it held, if an access back into the file (not an append, not the
    /// length's final group) pushed it out.
    fn note_eviction(&mut self, s: usize, for_group: u64) {
        let back = for_group + 1 < groups_for_len(self.current_len());
        if back && self.slots[s].state != SlotState::Free {
            self.evicted[self.evicted_next] = self.slots[s].group;
            self.evicted_next = (self.evicted_next + 1) % EVICTED_RING;
        }
    }

    /// A slot to fill for `group`: a free one, else a new one if the cache
    /// may grow for it ([`Self::set_cache_limit`]), else the least recently
    /// used clean one, else writing back the least recently used dirty page.
    fn take_slot_for_write<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        pin: Option<usize>,
        group: u64,
    ) -> Result<usize, I::Error> {
        if let Some(s) = self.free_or_grown_slot(group) {
            return Ok(s);
        }
        if let Some(s) = self.take_clean_slot(pin, group) {
            return Ok(s);
        }
        let victim = (0..self.slots.len())
            .filter(|&s| Some(s) != pin)
            .min_by_key(|&s| self.slots[s].last_use)
            .ok_or(FormatError::InvalidArgument("no metadata slot"))?;
        self.write_back(io, nonces, victim)?;
        self.note_eviction(victim, group);
        self.slots[victim].state = SlotState::Free;
        Ok(victim)
    }

    /// A free slot, else one more slot if the cache may grow, `group` is
    /// before the final group (an access back into the file, not an append)
    /// and its page was evicted lately (a reload, not a first visit: a
    /// sequential read of a file never grows the cache).
    fn free_or_grown_slot(&mut self, group: u64) -> Option<usize> {
        if let Some(s) = self.slots.iter().position(|s| s.state == SlotState::Free) {
            return Some(s);
        }
        if self.slots.len() >= self.max_slots
            || group + 1 >= groups_for_len(self.current_len())
            || !self.evicted.contains(&group)
        {
            return None;
        }
        self.pages.try_reserve_exact(PAGE_SIZE).ok()?;
        self.slots.try_reserve_exact(1).ok()?;
        let s = self.slots.len();
        self.pages.resize((s + 1) * PAGE_SIZE, 0);
        self.slots.push(Slot::FREE);
        Some(s)
    }

    /// The slot holding group `group` (an existing group), loading it.
    fn acquire_group<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        group: u64,
        pin: Option<usize>,
    ) -> Result<usize, I::Error> {
        let expect = expected_group_state(self.current_len(), group);
        if let Some(s) = self.find_slot(io, group, expect)? {
            return Ok(s);
        }
        let s = self.take_slot_for_write(io, nonces, pin, group)?;
        self.load_into_slot(io, s, group)?;
        Ok(s)
    }

    fn load_into_slot<I: PhysicalIo>(
        &mut self,
        io: &mut I,
        s: usize,
        group: u64,
    ) -> Result<(), I::Error> {
        let expect = expected_group_state(self.current_len(), group);
        let digests = if self.is_private() {
            Some(&mut self.digests)
        } else {
            None
        };
        let page = page_at(&mut self.pages, s);
        let (_, origin) = load_page(&self.cipher, io, page, group, expect, digests)?;
        let tag = meta::mac_tag(page);
        self.mark(s, group, SlotState::Clean);
        self.slots[s].set_origin(origin);
        self.note_reload(group, tag);
        Ok(())
    }

    /// Nonce and tag of block `index`, from a cached page, else loading the
    /// page into a clean slot, else (given `nonces`: a handle that writes)
    /// into the slot of the least recently used dirty page after writing it
    /// back, else into the scratch buffer.
    fn entry_for_read<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        index: u64,
        nonces: Option<&mut N>,
    ) -> Result<BlockEntry, I::Error> {
        let group = group_of(index);
        let j = slot_in_group(index);
        let expect = expected_group_state(self.current_len(), group);
        if let Some(s) = self.find_slot(io, group, expect)? {
            return Ok(BlockEntry::of(page_at(&mut self.pages, s), j));
        }
        if let Some(s) = self
            .free_or_grown_slot(group)
            .or_else(|| self.take_clean_slot(None, group))
        {
            self.load_into_slot(io, s, group)?;
            return Ok(BlockEntry::of(page_at(&mut self.pages, s), j));
        }
        if let Some(nonces) = nonces {
            let s = self.take_slot_for_write(io, nonces, None, group)?;
            self.load_into_slot(io, s, group)?;
            return Ok(BlockEntry::of(page_at(&mut self.pages, s), j));
        }
        let expect = expected_group_state(self.current_len(), group);
        let digests = if self.is_private() {
            Some(&mut self.digests)
        } else {
            None
        };
        load_page(&self.cipher, io, &mut self.phys, group, expect, digests)?;
        Ok(BlockEntry::of(&self.phys, j))
    }

    /// Make the plaintext cache hold block `index`, which has `plain_len`
    /// bytes (0 = the block does not exist yet: nothing to read).
    fn load_block<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        index: u64,
        plain_len: usize,
        nonces: Option<&mut N>,
    ) -> Result<(), I::Error> {
        if self.cache_holds(io, index, plain_len)? {
            return Ok(());
        }
        let mut nonces = nonces;
        if self.cache_dirty {
            match nonces.as_deref_mut() {
                Some(n) => self.clean_cache(io, n)?,
                // Callers without a nonce source read dirty-cache files
                // around the cache (read_inner) and seal first (set_len).
                None => return Err(FormatError::Unflushed.into()),
            }
        }
        self.cache_index = None;
        if plain_len > 0 {
            let e = self.entry_for_read(io, index, nonces)?;
            let n = io.read_at(&mut self.phys[..plain_len], data_offset(index))?;
            if n != plain_len {
                return Err(FormatError::Truncated {
                    group: group_of(index),
                }
                .into());
            }
            let ct = &self.phys[..plain_len];
            let opened = self
                .cipher
                .open_block(index, &e.nonce, &e.tag, ct, &mut self.cache[..]);
            // Only the block's current version may be kept across calls:
            // the data write of a write ahead (previous version) may land
            // without changing the page again.
            if !self.is_private() {
                self.cache_mark = Some(e.page_tag);
                self.cache_head = meta::head_of(ct);
                self.last_head = Some((index, self.cache_head));
            }
            if let Err(err) = opened {
                self.cache_mark = None;
                let (nonce, tag) = e.previous.ok_or(err)?;
                self.cipher
                    .open_block(index, &nonce, &tag, ct, &mut self.cache[..])
                    .map_err(|_| err)?;
            }
        } else {
            self.cache_mark = None;
        }
        self.cache_index = Some(index);
        self.cache_len = plain_len;
        self.cache_kept = false;
        Ok(())
    }

    /// Publish slot `s`'s page where the I/O publishes (shared mode:
    /// FORMAT.md §8.3), else [`Self::write_through`]; on success it is
    /// clean. A write ahead's page is published before its data write as
    /// it would be written (§14).
    fn write_back<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        s: usize,
    ) -> Result<(), I::Error> {
        if self.mode == Mode::Shared && io.publishes() {
            let group = self.slots[s].group;
            let nonce = nonces.next_nonce()?;
            let fid = self.cipher.file_id();
            let page = page_at(&mut self.pages, s);
            let stamp = self.cipher.stamp_published(group, nonce, page);
            let slot = &mut self.slots[s];
            slot.touch(stamp);
            let base = slot.pool.map(|version| PoolBase {
                version,
                changed: slot.changed,
            });
            if let Some(version) = io.publish_page(&fid, group, page, base)? {
                slot.state = SlotState::Clean;
                slot.set_origin(Some(version));
                return Ok(());
            }
        }
        self.write_through(io, nonces, s)
    }

    /// MAC slot `s`'s page with a fresh nonce and write it; on success it is
    /// clean and (private mode) its tag is the group's digest.
    fn write_through<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        s: usize,
    ) -> Result<(), I::Error> {
        let group = self.slots[s].group;
        let nonce = nonces.next_nonce()?;
        let page = page_at(&mut self.pages, s);
        // Sealed, the page is no longer any version of the pool's.
        self.slots[s].set_origin(None);
        let tag = self.cipher.seal_metadata(group, nonce, page)?;
        io.write_all_at(&page[..], meta_offset(group))?;
        self.slots[s].state = SlotState::Clean;
        if let Some(d) = self.digests.get_mut(digest_index(group)) {
            *d = tag;
        }
        Ok(())
    }
}

/// An in-memory physical file, for tests, fuzzing and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VecIo {
    /// The physical bytes.
    pub data: Vec<u8>,
}

impl PhysicalIo for VecIo {
    type Error = FormatError;

    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        let len = self.data.len() as u64;
        if off >= len {
            return Ok(0);
        }
        let start = off as usize;
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), FormatError> {
        let start = usize::try_from(off).map_err(|_| FormatError::OffsetTooLarge)?;
        let end = start + buf.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), FormatError> {
        let len = usize::try_from(len).map_err(|_| FormatError::OffsetTooLarge)?;
        self.data.resize(len, 0);
        Ok(())
    }

    fn len(&mut self) -> Result<u64, FormatError> {
        Ok(self.data.len() as u64)
    }
}

// Count (up to GROUP_BLOCKS) and last length (up to BLOCK_SIZE) are u16 fields.
const _: () = assert!(GROUP_BLOCKS < BLOCK_SIZE && BLOCK_SIZE <= u16::MAX as usize);
