//! Constants of format v1 and the pure logical <-> physical mapping (FORMAT.md §3, §4).

use crate::error::{FormatError, Result};

/// Magic at physical offset 0.
pub const MAGIC: [u8; 8] = *b"PGEPHCR\0";
/// The only format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Header length in bytes; also the physical offset of block 0.
pub const HEADER_LEN: usize = 64;
/// Length of the authenticated header prefix (everything but the header tag).
pub const HEADER_PREFIX_LEN: usize = 48;
/// Plaintext bytes per block (PostgreSQL's BLCKSZ).
pub const BLOCK_SIZE: usize = 8192;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Physical bytes per block on top of its plaintext.
pub const BLOCK_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Physical length of a full block.
pub const PHYS_BLOCK_SIZE: usize = BLOCK_SIZE + BLOCK_OVERHEAD;
/// Physical length of the smallest block (1 plaintext byte).
pub const MIN_PHYS_BLOCK_SIZE: usize = 1 + BLOCK_OVERHEAD;
/// Length of a block's AAD: header prefix || u64 LE block index.
pub const AAD_LEN: usize = HEADER_PREFIX_LEN + 8;

const B: u64 = BLOCK_SIZE as u64;
const PB: u64 = PHYS_BLOCK_SIZE as u64;
const H: u64 = HEADER_LEN as u64;

/// Number of blocks that fit below `i64::MAX` physical bytes (off_t is signed).
pub const MAX_BLOCKS: u64 = (i64::MAX as u64 - H) / PB;
/// Largest supported logical size (a multiple of `BLOCK_SIZE`).
pub const MAX_LOGICAL_SIZE: u64 = MAX_BLOCKS * B;

/// Physical offset of block `index`. Saturates for indexes `>= MAX_BLOCKS`,
/// which callers reject beforehand via `MAX_LOGICAL_SIZE`.
#[inline]
#[must_use]
pub const fn phys_block_offset(index: u64) -> u64 {
    H.saturating_add(index.saturating_mul(PB))
}

/// Index of the block holding logical byte `offset`.
#[inline]
#[must_use]
pub const fn block_index(offset: u64) -> u64 {
    offset / B
}

/// Position of logical byte `offset` inside its block.
#[inline]
#[must_use]
pub const fn offset_in_block(offset: u64) -> usize {
    (offset % B) as usize
}

/// Physical length of a block holding `plain_len` bytes.
#[inline]
#[must_use]
pub const fn phys_block_len(plain_len: usize) -> usize {
    plain_len + BLOCK_OVERHEAD
}

/// Physical size of a file with `logical` bytes (header included; 0 -> 64).
///
/// # Errors
/// [`FormatError::OffsetTooLarge`] above [`MAX_LOGICAL_SIZE`].
pub const fn logical_to_physical_size(logical: u64) -> Result<u64> {
    if logical > MAX_LOGICAL_SIZE {
        return Err(FormatError::OffsetTooLarge);
    }
    let full = logical / B;
    let rem = logical % B;
    let tail = if rem > 0 {
        rem + BLOCK_OVERHEAD as u64
    } else {
        0
    };
    Ok(H + full * PB + tail)
}

/// Logical size of a file whose physical size is `physical`.
///
/// A 0-byte file is a created-but-unwritten file of logical size 0.
///
/// # Errors
/// [`FormatError::TruncatedHeader`] for 1..=63 bytes,
/// [`FormatError::CorruptPhysicalSize`] when 1..=28 bytes follow the full blocks.
pub const fn physical_to_logical_size(physical: u64) -> Result<u64> {
    if physical == 0 {
        return Ok(0);
    }
    if physical < H {
        return Err(FormatError::TruncatedHeader {
            physical_len: physical,
        });
    }
    let body = physical - H;
    let full = body / PB;
    let rem = body % PB;
    if rem == 0 {
        Ok(full * B)
    } else if rem < MIN_PHYS_BLOCK_SIZE as u64 {
        Err(FormatError::CorruptPhysicalSize {
            physical_len: physical,
        })
    } else {
        Ok(full * B + rem - BLOCK_OVERHEAD as u64)
    }
}

/// Plaintext length of block `index` in a file of `logical_len` bytes
/// (0 when the block lies wholly past EOF).
#[inline]
#[must_use]
pub const fn block_plain_len(logical_len: u64, index: u64) -> usize {
    let start = index.saturating_mul(B);
    if logical_len <= start {
        0
    } else if logical_len - start >= B {
        BLOCK_SIZE
    } else {
        (logical_len - start) as usize
    }
}

/// What a truncate (or extend) to a new logical size means physically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatePlan {
    /// Physical size to cut the file to after re-sealing.
    pub physical_len: u64,
    /// `Some((index, plain_len))` if the new end falls inside block `index`,
    /// which must then be re-sealed with its first `plain_len` bytes.
    pub reseal: Option<(u64, usize)>,
}

/// Plan a shrinking truncate to `new_len` logical bytes (FORMAT.md §7).
///
/// # Errors
/// [`FormatError::OffsetTooLarge`] above [`MAX_LOGICAL_SIZE`].
pub const fn truncate_plan(new_len: u64) -> Result<TruncatePlan> {
    let physical_len = match logical_to_physical_size(new_len) {
        Ok(p) => p,
        Err(e) => return Err(e),
    };
    let rem = new_len % B;
    let reseal = if rem == 0 {
        None
    } else {
        Some((new_len / B, rem as usize))
    };
    Ok(TruncatePlan {
        physical_len,
        reseal,
    })
}

/// One block's share of a logical byte range: used to split reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan {
    /// Block index.
    pub index: u64,
    /// Start of the span inside the block.
    pub start: usize,
    /// End (exclusive) of the span inside the block.
    pub end: usize,
    /// Position of the span's first byte within the caller's buffer.
    pub buf_pos: usize,
}

/// Iterator over the [`BlockSpan`]s of the logical range `[offset, offset + len)`.
#[derive(Debug, Clone)]
pub struct BlockSpans {
    pos: u64,
    end: u64,
    buf_pos: usize,
}

impl BlockSpans {
    /// Split `[offset, offset + len)`; the caller has checked that the range
    /// ends at or below [`MAX_LOGICAL_SIZE`].
    #[must_use]
    pub const fn new(offset: u64, len: usize) -> Self {
        Self {
            pos: offset,
            end: offset.saturating_add(len as u64),
            buf_pos: 0,
        }
    }
}

impl Iterator for BlockSpans {
    type Item = BlockSpan;

    fn next(&mut self) -> Option<BlockSpan> {
        if self.pos >= self.end {
            return None;
        }
        let index = block_index(self.pos);
        let start = offset_in_block(self.pos);
        let avail = (BLOCK_SIZE - start) as u64;
        let take = avail.min(self.end - self.pos) as usize;
        let span = BlockSpan {
            index,
            start,
            end: start + take,
            buf_pos: self.buf_pos,
        };
        self.pos += take as u64;
        self.buf_pos += take;
        Some(span)
    }
}

/// Check that `[offset, offset + len)` lies within the supported logical range
/// and return its end.
///
/// # Errors
/// [`FormatError::OffsetTooLarge`].
pub fn checked_range_end(offset: u64, len: usize) -> Result<u64> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= MAX_LOGICAL_SIZE => Ok(end),
        _ => Err(FormatError::OffsetTooLarge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_sizes_from_format_md() {
        assert_eq!(logical_to_physical_size(0), Ok(64));
        assert_eq!(logical_to_physical_size(1), Ok(93));
        assert_eq!(logical_to_physical_size(8192), Ok(8284));
        assert_eq!(logical_to_physical_size(8193), Ok(8313));
        assert_eq!(logical_to_physical_size(1 << 30), Ok(1_077_411_904));
        assert_eq!(physical_to_logical_size(0), Ok(0));
        assert_eq!(physical_to_logical_size(64), Ok(0));
        assert_eq!(physical_to_logical_size(93), Ok(1));
        assert_eq!(physical_to_logical_size(8284), Ok(8192));
        assert_eq!(physical_to_logical_size(8313), Ok(8193));
        assert_eq!(physical_to_logical_size(1_077_411_904), Ok(1 << 30));
    }

    #[test]
    fn size_mapping_round_trips_and_rejects_impossible_sizes() {
        for l in (0..5 * 8192 + 3).chain([MAX_LOGICAL_SIZE - 1, MAX_LOGICAL_SIZE]) {
            let p = logical_to_physical_size(l).unwrap();
            assert_eq!(physical_to_logical_size(p), Ok(l), "logical {l}");
        }
        for p in 1..64 {
            assert_eq!(
                physical_to_logical_size(p),
                Err(FormatError::TruncatedHeader { physical_len: p })
            );
        }
        for blocks in [0u64, 1, 7] {
            for tail in 1..=28u64 {
                let p = 64 + blocks * 8220 + tail;
                assert_eq!(
                    physical_to_logical_size(p),
                    Err(FormatError::CorruptPhysicalSize { physical_len: p })
                );
            }
        }
        assert_eq!(
            logical_to_physical_size(MAX_LOGICAL_SIZE + 1),
            Err(FormatError::OffsetTooLarge)
        );
        assert!(logical_to_physical_size(MAX_LOGICAL_SIZE).unwrap() <= i64::MAX as u64);
    }

    #[test]
    fn offsets() {
        assert_eq!(phys_block_offset(0), 64);
        assert_eq!(phys_block_offset(1), 64 + 8220);
        assert_eq!(phys_block_offset(u64::MAX), u64::MAX);
        assert_eq!(block_index(8191), 0);
        assert_eq!(block_index(8192), 1);
        assert_eq!(offset_in_block(8193), 1);
        assert_eq!(block_plain_len(0, 0), 0);
        assert_eq!(block_plain_len(1, 0), 1);
        assert_eq!(block_plain_len(8193, 0), 8192);
        assert_eq!(block_plain_len(8193, 1), 1);
        assert_eq!(block_plain_len(8193, 2), 0);
        assert_eq!(phys_block_len(8192), PHYS_BLOCK_SIZE);
    }

    #[test]
    fn truncate_plans() {
        assert_eq!(
            truncate_plan(0),
            Ok(TruncatePlan {
                physical_len: 64,
                reseal: None
            })
        );
        assert_eq!(
            truncate_plan(8193),
            Ok(TruncatePlan {
                physical_len: 8313,
                reseal: Some((1, 1))
            })
        );
        assert_eq!(
            truncate_plan(16384),
            Ok(TruncatePlan {
                physical_len: 64 + 2 * 8220,
                reseal: None
            })
        );
        assert_eq!(truncate_plan(u64::MAX), Err(FormatError::OffsetTooLarge));
    }

    #[test]
    fn spans_cover_the_range_exactly() {
        let spans: Vec<_> = BlockSpans::new(8000, 9000).collect();
        assert_eq!(
            spans,
            vec![
                BlockSpan {
                    index: 0,
                    start: 8000,
                    end: 8192,
                    buf_pos: 0
                },
                BlockSpan {
                    index: 1,
                    start: 0,
                    end: 8192,
                    buf_pos: 192
                },
                BlockSpan {
                    index: 2,
                    start: 0,
                    end: 616,
                    buf_pos: 8384
                },
            ]
        );
        assert_eq!(BlockSpans::new(5, 0).count(), 0);
        assert_eq!(checked_range_end(1, 2), Ok(3));
        assert_eq!(
            checked_range_end(u64::MAX, 1),
            Err(FormatError::OffsetTooLarge)
        );
        assert_eq!(
            checked_range_end(MAX_LOGICAL_SIZE, 1),
            Err(FormatError::OffsetTooLarge)
        );
        assert_eq!(checked_range_end(MAX_LOGICAL_SIZE, 0), Ok(MAX_LOGICAL_SIZE));
    }
}
