//! Constants of format v2 and the pure logical <-> physical mapping
//! (FORMAT.md §3, §4).

use crate::error::{FormatError, Result};

/// Magic at physical offset 0 (unchanged from v1, FORMAT.md §13).
pub const MAGIC: [u8; 8] = *b"PGEPHCR\0";
/// The only format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 2;
/// Header length in bytes.
pub const HEADER_LEN: usize = 64;
/// Length of the authenticated header prefix (everything but the header tag).
pub const HEADER_PREFIX_LEN: usize = 48;
/// Plaintext bytes per block (PostgreSQL's BLCKSZ).
pub const BLOCK_SIZE: usize = 8192;
/// Physical page size: data blocks and metadata pages are both one page.
pub const PAGE_SIZE: usize = 8192;
/// Data blocks per group (one metadata page each).
pub const GROUP_BLOCKS: usize = 256;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// One metadata entry: nonce || tag of a data block.
pub const ENTRY_LEN: usize = NONCE_LEN + TAG_LEN;
/// Length of a data block's AAD: header prefix || u64 LE block index.
pub const AAD_LEN: usize = HEADER_PREFIX_LEN + 8;

const B: u64 = BLOCK_SIZE as u64;
const P: u64 = PAGE_SIZE as u64;
const G: u64 = GROUP_BLOCKS as u64;
/// Pages per full group: the metadata page and 256 data pages.
const GROUP_PAGES: u64 = G + 1;
/// Physical bytes of a full group.
pub const GROUP_SPAN: u64 = GROUP_PAGES * P;

/// Full groups that fit below `i64::MAX` physical bytes (`off_t` is signed).
pub const MAX_GROUPS: u64 = i64::MAX as u64 / GROUP_SPAN;
/// Largest number of data blocks.
pub const MAX_BLOCKS: u64 = MAX_GROUPS * G;
/// Largest supported logical size (a whole number of full groups).
pub const MAX_LOGICAL_SIZE: u64 = MAX_BLOCKS * B;

/// Physical offset of group `group`'s metadata page. Saturates beyond
/// [`MAX_GROUPS`], which callers reject beforehand.
#[inline]
#[must_use]
pub const fn meta_offset(group: u64) -> u64 {
    group.saturating_mul(GROUP_SPAN)
}

/// Physical offset of data block `index`: page `i + floor(i/256) + 1`.
/// Saturates beyond [`MAX_BLOCKS`], which callers reject beforehand.
#[inline]
#[must_use]
pub const fn data_offset(index: u64) -> u64 {
    index
        .saturating_add(index / G)
        .saturating_add(1)
        .saturating_mul(P)
}

/// Group of data block `index`.
#[inline]
#[must_use]
pub const fn group_of(index: u64) -> u64 {
    index / G
}

/// Position of data block `index` within its group.
#[inline]
#[must_use]
pub const fn slot_in_group(index: u64) -> usize {
    (index % G) as usize
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

/// Number of groups of a file of `logical` bytes (group 0 always exists).
#[inline]
#[must_use]
pub const fn groups_for_len(logical: u64) -> u64 {
    if logical == 0 {
        1
    } else {
        (logical - 1) / B / G + 1
    }
}

/// The state a group must have in a file of `logical` bytes (FORMAT.md §3.2):
/// `(count, last_len, final)`, or `None` if the group lies past the end.
#[must_use]
pub const fn expected_group_state(logical: u64, group: u64) -> Option<(u16, u16, bool)> {
    let groups = groups_for_len(logical);
    if group >= groups {
        None
    } else if group + 1 < groups {
        Some((GROUP_BLOCKS as u16, BLOCK_SIZE as u16, false))
    } else if logical == 0 {
        Some((0, 0, true))
    } else {
        let last = (logical - 1) / B;
        let count = (last % G + 1) as u16;
        let last_len = (logical - last * B) as u16;
        Some((count, last_len, true))
    }
}

/// Physical size of a file with `logical` bytes (0 -> 8192: page 0 only).
///
/// # Errors
/// [`FormatError::OffsetTooLarge`] above [`MAX_LOGICAL_SIZE`].
pub const fn logical_to_physical_size(logical: u64) -> Result<u64> {
    if logical > MAX_LOGICAL_SIZE {
        return Err(FormatError::OffsetTooLarge);
    }
    if logical == 0 {
        return Ok(P);
    }
    let k = (logical - 1) / B;
    Ok(data_offset(k) + (logical - k * B))
}

/// What a physical size says about the file (unauthenticated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhysicalShape {
    /// 0 bytes: not created yet (or lost everything).
    Empty,
    /// Page 0 only: logical size 0 (if group 0 agrees).
    HeaderOnly,
    /// The last data block is `last_block`, holding `last_len` bytes.
    Data {
        /// Index of the last data block.
        last_block: u64,
        /// Its length, 1..=8192.
        last_len: usize,
    },
}

/// Decode a physical size (FORMAT.md §4).
///
/// # Errors
/// [`FormatError::TruncatedHeader`] for 1..=8191 bytes,
/// [`FormatError::CorruptPhysicalSize`] when the file ends inside a metadata
/// page or beyond the largest supported size.
pub const fn physical_shape(physical: u64) -> Result<PhysicalShape> {
    if physical == 0 {
        return Ok(PhysicalShape::Empty);
    }
    if physical < P {
        return Err(FormatError::TruncatedHeader {
            physical_len: physical,
        });
    }
    if physical == P {
        return Ok(PhysicalShape::HeaderOnly);
    }
    let page = (physical - 1) / P;
    let rem = physical - page * P;
    if page.is_multiple_of(GROUP_PAGES) || physical > MAX_GROUPS * GROUP_SPAN {
        return Err(FormatError::CorruptPhysicalSize {
            physical_len: physical,
        });
    }
    Ok(PhysicalShape::Data {
        last_block: page - page / GROUP_PAGES - 1,
        last_len: rem as usize,
    })
}

/// Logical size of a file whose physical size is `physical`: a pure function
/// for cosmetic callers (`stat`). **Unauthenticated**; the authenticated
/// length is `SealedFile::len`. A 0-byte file gives 0.
///
/// # Errors
/// As [`physical_shape`].
pub const fn physical_to_logical_size(physical: u64) -> Result<u64> {
    match physical_shape(physical) {
        Ok(PhysicalShape::Empty | PhysicalShape::HeaderOnly) => Ok(0),
        Ok(PhysicalShape::Data {
            last_block,
            last_len,
        }) => Ok(last_block * B + last_len as u64),
        Err(e) => Err(e),
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
        let table: [(u64, u64); 8] = [
            (0, 8192),
            (1, 8193),
            (8192, 16384),
            (8193, 16385),
            ((1 << 21) - 1, 2_105_343),
            (1 << 21, 2_105_344),
            ((1 << 21) + 1, 2_113_537),
            (1 << 30, 1_077_936_128),
        ];
        for (logical, physical) in table {
            assert_eq!(logical_to_physical_size(logical), Ok(physical), "{logical}");
            assert_eq!(
                physical_to_logical_size(physical),
                Ok(logical),
                "{physical}"
            );
        }
        assert_eq!(physical_to_logical_size(0), Ok(0));
        assert_eq!(groups_for_len(1 << 30), 512);
        assert_eq!(MAX_GROUPS, 4_380_933_489_660);
        assert_eq!(MAX_LOGICAL_SIZE, 9_187_483_429_707_448_320);
    }

    #[test]
    fn offsets_are_8k_aligned_and_interleaved() {
        assert_eq!(meta_offset(0), 0);
        assert_eq!(data_offset(0), 8192);
        assert_eq!(data_offset(255), 256 * 8192);
        assert_eq!(meta_offset(1), 257 * 8192);
        assert_eq!(data_offset(256), 258 * 8192);
        for i in [0u64, 1, 255, 256, 511, 512, 100_000] {
            assert_eq!(data_offset(i) % 8192, 0);
            let g = group_of(i);
            assert!(data_offset(i) > meta_offset(g));
            assert!(data_offset(i) < meta_offset(g + 1));
        }
        assert_eq!(data_offset(u64::MAX), u64::MAX);
        assert_eq!(meta_offset(u64::MAX), u64::MAX);
    }

    #[test]
    fn size_mapping_round_trips_and_rejects_impossible_sizes() {
        let lens = (0..3 * 8192 + 3)
            .chain((255 * 8192 - 3)..(257 * 8192 + 3))
            .chain([MAX_LOGICAL_SIZE - 1, MAX_LOGICAL_SIZE]);
        for l in lens {
            let p = logical_to_physical_size(l).unwrap();
            assert_eq!(physical_to_logical_size(p), Ok(l), "logical {l}");
        }
        for p in 1..8192 {
            assert_eq!(
                physical_to_logical_size(p),
                Err(FormatError::TruncatedHeader { physical_len: p })
            );
        }
        // Ending inside a metadata page of group >= 1.
        for g in [1u64, 2, 511] {
            for tail in [1u64, 100, 8191, 8192] {
                let p = meta_offset(g) + tail;
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
        assert!(physical_to_logical_size(u64::MAX).is_err());
    }

    #[test]
    fn expected_states() {
        assert_eq!(expected_group_state(0, 0), Some((0, 0, true)));
        assert_eq!(expected_group_state(0, 1), None);
        assert_eq!(expected_group_state(1, 0), Some((1, 1, true)));
        assert_eq!(expected_group_state(8192, 0), Some((1, 8192, true)));
        assert_eq!(expected_group_state(1 << 21, 0), Some((256, 8192, true)));
        assert_eq!(
            expected_group_state((1 << 21) + 5, 0),
            Some((256, 8192, false))
        );
        assert_eq!(expected_group_state((1 << 21) + 5, 1), Some((1, 5, true)));
        assert_eq!(groups_for_len(1 << 21), 1);
        assert_eq!(groups_for_len((1 << 21) + 1), 2);
    }

    #[test]
    fn block_lengths_and_spans() {
        assert_eq!(block_plain_len(0, 0), 0);
        assert_eq!(block_plain_len(1, 0), 1);
        assert_eq!(block_plain_len(8193, 0), 8192);
        assert_eq!(block_plain_len(8193, 1), 1);
        assert_eq!(block_plain_len(8193, 2), 0);
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
        assert_eq!(
            checked_range_end(MAX_LOGICAL_SIZE, 1),
            Err(FormatError::OffsetTooLarge)
        );
        assert_eq!(checked_range_end(MAX_LOGICAL_SIZE, 0), Ok(MAX_LOGICAL_SIZE));
    }
}
