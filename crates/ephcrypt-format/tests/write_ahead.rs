//! Write ahead (FORMAT.md §14, `SealedFile::set_write_ahead`): a shared
//! file's in-place rewrite of a call's first block writes the metadata page
//! (new entry, previous version kept) before the data block, so that a
//! writer that dies between the two leaves the block readable under its
//! previous version. Each case has its control without write ahead. Also
//! the other setting of WAL files, `set_fixed_len`.

use ephcrypt_format::{
    data_offset, meta_offset, FormatError, Mode, NonceSequence, SealedFile, VecIo, BLOCK_SIZE,
    PAGE_SIZE,
};

mod dying;
use dying::{
    block, create_sealed, four_blocks, key, name, open_shared, Death, DyingIo, EPOCH, FILE,
};

const B: usize = BLOCK_SIZE;

/// Rewrite `buf` at `off` with a writer that dies at write `dies_at`;
/// returns the physical file left behind and the writes that happened.
fn rewrite_and_die(
    write_ahead: bool,
    buf: &[u8],
    off: u64,
    dies_at: Option<usize>,
    death: Death,
) -> (VecIo, Vec<(bool, u64)>) {
    let mut io = DyingIo::new(four_blocks());
    let mut nonces = NonceSequence::new([2; 8]);
    let mut f = open_shared(&mut io, write_ahead).unwrap();
    io.dies_at = dies_at;
    io.death = death;
    let r = f.write_at(&mut io, &mut nonces, buf, off);
    assert_eq!(r.is_ok(), dies_at.is_none(), "{r:?}");
    (io.inner, io.log)
}

/// Block `i` as a fresh process (crash recovery) reads it.
fn read_block(io: &mut VecIo, i: u64) -> Result<Vec<u8>, FormatError> {
    let mut f = open_shared(io, false)?;
    let mut out = vec![0u8; B];
    let n = f.read_at(io, &mut out, i * B as u64)?;
    assert_eq!(n, B);
    Ok(out)
}

/// The same through the unaligned path (the plaintext cache, `load_block`).
fn read_block_unaligned(io: &mut VecIo, i: u64) -> Result<Vec<u8>, FormatError> {
    let mut f = open_shared(io, false)?;
    let mut out = vec![0u8; B - 10];
    f.read_at(io, &mut out, i * B as u64 + 10)?;
    Ok(out)
}

#[test]
fn a_write_ahead_writes_the_metadata_page_first_and_costs_no_extra_write_for_one_block() {
    let (_, log) = rewrite_and_die(true, &block(9), B as u64, None, Death::Before);
    assert_eq!(
        log,
        vec![(true, meta_offset(0)), (false, data_offset(1))],
        "metadata, then data, nothing else"
    );
    // Control: the usual order.
    let (_, log) = rewrite_and_die(false, &block(9), B as u64, None, Death::Before);
    assert_eq!(log, vec![(false, data_offset(1)), (true, meta_offset(0))]);
    // Three blocks in one call: each written ahead (any of them may hold
    // bytes a caller relies on: a walreceiver re-streaming a segment).
    let three: Vec<u8> = (0..3).flat_map(|i| block(20 + i)).collect();
    let (mut io, log) = rewrite_and_die(true, &three, B as u64, None, Death::Before);
    assert_eq!(
        log,
        vec![
            (true, meta_offset(0)),
            (false, data_offset(1)),
            (true, meta_offset(0)),
            (false, data_offset(2)),
            (true, meta_offset(0)),
            (false, data_offset(3)),
        ]
    );
    for i in 0..3 {
        assert_eq!(read_block(&mut io, 1 + i).unwrap(), block(20 + i as u8));
    }
}

#[test]
fn a_writer_that_dies_between_the_two_writes_leaves_the_previous_version_readable() {
    let new = block(9);
    let (mut io, log) = rewrite_and_die(true, &new, B as u64, Some(1), Death::Before);
    assert_eq!(
        log,
        vec![(true, meta_offset(0))],
        "only the metadata page went out"
    );
    assert_eq!(
        read_block(&mut io, 1).unwrap(),
        block(1),
        "the previous version"
    );
    assert_eq!(read_block_unaligned(&mut io, 1).unwrap(), block(1)[10..]);
    for i in [0u64, 2, 3] {
        assert_eq!(read_block(&mut io, i).unwrap(), block(i as u8), "untouched");
    }
    // The file stays writable: the next rewrite of the same block wins.
    let mut nonces = NonceSequence::new([3; 8]);
    let mut f = open_shared(&mut io, true).unwrap();
    f.write_at(&mut io, &mut nonces, &new, B as u64).unwrap();
    assert_eq!(read_block(&mut io, 1).unwrap(), new);

    // Control: without write ahead the data goes first, and a writer that
    // dies before the metadata page leaves the block unreadable.
    let (mut io, log) = rewrite_and_die(false, &new, B as u64, Some(1), Death::Before);
    assert_eq!(log, vec![(false, data_offset(1))]);
    assert_eq!(
        read_block(&mut io, 1),
        Err(FormatError::BlockAuthFailed { index: 1 })
    );
}

#[test]
fn a_partial_rewrite_of_the_first_block_is_written_ahead_too() {
    // The walreceiver's case: bytes 100.. of block 2 (read-modify-write).
    let (mut io, _) = rewrite_and_die(
        true,
        &[0xEE; 500],
        2 * B as u64 + 100,
        Some(1),
        Death::Before,
    );
    assert_eq!(read_block(&mut io, 2).unwrap(), block(2));
    let (mut io, _) = rewrite_and_die(true, &[0xEE; 500], 2 * B as u64 + 100, None, Death::Before);
    let mut want = block(2);
    want[100..600].fill(0xEE);
    assert_eq!(read_block(&mut io, 2).unwrap(), want);
    // Control.
    let (mut io, _) = rewrite_and_die(
        false,
        &[0xEE; 500],
        2 * B as u64 + 100,
        Some(1),
        Death::Before,
    );
    assert!(read_block(&mut io, 2).is_err());
}

#[test]
fn a_writer_that_dies_before_either_write_changes_nothing() {
    for ahead in [true, false] {
        let (mut io, log) = rewrite_and_die(ahead, &block(9), B as u64, Some(0), Death::Before);
        assert!(log.is_empty());
        assert_eq!(read_block(&mut io, 1).unwrap(), block(1), "ahead = {ahead}");
    }
}

/// The limit that stays (FORMAT.md §14): a data write torn inside itself
/// leaves a block that is neither version.
#[test]
fn a_torn_data_write_is_still_unreadable_never_other_bytes() {
    let (mut io, log) = rewrite_and_die(true, &block(9), B as u64, Some(1), Death::Torn);
    assert_eq!(log, vec![(true, meta_offset(0))]);
    assert_eq!(
        read_block(&mut io, 1),
        Err(FormatError::BlockAuthFailed { index: 1 })
    );
    assert!(read_block_unaligned(&mut io, 1).is_err());
}

/// The previous-version record vouches for one block's one earlier
/// ciphertext, at its own index: it makes no other bytes authentic.
#[test]
fn the_previous_version_authenticates_nothing_but_its_own_block() {
    let before = four_blocks();
    let (mut io, _) = rewrite_and_die(true, &block(9), B as u64, None, Death::Before);
    assert_eq!(read_block(&mut io, 1).unwrap(), block(9));
    let old = |i: u64| {
        let at = data_offset(i) as usize;
        before.data[at..at + B].to_vec()
    };
    // Block 1's previous ciphertext at block 2's place: the record names
    // entry 1, and the AAD binds the index.
    let mut moved = io.clone();
    let at = data_offset(2) as usize;
    moved.data[at..at + B].copy_from_slice(&old(1));
    assert_eq!(
        read_block(&mut moved, 2),
        Err(FormatError::BlockAuthFailed { index: 2 })
    );
    // An older version of block 2 (never recorded as previous) put back
    // after block 2 was rewritten too: refused.
    let mut nonces = NonceSequence::new([4; 8]);
    let mut two = io.clone();
    let mut f = open_shared(&mut two, true).unwrap();
    f.write_at(&mut two, &mut nonces, &block(10), 2 * B as u64)
        .unwrap();
    let mut stale = two.clone();
    stale.data[at..at + B].copy_from_slice(&old(2));
    assert_eq!(
        read_block(&mut stale, 2).unwrap(),
        block(2),
        "the recorded previous version"
    );
    let mut stale1 = two.clone();
    let at1 = data_offset(1) as usize;
    stale1.data[at1..at1 + B].copy_from_slice(&old(1));
    assert_eq!(
        read_block(&mut stale1, 1),
        Err(FormatError::BlockAuthFailed { index: 1 }),
        "block 1's previous version is no longer recorded"
    );
}

#[test]
fn write_ahead_has_no_effect_in_private_mode_or_past_the_end() {
    // Private mode: the setting is ignored (data first, metadata at flush).
    let mut io = DyingIo::new(VecIo::default());
    let mut nonces = NonceSequence::new([5; 8]);
    let mut f = SealedFile::create(
        &mut io,
        &mut nonces,
        &key(),
        &EPOCH,
        &FILE,
        &name(),
        Mode::PRIVATE,
    )
    .unwrap();
    f.set_write_ahead(true);
    io.log.clear();
    f.write_at(&mut io, &mut nonces, &block(1), 0).unwrap();
    f.write_at(&mut io, &mut nonces, &block(2), 0).unwrap();
    f.flush(&mut io, &mut nonces).unwrap();
    assert_eq!(
        io.log,
        vec![
            (false, data_offset(0)),
            (false, data_offset(0)),
            (true, meta_offset(0))
        ]
    );
    // Shared mode, a block that grows (the file's end): no record of a
    // version whose length no longer matches; the usual order.
    let (_, log) = rewrite_and_die(true, &block(9), 4 * B as u64, None, Death::Before);
    assert_eq!(log, vec![(false, data_offset(4)), (true, meta_offset(0))]);
}

/// One rewrite of `buf` at `off` through a fresh handle on `io` (a new
/// writer after a crash), dying at write `dies_at` if given.
fn rewrite_on(io: VecIo, buf: &[u8], off: u64, dies_at: Option<usize>) -> VecIo {
    let mut io = DyingIo::new(io);
    // Every writer its own nonce prefix, as every process has.
    static WRITER: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0x40);
    let prefix = WRITER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut nonces = NonceSequence::new([prefix; 8]);
    let mut f = open_shared(&mut io, true).unwrap();
    io.dies_at = dies_at;
    let r = f.write_at(&mut io, &mut nonces, buf, off);
    assert_eq!(r.is_ok(), dies_at.is_none(), "{r:?}");
    io.inner
}

/// Writers killed one after another at the same block, each between its
/// two writes: the block's on-disk version must stay the one the record
/// keeps, not the version the last writer never wrote.
#[test]
fn repeated_deaths_at_the_same_block_keep_the_version_on_disk() {
    let mut io = four_blocks();
    for round in 0..4u8 {
        io = rewrite_on(io, &block(50 + round), B as u64, Some(1));
        assert_eq!(
            read_block(&mut io, 1).unwrap(),
            block(1),
            "after death {round}"
        );
    }
    // A partial rewrite (read-modify-write) after the deaths merges with
    // the on-disk version.
    io = rewrite_on(io, &[0xAB; 16], B as u64 + 8, None);
    let mut want = block(1);
    want[8..24].fill(0xAB);
    assert_eq!(read_block(&mut io, 1).unwrap(), want);
    // And a completed rewrite after that is what is read.
    io = rewrite_on(io, &block(60), B as u64, None);
    assert_eq!(read_block(&mut io, 1).unwrap(), block(60));
    io = rewrite_on(io, &block(61), B as u64, Some(1));
    assert_eq!(read_block(&mut io, 1).unwrap(), block(60));
}

/// A writer killed mid-rewrite of block 1, then a write ahead of another
/// block of the group: block 1 keeps its on-disk version (its entry is
/// set back to the recorded one before the record moves on).
#[test]
fn a_write_ahead_elsewhere_in_the_group_keeps_an_interrupted_block_readable() {
    let mut io = four_blocks();
    io = rewrite_on(io, &block(70), B as u64, Some(1));
    io = rewrite_on(io, &block(71), 2 * B as u64, None);
    assert_eq!(read_block(&mut io, 1).unwrap(), block(1));
    assert_eq!(read_block(&mut io, 2).unwrap(), block(71));
    // Also when that second writer dies between its writes as well.
    let mut io = four_blocks();
    io = rewrite_on(io, &block(70), B as u64, Some(1));
    io = rewrite_on(io, &block(71), 2 * B as u64, Some(1));
    assert_eq!(read_block(&mut io, 1).unwrap(), block(1));
    assert_eq!(read_block(&mut io, 2).unwrap(), block(2));
    // A completed write ahead is not undone by the next one elsewhere.
    let mut io = four_blocks();
    io = rewrite_on(io, &block(72), B as u64, None);
    io = rewrite_on(io, &block(73), 3 * B as u64, None);
    assert_eq!(read_block(&mut io, 1).unwrap(), block(72));
    assert_eq!(read_block(&mut io, 3).unwrap(), block(73));
}

/// A block named by the record and then rewritten without write ahead (a
/// truncate that cuts inside it re-seals it): the record goes, so that a
/// later write ahead does not mistake the new data for an interrupted write.
#[test]
fn a_block_rewritten_without_write_ahead_drops_the_record() {
    let mut io = four_blocks();
    io = rewrite_on(io, &block(80), B as u64, None); // record names block 1
    let mut nonces = NonceSequence::new([0x77; 8]);
    let mut f = open_shared(&mut io, false).unwrap();
    f.set_len(&mut io, &mut nonces, B as u64 + 4096).unwrap(); // re-seals block 1
    io = rewrite_on(io, &block(83), 0, None); // a write ahead elsewhere
    assert_eq!(read_block(&mut io, 0).unwrap(), block(83));
    let mut f = open_shared(&mut io, false).unwrap();
    let mut out = vec![0u8; 4096];
    assert_eq!(f.read_at(&mut io, &mut out, B as u64).unwrap(), 4096);
    assert_eq!(out, block(80)[..4096]);
}

/// The record's bytes as FORMAT.md §3.2 lays them out, read from the raw
/// page (not through the crate's accessors).
#[test]
fn the_record_bytes_match_format_md() {
    let before = four_blocks();
    assert!(
        before.data[7296..8164].iter().all(|&b| b == 0),
        "no record before any write ahead"
    );
    let (after, _) = rewrite_and_die(true, &block(9), 2 * B as u64, None, Death::Before);
    let page = &after.data[..PAGE_SIZE];
    let old_entry = &before.data[128 + 2 * 28..128 + 3 * 28];
    let data = &after.data[data_offset(2) as usize..];
    assert_eq!(&page[7296..7298], &3u16.to_le_bytes(), "entry + 1");
    assert_eq!(&page[7298..7326], old_entry, "previous nonce || tag");
    assert_eq!(&page[7326..7334], &data[..8], "head of the new ciphertext");
    assert!(
        page[7334..8164].iter().all(|&b| b == 0),
        "the rest stays zero"
    );
    assert_ne!(
        &page[128 + 2 * 28..128 + 3 * 28],
        old_entry,
        "entry 2 is new"
    );
}

/// A handle's second write ahead in a page it left as it was does not read
/// the block's head back (its own first one completed); a fresh handle
/// does (control), and so does the same handle once another wrote the page.
#[test]
fn a_handle_trusts_its_own_completed_write_ahead() {
    let mut io = DyingIo::new(four_blocks());
    let mut nonces = NonceSequence::new([0x61; 8]);
    let mut f = open_shared(&mut io, true).unwrap();
    f.write_at(&mut io, &mut nonces, &block(1), B as u64)
        .unwrap();
    assert_eq!(io.head_reads, 0, "no record yet: nothing to check");
    f.write_at(&mut io, &mut nonces, &block(2), B as u64)
        .unwrap();
    f.write_at(&mut io, &mut nonces, &block(3), 2 * B as u64)
        .unwrap();
    assert_eq!(io.head_reads, 0, "its own record");
    // Control: another handle (another process) must check.
    let mut nonces2 = NonceSequence::new([0x62; 8]);
    let mut g = open_shared(&mut io, true).unwrap();
    g.write_at(&mut io, &mut nonces2, &block(4), B as u64)
        .unwrap();
    assert_eq!(io.head_reads, 1);
    // ... and so must the first handle now: the page is not as it left it.
    f.write_at(&mut io, &mut nonces, &block(5), B as u64)
        .unwrap();
    assert_eq!(io.head_reads, 2);
    let mut vio = io.inner;
    assert_eq!(read_block(&mut vio, 1).unwrap(), block(5));
    assert_eq!(read_block(&mut vio, 2).unwrap(), block(3));
}

/// `set_fixed_len`: calls after the first ask no size and revalidate no
/// last-group page; without it every call does both (control). A file cut
/// behind the handle's back gives errors past the cut, never other bytes.
#[test]
fn a_fixed_length_handle_asks_the_size_once_and_fails_closed_when_cut() {
    // 300 blocks: two groups; the block read (block 1) is in group 0, the
    // length is established from group 1.
    let mut io = VecIo::default();
    let all: Vec<u8> = (0..300).flat_map(|i| block(i as u8)).collect();
    create_sealed(&mut io, &all);
    let mut nonces = NonceSequence::new([0x63; 8]);
    let reads = |fixed: bool| {
        let mut io = DyingIo::new(io.clone());
        let mut f = open_shared(&mut io, false).unwrap();
        f.set_fixed_len(fixed);
        let mut out = vec![0u8; B];
        f.read_at(&mut io, &mut out, B as u64).unwrap(); // the first call establishes it
        let (lens, trailers) = (io.lens, io.trailer_reads);
        for _ in 0..10 {
            f.read_at(&mut io, &mut out, B as u64).unwrap();
            assert_eq!(out, block(1));
        }
        (io.lens - lens, io.trailer_reads - trailers)
    };
    assert_eq!(
        reads(true),
        (0, 10),
        "one trailer (block 1's group) per call"
    );
    assert_eq!(
        reads(false),
        (10, 10),
        "control: a size query per call (the last group's page only when the size changed)"
    );

    // Cut behind its back (to 100 blocks): reads past the cut fail.
    let mut g = open_shared(&mut io, false).unwrap();
    g.set_fixed_len(true);
    let mut out = vec![0u8; B];
    g.read_at(&mut io, &mut out, 250 * B as u64).unwrap();
    let mut cutter = open_shared(&mut io, false).unwrap();
    cutter
        .set_len(&mut io, &mut nonces, 100 * B as u64)
        .unwrap();
    // Past the cut, and in the group whose page now says "final": errors
    // (the page no longer matches the length the handle holds).
    for at in [250u64, 150, 100, 99, 0] {
        assert!(
            g.read_at(&mut io, &mut out, at * B as u64).is_err(),
            "block {at}"
        );
    }
    // A handle's own truncate and writes keep its length right.
    let mut h = open_shared(&mut io, false).unwrap();
    h.set_fixed_len(true);
    h.read_at(&mut io, &mut out, 99 * B as u64).unwrap();
    assert_eq!(out, block(99));
    h.set_len(&mut io, &mut nonces, 50 * B as u64).unwrap();
    assert_eq!(h.read_at(&mut io, &mut out, 60 * B as u64).unwrap(), 0);
    h.write_at(&mut io, &mut nonces, &block(7), 270 * B as u64)
        .unwrap();
    h.read_at(&mut io, &mut out, 270 * B as u64).unwrap();
    assert_eq!(out, block(7));
    h.read_at(&mut io, &mut out, 100 * B as u64).unwrap();
    assert_eq!(out, vec![0u8; B], "the gap reads as zeros");
    assert_eq!(h.len(&mut io).unwrap(), 271 * B as u64);
}

/// A walreceiver that restarts streaming rewrites flushed pages with the
/// same bytes, many pages per call: a writer killed anywhere between two of
/// the call's writes leaves every page readable with those bytes (each
/// block is written ahead). Control: with write ahead off, a kill before
/// the call's closing page write loses a later block.
#[test]
fn a_multi_block_rewrite_of_flushed_bytes_survives_a_kill_between_any_two_writes() {
    let same: Vec<u8> = (1..4).flat_map(|i| block(i as u8)).collect(); // blocks 1..3 as they are
    for dies_at in 1..6 {
        let (mut io, _) = rewrite_and_die(true, &same, B as u64, Some(dies_at), Death::Before);
        for i in 0..4u64 {
            assert_eq!(
                read_block(&mut io, i).unwrap(),
                block(i as u8),
                "killed at write {dies_at}: block {i}"
            );
        }
    }
    // Control.
    let (mut io, log) = rewrite_and_die(false, &same, B as u64, Some(3), Death::Before);
    assert_eq!(log.len(), 3, "three data writes, no page yet");
    assert!(
        read_block(&mut io, 2).is_err(),
        "without write ahead a later block is lost"
    );
}

/// The other limit (FORMAT.md §14): a tear inside the *metadata page's*
/// write fails that page's MAC, and with it every block of its group,
/// including blocks the write never touched — never other bytes. Control:
/// the same write killed just before the page write changes nothing.
#[test]
fn a_torn_metadata_page_write_fails_its_whole_group_closed() {
    let (mut io, log) = rewrite_and_die(true, &block(9), B as u64, Some(0), Death::Torn);
    assert!(log.is_empty());
    for i in 0..4u64 {
        assert!(
            matches!(
                read_block(&mut io, i),
                Err(FormatError::MetadataAuthFailed { group: 0 })
            ),
            "block {i}"
        );
    }
    let (mut io, _) = rewrite_and_die(true, &block(9), B as u64, Some(0), Death::Before);
    for i in 0..4u64 {
        assert_eq!(read_block(&mut io, i).unwrap(), block(i as u8));
    }
}
