//! The metadata page of a group (FORMAT.md §3.2): byte offsets and plain
//! accessors on an 8 KiB page image. The MAC lives in `block.rs`.

use crate::layout::{
    BLOCK_SIZE, ENTRY_LEN, GROUP_BLOCKS, HEADER_LEN, NONCE_LEN, PAGE_SIZE, TAG_LEN,
};

/// A metadata page image.
pub type Page = [u8; PAGE_SIZE];

/// Offset of the group index (u64).
pub const OFF_GROUP: usize = HEADER_LEN;
/// Offset of the block count (u16).
pub const OFF_COUNT: usize = 72;
/// Offset of the last block's length (u16).
pub const OFF_LAST_LEN: usize = 74;
/// Offset of the flags byte.
pub const OFF_FLAGS: usize = 76;
/// Offset of entry 0.
pub const OFF_ENTRIES: usize = 128;
/// End of the entries.
pub const END_ENTRIES: usize = OFF_ENTRIES + GROUP_BLOCKS * ENTRY_LEN;
/// Offset of the previous-version record (FORMAT.md §3.2, §14): which
/// entry it belongs to (u16, `j + 1`; 0 = none), that block's previous
/// nonce and tag, and the first bytes of its new ciphertext.
pub const OFF_PREVIOUS: usize = END_ENTRIES;
/// Bytes of the new ciphertext the record keeps.
pub const HEAD_LEN: usize = 8;
/// End of the previous-version record.
pub const END_PREVIOUS: usize = OFF_PREVIOUS + 2 + ENTRY_LEN + HEAD_LEN;

/// A previous-version record (FORMAT.md §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    /// The entry (block `256*g + entry`) it belongs to.
    pub entry: usize,
    /// The block's nonce before its latest write ahead.
    pub nonce: [u8; NONCE_LEN],
    /// The block's tag before its latest write ahead.
    pub tag: [u8; TAG_LEN],
    /// The first `HEAD_LEN` bytes (zero-padded) of the ciphertext that write
    /// ahead was about to write: on disk iff the data write happened.
    pub new_head: [u8; HEAD_LEN],
}
/// Offset of the MAC nonce; everything before it is the MAC's AAD.
pub const OFF_MAC_NONCE: usize = PAGE_SIZE - NONCE_LEN - TAG_LEN;
/// Offset of the MAC tag.
pub const OFF_MAC_TAG: usize = PAGE_SIZE - TAG_LEN;
/// `flags` bit: this is the file's last group.
pub const FLAG_FINAL: u8 = 1;

const _: () = assert!(END_PREVIOUS <= OFF_MAC_NONCE);

/// Bytes per bit of a [`Touched`] mask: a page is 64 chunks.
pub const CHUNK_LEN: usize = PAGE_SIZE / 64;

/// Which 128-byte chunks of a page a change wrote (bit `i`: bytes
/// `128*i..128*(i+1)`), so that a pool publish copies only those
/// (FORMAT.md §8.3). A writer that drops one would publish a page the pool
/// does not hold: every mutator here returns the chunks it wrote.
#[must_use = "a change's chunks must be recorded for the page pool"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Touched(pub u64);

impl Touched {
    /// Every chunk.
    pub const ALL: Self = Self(u64::MAX);

    /// The chunks that hold bytes `start..end`.
    pub const fn range(start: usize, end: usize) -> Self {
        if start >= end {
            return Self(0);
        }
        let first = start / CHUNK_LEN;
        let last = (end - 1) / CHUNK_LEN;
        let upto = if last >= 63 {
            u64::MAX
        } else {
            (1u64 << (last + 1)) - 1
        };
        Self(upto & !((1u64 << first) - 1))
    }

    /// Both.
    pub const fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// The record of a group, as stored in its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupState {
    /// Data blocks in the group, 0..=256.
    pub count: u16,
    /// Plaintext length of its last block (0 iff `count` = 0).
    pub last_len: u16,
    /// The file's last group.
    pub final_group: bool,
}

impl GroupState {
    /// One of the three valid states of FORMAT.md §3.2.
    #[must_use]
    pub const fn is_valid(&self, group: u64) -> bool {
        let full = GROUP_BLOCKS as u16;
        let b = BLOCK_SIZE as u16;
        if !self.final_group {
            self.count == full && self.last_len == b
        } else if self.count == 0 {
            group == 0 && self.last_len == 0
        } else {
            self.count <= full && self.last_len >= 1 && self.last_len <= b
        }
    }

    /// As a `(count, last_len, final)` tuple, for comparisons.
    #[must_use]
    pub const fn tuple(&self) -> (u16, u16, bool) {
        (self.count, self.last_len, self.final_group)
    }
}

/// A fresh page for `group`: the header copy, the group index, everything
/// else zero (count 0, not final).
pub fn init(page: &mut Page, header: &[u8; HEADER_LEN], group: u64) -> Touched {
    page.fill(0);
    page[..HEADER_LEN].copy_from_slice(header);
    page[OFF_GROUP..OFF_GROUP + 8].copy_from_slice(&group.to_le_bytes());
    Touched::ALL
}

/// The group index stored in the page.
#[must_use]
pub fn group(page: &Page) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&page[OFF_GROUP..OFF_GROUP + 8]);
    u64::from_le_bytes(b)
}

/// The stored record; `None` if the flags byte has unknown bits.
#[must_use]
pub fn state(page: &Page) -> Option<GroupState> {
    let flags = page[OFF_FLAGS];
    if flags & !FLAG_FINAL != 0 {
        return None;
    }
    Some(GroupState {
        count: u16::from_le_bytes([page[OFF_COUNT], page[OFF_COUNT + 1]]),
        last_len: u16::from_le_bytes([page[OFF_LAST_LEN], page[OFF_LAST_LEN + 1]]),
        final_group: flags & FLAG_FINAL != 0,
    })
}

/// Store a record; zero the entries at and past its count (so that the page
/// holds nothing about blocks that no longer exist). Precondition, kept by
/// every writer of this crate: no entry is set past the larger of the old
/// and the new count (checked in debug builds).
pub fn set_state(page: &mut Page, s: GroupState) -> Touched {
    // Entries past the stored count are zero in every page this code
    // builds or verifies (a fresh page is all zero, and an entry past the
    // count is only set right before the count grows over it): only the
    // entries a smaller count drops need zeroing, not the whole tail on
    // every append (a memset of up to 7 KiB per block written).
    let old = usize::from(u16::from_le_bytes([page[OFF_COUNT], page[OFF_COUNT + 1]]));
    let old_used = if old <= GROUP_BLOCKS {
        OFF_ENTRIES + old * ENTRY_LEN
    } else {
        END_ENTRIES
    };
    debug_assert!(
        page[old_used
            .max(OFF_ENTRIES + usize::from(s.count) * ENTRY_LEN)
            .min(END_ENTRIES)..END_ENTRIES]
            .iter()
            .all(|&b| b == 0),
        "an entry is set past both the old and the new count"
    );
    page[OFF_COUNT..OFF_COUNT + 2].copy_from_slice(&s.count.to_le_bytes());
    page[OFF_LAST_LEN..OFF_LAST_LEN + 2].copy_from_slice(&s.last_len.to_le_bytes());
    page[OFF_FLAGS] = if s.final_group { FLAG_FINAL } else { 0 };
    let mut touched = Touched::range(OFF_COUNT, OFF_FLAGS + 1);
    let used = OFF_ENTRIES + usize::from(s.count) * ENTRY_LEN;
    if used < old_used {
        page[used..old_used].fill(0);
        touched = touched.or(Touched::range(used, old_used));
    }
    if previous(page).is_some_and(|p| p.entry >= usize::from(s.count)) {
        touched = touched.or(clear_previous(page));
    }
    touched
}

/// The previous-version record, if any (and if it names an entry): the
/// nonce and tag block `256*g + entry` had before its latest write ahead,
/// whose data write may not have happened (FORMAT.md §14).
#[must_use]
pub fn previous(page: &Page) -> Option<Previous> {
    let which = usize::from(u16::from_le_bytes([
        page[OFF_PREVIOUS],
        page[OFF_PREVIOUS + 1],
    ]));
    if which == 0 || which > GROUP_BLOCKS {
        return None;
    }
    let at = OFF_PREVIOUS + 2;
    let mut p = Previous {
        entry: which - 1,
        nonce: [0; NONCE_LEN],
        tag: [0; TAG_LEN],
        new_head: [0; HEAD_LEN],
    };
    p.nonce.copy_from_slice(&page[at..at + NONCE_LEN]);
    p.tag.copy_from_slice(&page[at + NONCE_LEN..at + ENTRY_LEN]);
    p.new_head
        .copy_from_slice(&page[at + ENTRY_LEN..at + ENTRY_LEN + HEAD_LEN]);
    Some(p)
}

/// Record entry `j`'s current nonce and tag as its previous version, and
/// the head of the ciphertext about to be written (`new_ct`, its first
/// `HEAD_LEN` bytes, zero-padded).
pub fn keep_previous(page: &mut Page, j: usize, new_ct: &[u8]) -> Touched {
    debug_assert!(j < GROUP_BLOCKS);
    let (nonce, tag) = entry(page, j);
    page[OFF_PREVIOUS..OFF_PREVIOUS + 2].copy_from_slice(&(j as u16 + 1).to_le_bytes());
    let at = OFF_PREVIOUS + 2;
    page[at..at + NONCE_LEN].copy_from_slice(&nonce);
    page[at + NONCE_LEN..at + ENTRY_LEN].copy_from_slice(&tag);
    page[at + ENTRY_LEN..END_PREVIOUS].copy_from_slice(&head_of(new_ct));
    Touched::range(OFF_PREVIOUS, END_PREVIOUS)
}

/// The first [`HEAD_LEN`] bytes of a block's ciphertext, zero-padded: what a
/// previous-version record and a kept block remember of a version.
#[must_use]
pub fn head_of(ct: &[u8]) -> [u8; HEAD_LEN] {
    let mut h = [0u8; HEAD_LEN];
    let n = ct.len().min(HEAD_LEN);
    h[..n].copy_from_slice(&ct[..n]);
    h
}

/// Store entry `j` for a write that is not a write ahead: a record naming
/// `j` goes with the version it described (it could no longer tell which
/// version is on disk).
pub fn replace_entry(
    page: &mut Page,
    j: usize,
    nonce: &[u8; NONCE_LEN],
    tag: &[u8; TAG_LEN],
) -> Touched {
    let touched = set_entry(page, j, nonce, tag);
    if previous(page).is_some_and(|p| p.entry == j) {
        return touched.or(clear_previous(page));
    }
    touched
}

/// Drop the previous-version record.
pub fn clear_previous(page: &mut Page) -> Touched {
    page[OFF_PREVIOUS..END_PREVIOUS].fill(0);
    Touched::range(OFF_PREVIOUS, END_PREVIOUS)
}

/// Entry `j`: nonce and tag of the group's `j`-th data block.
#[must_use]
pub fn entry(page: &Page, j: usize) -> ([u8; NONCE_LEN], [u8; TAG_LEN]) {
    let at = OFF_ENTRIES + j * ENTRY_LEN;
    let mut nonce = [0u8; NONCE_LEN];
    let mut tag = [0u8; TAG_LEN];
    nonce.copy_from_slice(&page[at..at + NONCE_LEN]);
    tag.copy_from_slice(&page[at + NONCE_LEN..at + ENTRY_LEN]);
    (nonce, tag)
}

/// Store entry `j`.
pub fn set_entry(
    page: &mut Page,
    j: usize,
    nonce: &[u8; NONCE_LEN],
    tag: &[u8; TAG_LEN],
) -> Touched {
    let at = OFF_ENTRIES + j * ENTRY_LEN;
    page[at..at + NONCE_LEN].copy_from_slice(nonce);
    page[at + NONCE_LEN..at + ENTRY_LEN].copy_from_slice(tag);
    Touched::range(at, at + ENTRY_LEN)
}

/// The stored MAC tag: the page's digest (FORMAT.md §5.5).
#[must_use]
pub fn mac_tag(page: &Page) -> [u8; TAG_LEN] {
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&page[OFF_MAC_TAG..]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apply `f` to `p` and check that every byte it changed lies in the
    /// chunks it reports.
    fn checked(p: &mut Page, f: impl FnOnce(&mut Page) -> Touched) {
        let before = *p;
        let touched = f(p);
        for (i, (a, b)) in before.iter().zip(p.iter()).enumerate() {
            if a != b {
                assert!(
                    touched.0 & (1 << (i / CHUNK_LEN)) != 0,
                    "byte {i} changed outside the reported chunks {:#x}",
                    touched.0
                );
            }
        }
    }

    #[test]
    fn touched_ranges() {
        assert_eq!(Touched::range(0, 0), Touched(0));
        assert_eq!(Touched::range(0, 1), Touched(1));
        assert_eq!(Touched::range(127, 129), Touched(0b11));
        assert_eq!(Touched::range(128, 256), Touched(0b10));
        assert_eq!(Touched::range(OFF_MAC_NONCE, PAGE_SIZE), Touched(1 << 63));
        assert_eq!(Touched::range(0, PAGE_SIZE), Touched::ALL);
    }

    #[test]
    fn control_checked_catches_an_unreported_change() {
        let mut p = [0u8; PAGE_SIZE];
        let missed = std::panic::catch_unwind(move || {
            checked(&mut p, |p| {
                p[OFF_MAC_TAG] = 1;
                Touched::range(0, 64)
            })
        });
        assert!(missed.is_err());
    }

    #[test]
    fn layout_matches_format_md() {
        assert_eq!(END_ENTRIES, 7296);
        assert_eq!((OFF_PREVIOUS, END_PREVIOUS), (7296, 7334));
        assert_eq!(OFF_MAC_NONCE, 8164);
        assert_eq!(OFF_MAC_TAG, 8176);
    }

    #[test]
    fn accessors_round_trip_and_set_state_clears_stale_entries() {
        let mut p = [0xAAu8; PAGE_SIZE];
        checked(&mut p, |p| init(p, &[7; HEADER_LEN], 5));
        assert_eq!(group(&p), 5);
        assert_eq!(&p[..64], &[7; 64]);
        assert!(p[64 + 8..].iter().all(|&b| b == 0));
        for j in 0..3 {
            checked(&mut p, |p| {
                set_entry(p, j, &[j as u8 + 1; 12], &[0x10 + j as u8; 16])
            });
        }
        let s = GroupState {
            count: 3,
            last_len: 100,
            final_group: true,
        };
        checked(&mut p, |p| set_state(p, s));
        assert_eq!(state(&p), Some(s));
        assert_eq!(entry(&p, 2), ([3; 12], [0x12; 16]));
        checked(&mut p, |p| set_state(p, GroupState { count: 1, ..s }));
        assert_eq!(entry(&p, 1), ([0; 12], [0; 16]));
        assert_eq!(entry(&p, 0), ([1; 12], [0x10; 16]));
        p[OFF_FLAGS] = 2;
        assert_eq!(state(&p), None);
    }

    #[test]
    fn set_state_zeroes_exactly_the_entries_a_smaller_count_drops() {
        let mut p = [0u8; PAGE_SIZE];
        checked(&mut p, |p| init(p, &[7; HEADER_LEN], 0));
        let s = |count| GroupState {
            count,
            last_len: 10,
            final_group: true,
        };
        // Appends: each entry set right before the count grows over it.
        for j in 0..200usize {
            checked(&mut p, |p| {
                set_entry(p, j, &[1 + (j % 250) as u8; 12], &[2; 16])
            });
            checked(&mut p, |p| set_state(p, s(j as u16 + 1)));
        }
        assert!(p[OFF_ENTRIES + 200 * ENTRY_LEN..END_ENTRIES]
            .iter()
            .all(|&b| b == 0));
        // A cut to 50 entries zeroes 50..200; 0..50 are kept.
        checked(&mut p, |p| set_state(p, s(50)));
        assert!(p[OFF_ENTRIES + 50 * ENTRY_LEN..END_ENTRIES]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(entry(&p, 49), ([50; 12], [2; 16]));
        // Growing again over zeroed entries leaves them zero until set.
        checked(&mut p, |p| set_state(p, s(60)));
        assert_eq!(entry(&p, 55), ([0; 12], [0; 16]));
        // A count field that is not a valid count (not a page this code
        // built): everything past the new count is zeroed.
        checked(&mut p, |p| set_entry(p, 255, &[9; 12], &[9; 16]));
        p[OFF_COUNT..OFF_COUNT + 2].copy_from_slice(&1000u16.to_le_bytes());
        checked(&mut p, |p| set_state(p, s(60)));
        assert_eq!(entry(&p, 255), ([0; 12], [0; 16]));
        assert_eq!(entry(&p, 49), ([50; 12], [2; 16]));
    }

    #[test]
    fn previous_record_round_trips_and_goes_with_its_entry() {
        let mut p = [0u8; PAGE_SIZE];
        checked(&mut p, |p| init(p, &[7; HEADER_LEN], 0));
        assert_eq!(previous(&p), None, "a fresh page has none");
        checked(&mut p, |p| set_entry(p, 2, &[3; 12], &[4; 16]));
        checked(&mut p, |p| keep_previous(p, 2, &[9, 8, 7]));
        checked(&mut p, |p| set_entry(p, 2, &[5; 12], &[6; 16]));
        let want = Previous {
            entry: 2,
            nonce: [3; 12],
            tag: [4; 16],
            new_head: [9, 8, 7, 0, 0, 0, 0, 0],
        };
        assert_eq!(previous(&p), Some(want));
        assert_eq!(entry(&p, 2), ([5; 12], [6; 16]));
        checked(&mut p, |p| keep_previous(p, 2, &[1; 100]));
        assert_eq!(previous(&p).unwrap().new_head, [1; 8]);
        assert_eq!(previous(&p).unwrap().nonce, [5; 12]);
        let s = GroupState {
            count: 3,
            last_len: 100,
            final_group: true,
        };
        checked(&mut p, |p| set_state(p, s));
        assert_eq!(
            previous(&p).map(|r| r.entry),
            Some(2),
            "entry 2 still exists"
        );
        checked(&mut p, |p| set_state(p, GroupState { count: 2, ..s }));
        assert_eq!(previous(&p), None, "cut with its entry");
        // Out-of-range indexes name nothing.
        p[OFF_PREVIOUS..OFF_PREVIOUS + 2].copy_from_slice(&257u16.to_le_bytes());
        assert_eq!(previous(&p), None);
        checked(&mut p, clear_previous);
        assert!(p[OFF_PREVIOUS..END_PREVIOUS].iter().all(|&b| b == 0));
    }

    #[test]
    fn valid_states() {
        let st = |count, last_len, final_group| GroupState {
            count,
            last_len,
            final_group,
        };
        assert!(st(0, 0, true).is_valid(0));
        assert!(!st(0, 0, true).is_valid(1));
        assert!(st(256, 8192, false).is_valid(3));
        assert!(!st(255, 8192, false).is_valid(3));
        assert!(!st(256, 100, false).is_valid(3));
        assert!(st(1, 1, true).is_valid(3));
        assert!(st(256, 8192, true).is_valid(3));
        assert!(!st(257, 8192, true).is_valid(3));
        assert!(!st(3, 0, true).is_valid(0));
        assert!(!st(3, 8193, true).is_valid(0));
    }
}
