//! Logical file operations on top of any physical I/O (FORMAT.md §7).
//!
//! The libc shims and the property tests run this same code: the shims
//! implement [`PhysicalIo`] with `pread`/`pwrite`/`ftruncate`/`fstat`, the
//! tests with a `Vec<u8>` ([`VecIo`]).

use zeroize::Zeroize;

use crate::block::FileCipher;
use crate::error::{FormatError, Result};
use crate::keys::EpochKey;
use crate::layout::{
    block_index, block_plain_len, checked_range_end, phys_block_offset, physical_to_logical_size,
    truncate_plan, BlockSpans, BLOCK_OVERHEAD, BLOCK_SIZE, HEADER_LEN, MAX_LOGICAL_SIZE,
    MIN_PHYS_BLOCK_SIZE, NONCE_LEN, PHYS_BLOCK_SIZE,
};
use crate::nonce::NonceSource;

const B: u64 = BLOCK_SIZE as u64;

/// Ledger entries reserved at construction (blocks of 8 KiB: 512 KiB of file).
const LEDGER_RESERVE: usize = 64;

/// Plaintext of gap blocks: read-only data, so no allocation and no memset.
static ZEROS: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];

/// Positional I/O on the physical (encrypted) file.
#[allow(clippy::len_without_is_empty)] // `len` is fstat; emptiness means nothing here
pub trait PhysicalIo {
    /// The caller's error type; format errors convert into it (the shims map
    /// them to `EIO`).
    type Error: From<FormatError>;

    /// Read up to `buf.len()` bytes at physical offset `off`.
    ///
    /// Returns fewer bytes than asked **only at end of file**: implementations
    /// retry `EINTR` and short reads themselves. (A short read reported early
    /// makes the block fail authentication: safe, but an error.)
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, Self::Error>;

    /// Write all of `buf` at physical offset `off`, extending the file if needed.
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), Self::Error>;

    /// Set the physical length (truncate or extend).
    fn set_len(&mut self, len: u64) -> Result<(), Self::Error>;

    /// The current physical length (`fstat`). Called at most once per
    /// [`SealedFile`] operation, and never by reads.
    fn len(&mut self) -> Result<u64, Self::Error>;
}

/// An open encrypted file: its keys plus two fixed buffers, allocated once, so
/// that reads and writes never touch the heap.
///
/// A one-block plaintext cache holds the block last opened or written through
/// a partial access, so that unaligned sequential reads (PostgreSQL's
/// tuplestore reads 8 KiB at unaligned offsets) and small appends (spill files)
/// open each block once. The cache assumes that while this `SealedFile` is in
/// use nobody else writes the file; if that may have happened, call
/// [`SealedFile::invalidate_cache`].
pub struct SealedFile {
    cipher: FileCipher,
    phys: Box<[u8; PHYS_BLOCK_SIZE]>,
    cache: Box<[u8; BLOCK_SIZE]>,
    cache_index: Option<u64>,
    cache_len: usize,
    /// Version ledger: the nonce of the last write of each block through
    /// this handle (all zero = not written by us). A read of such a block
    /// must find exactly that nonce, so an older version replayed at the
    /// same position is detected (FORMAT.md §9). Grows by doubling; 64
    /// entries are reserved up front.
    ledger: Vec<[u8; NONCE_LEN]>,
}

impl core::fmt::Debug for SealedFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SealedFile")
            .field("cache_index", &self.cache_index)
            .field("cache_len", &self.cache_len)
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
    match crate::header::Header::parse(bytes) {
        Err(e) => e,
        Ok(_) => FormatError::TruncatedHeader {
            physical_len: bytes.len() as u64,
        },
    }
}

fn boxed<const N: usize>() -> Box<[u8; N]> {
    // Through a Vec so that no N-byte temporary lands on the stack.
    match vec![0u8; N].into_boxed_slice().try_into() {
        Ok(b) => b,
        Err(_) => unreachable!("length is N by construction"),
    }
}

impl SealedFile {
    /// Wrap a keyed file. Allocates the two block buffers (the only allocation).
    #[must_use]
    pub fn new(cipher: FileCipher) -> Self {
        Self {
            cipher,
            phys: boxed(),
            cache: boxed(),
            cache_index: None,
            cache_len: 0,
            ledger: Vec::with_capacity(LEDGER_RESERVE),
        }
    }

    /// Start a new file: write its header at offset 0. For a file that is
    /// empty (just created, or truncated with `O_TRUNC`); it does not truncate.
    ///
    /// # Errors
    /// [`FileCipher::create`]'s errors; I/O errors.
    pub fn create<I: PhysicalIo>(
        io: &mut I,
        key: &EpochKey,
        epoch_id: &[u8; 16],
        file_id: &[u8; 16],
    ) -> Result<Self, I::Error> {
        let (cipher, header) = FileCipher::create(key, epoch_id, file_id)?;
        io.write_all_at(&header, 0)?;
        Ok(Self::new(cipher))
    }

    /// Open an existing file: read and verify its header.
    ///
    /// # Errors
    /// [`FormatError::TruncatedHeader`] for a file shorter than 64 bytes (use
    /// [`Self::open_or_init`] to accept empty files); [`FileCipher::open`]'s
    /// errors; I/O errors.
    pub fn open<I: PhysicalIo>(
        io: &mut I,
        key: &EpochKey,
        current_epoch: &[u8; 16],
    ) -> Result<Self, I::Error> {
        let mut header = [0u8; HEADER_LEN];
        let n = io.read_at(&mut header, 0)?;
        if n < HEADER_LEN {
            return Err(short_header(&header[..n]).into());
        }
        Ok(Self::new(FileCipher::open(key, current_epoch, &header)?))
    }

    /// Like [`Self::open`], but an empty (0-byte) file is accepted as a new
    /// file with id `new_file_id`; its header is written by the first write or
    /// extending `set_len` (so that opening read-only never writes).
    ///
    /// # Errors
    /// As [`Self::open`]; [`FormatError::ZeroFileId`] for a new file.
    pub fn open_or_init<I: PhysicalIo>(
        io: &mut I,
        key: &EpochKey,
        current_epoch: &[u8; 16],
        new_file_id: &[u8; 16],
    ) -> Result<Self, I::Error> {
        let mut header = [0u8; HEADER_LEN];
        let n = io.read_at(&mut header, 0)?;
        if n == 0 {
            let (cipher, _) = FileCipher::create(key, current_epoch, new_file_id)?;
            return Ok(Self::new(cipher));
        }
        if n < HEADER_LEN {
            return Err(short_header(&header[..n]).into());
        }
        Ok(Self::new(FileCipher::open(key, current_epoch, &header)?))
    }

    /// The file's keys and header.
    #[must_use]
    pub const fn cipher(&self) -> &FileCipher {
        &self.cipher
    }

    /// Forget which versions this handle wrote (for files that other
    /// processes may legitimately rewrite: shared file sets).
    pub fn forget_versions(&mut self) {
        self.ledger.clear();
    }

    fn record_version(&mut self, index: u64, nonce: [u8; NONCE_LEN]) {
        let Ok(i) = usize::try_from(index) else {
            return;
        };
        if i >= self.ledger.len() {
            self.ledger.resize(i + 1, [0; NONCE_LEN]);
        }
        self.ledger[i] = nonce;
    }

    /// A block read back must carry the nonce this handle last sealed it with.
    fn check_version(&self, index: u64, phys: &[u8]) -> Result<()> {
        let known = usize::try_from(index).ok().and_then(|i| self.ledger.get(i));
        match known {
            Some(n) if *n != [0; NONCE_LEN] && phys.get(..NONCE_LEN) != Some(&n[..]) => {
                Err(FormatError::BlockReplayed { index })
            }
            _ => Ok(()),
        }
    }

    /// Forget the cached block (after someone else may have written the file).
    pub fn invalidate_cache(&mut self) {
        self.cache_index = None;
        self.cache_len = 0;
    }

    /// Logical size, from one physical size query.
    ///
    /// # Errors
    /// [`FormatError::TruncatedHeader`], [`FormatError::CorruptPhysicalSize`]; I/O errors.
    pub fn len<I: PhysicalIo>(&mut self, io: &mut I) -> Result<u64, I::Error> {
        Ok(physical_to_logical_size(io.len()?)?)
    }

    /// Read logical bytes at `off` into `buf`. Returns fewer bytes than asked
    /// only at logical EOF, and 0 at or past EOF. Does not query the size: the
    /// end of the physical file shows where the last block ends.
    ///
    /// # Errors
    /// [`FormatError::BlockAuthFailed`] (nothing of that block is returned),
    /// [`FormatError::CorruptPhysicalSize`]; I/O errors.
    pub fn read_at<I: PhysicalIo>(
        &mut self,
        io: &mut I,
        buf: &mut [u8],
        off: u64,
    ) -> Result<usize, I::Error> {
        let end = off.saturating_add(buf.len() as u64).min(MAX_LOGICAL_SIZE);
        if off >= end {
            return Ok(0);
        }
        let mut total = 0usize;
        for span in BlockSpans::new(off, (end - off) as usize) {
            let dst = &mut buf[span.buf_pos..span.buf_pos + (span.end - span.start)];
            let plain_len = if self.cache_index == Some(span.index) {
                self.cache_len
            } else {
                let pos = phys_block_offset(span.index);
                let n = io.read_at(&mut self.phys[..], pos)?;
                if n == 0 {
                    break;
                }
                if n < MIN_PHYS_BLOCK_SIZE {
                    return Err(FormatError::CorruptPhysicalSize {
                        physical_len: pos + n as u64,
                    }
                    .into());
                }
                let plain_len = n - BLOCK_OVERHEAD;
                self.check_version(span.index, &self.phys[..n])?;
                if span.start == 0 && dst.len() >= plain_len {
                    // The whole block is wanted: open straight into the
                    // caller's buffer, no copy.
                    self.cipher.open_block(span.index, &self.phys[..n], dst)?;
                    total += plain_len;
                    if plain_len < BLOCK_SIZE {
                        break;
                    }
                    continue;
                }
                self.cache_index = None;
                self.cipher
                    .open_block(span.index, &self.phys[..n], &mut self.cache[..])?;
                self.cache_index = Some(span.index);
                self.cache_len = plain_len;
                plain_len
            };
            if span.start >= plain_len {
                break;
            }
            let k = plain_len.min(span.end) - span.start;
            dst[..k].copy_from_slice(&self.cache[span.start..span.start + k]);
            total += k;
            if plain_len < BLOCK_SIZE {
                break;
            }
        }
        Ok(total)
    }

    /// Write `buf` at logical offset `off`; any offset and length, also past
    /// EOF (the gap becomes sealed zeros). Returns `buf.len()`.
    ///
    /// Blocks whose whole content is replaced are sealed directly; partial
    /// writes of existing blocks are read-modify-write. Every seal takes a
    /// fresh nonce from `nonces`.
    ///
    /// # Errors
    /// [`FormatError::OffsetTooLarge`], authentication errors of blocks that
    /// are read back for read-modify-write; nonce and I/O errors. After an
    /// error the file may be partly written, as with a failed `pwrite`.
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
        let result = self.write_inner(io, nonces, buf, off);
        if result.is_err() {
            self.invalidate_cache();
        }
        result
    }

    fn write_inner<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        buf: &[u8],
        off: u64,
    ) -> Result<usize, I::Error> {
        checked_range_end(off, buf.len())?;
        let mut logical = self.current_len_writing_header(io)?;
        let aligned = block_index(off) * B;
        if aligned > logical {
            self.extend(io, nonces, logical, aligned)?;
            logical = aligned;
        }
        for span in BlockSpans::new(off, buf.len()) {
            let data = &buf[span.buf_pos..span.buf_pos + (span.end - span.start)];
            let existing = block_plain_len(logical, span.index);
            if span.start == 0 && span.end >= existing {
                // Replaces the block's whole content: no read needed.
                self.seal_and_write(io, nonces, span.index, data)?;
                if data.len() < BLOCK_SIZE {
                    // A short last block: likely appended to next (spill
                    // files), so keep it for the next read-modify-write.
                    self.cache[..data.len()].copy_from_slice(data);
                    self.cache_index = Some(span.index);
                    self.cache_len = data.len();
                } else if self.cache_index == Some(span.index) {
                    self.invalidate_cache();
                }
            } else {
                self.load_block(io, span.index, existing)?;
                if span.start > existing {
                    self.cache[existing..span.start].fill(0);
                }
                self.cache[span.start..span.end].copy_from_slice(data);
                let new_len = existing.max(span.end);
                self.cache_len = new_len;
                self.seal_cached_and_write(io, nonces, span.index)?;
            }
        }
        Ok(buf.len())
    }

    /// Truncate or extend to `new_len` logical bytes. Extending writes sealed
    /// zero blocks (no holes); cutting inside a block re-seals that block.
    ///
    /// # Errors
    /// [`FormatError::OffsetTooLarge`]; authentication, nonce and I/O errors.
    pub fn set_len<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        new_len: u64,
    ) -> Result<(), I::Error> {
        let result = self.set_len_inner(io, nonces, new_len);
        if result.is_err() {
            self.invalidate_cache();
        }
        result
    }

    fn set_len_inner<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        new_len: u64,
    ) -> Result<(), I::Error> {
        if new_len > MAX_LOGICAL_SIZE {
            return Err(FormatError::OffsetTooLarge.into());
        }
        let phys_len = io.len()?;
        let logical = physical_to_logical_size(phys_len)?;
        if phys_len == 0 {
            if new_len == 0 {
                return Ok(());
            }
            io.write_all_at(self.cipher.header_bytes(), 0)?;
        }
        if new_len > logical {
            return self.extend(io, nonces, logical, new_len);
        }
        if new_len == logical {
            return Ok(());
        }
        let plan = truncate_plan(new_len)?;
        if let Some((index, plain_len)) = plan.reseal {
            self.load_block(io, index, block_plain_len(logical, index))?;
            self.cache_len = plain_len;
            self.seal_cached_and_write(io, nonces, index)?;
        }
        io.set_len(plan.physical_len)?;
        // Blocks past the new end are gone: a later write there is new.
        let kept = usize::try_from(new_len.div_ceil(B)).unwrap_or(usize::MAX);
        self.ledger.truncate(kept);
        // Only the re-sealed block may be cached.
        if matches!(self.cache_index, Some(i) if i * B >= new_len) {
            self.invalidate_cache();
        }
        Ok(())
    }

    /// One size query; writes the header if the file is still empty.
    fn current_len_writing_header<I: PhysicalIo>(&mut self, io: &mut I) -> Result<u64, I::Error> {
        let phys_len = io.len()?;
        let logical = physical_to_logical_size(phys_len)?;
        if phys_len == 0 {
            io.write_all_at(self.cipher.header_bytes(), 0)?;
        }
        Ok(logical)
    }

    /// Grow the logical file from `from` (its current size) to `to` with zeros.
    fn extend<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        mut from: u64,
        to: u64,
    ) -> Result<(), I::Error> {
        let partial = (from % B) as usize;
        if partial != 0 && from < to {
            // Zero-pad the old partial last block and re-seal it.
            let index = block_index(from);
            self.load_block(io, index, partial)?;
            let new_len = (to - index * B).min(B) as usize;
            self.cache[partial..new_len].fill(0);
            self.cache_len = new_len;
            self.seal_cached_and_write(io, nonces, index)?;
            from = index * B + new_len as u64;
        }
        while from < to {
            let index = block_index(from);
            let len = (to - from).min(B) as usize;
            if self.cache_index == Some(index) {
                self.invalidate_cache();
            }
            self.seal_and_write(io, nonces, index, &ZEROS[..len])?;
            from += len as u64;
        }
        Ok(())
    }

    /// Make the cache hold block `index`, which has `plain_len` bytes (0 = the
    /// block does not exist yet: nothing to read).
    fn load_block<I: PhysicalIo>(
        &mut self,
        io: &mut I,
        index: u64,
        plain_len: usize,
    ) -> Result<(), I::Error> {
        if self.cache_index == Some(index) && self.cache_len == plain_len {
            return Ok(());
        }
        self.cache_index = None;
        if plain_len > 0 {
            let want = plain_len + BLOCK_OVERHEAD;
            let pos = phys_block_offset(index);
            let n = io.read_at(&mut self.phys[..want], pos)?;
            if n != want {
                // The size we were told and the file disagree: changed under us.
                return Err(FormatError::CorruptPhysicalSize {
                    physical_len: pos + n as u64,
                }
                .into());
            }
            self.check_version(index, &self.phys[..want])?;
            self.cipher
                .open_block(index, &self.phys[..want], &mut self.cache[..])?;
        }
        self.cache_index = Some(index);
        self.cache_len = plain_len;
        Ok(())
    }

    /// Seal the first `cache_len` cached bytes as block `cache_index`.
    fn seal_cached_and_write<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        index: u64,
    ) -> Result<(), I::Error> {
        debug_assert_eq!(self.cache_index, Some(index));
        let nonce = nonces.next_nonce()?;
        let n = self.cipher.seal_block(
            index,
            nonce,
            &self.cache[..self.cache_len],
            &mut self.phys[..],
        )?;
        io.write_all_at(&self.phys[..n], phys_block_offset(index))?;
        self.record_version(index, nonce);
        Ok(())
    }

    fn seal_and_write<I: PhysicalIo, N: NonceSource + ?Sized>(
        &mut self,
        io: &mut I,
        nonces: &mut N,
        index: u64,
        plain: &[u8],
    ) -> Result<(), I::Error> {
        let nonce = nonces.next_nonce()?;
        let n = self
            .cipher
            .seal_block(index, nonce, plain, &mut self.phys[..])?;
        io.write_all_at(&self.phys[..n], phys_block_offset(index))?;
        self.record_version(index, nonce);
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
