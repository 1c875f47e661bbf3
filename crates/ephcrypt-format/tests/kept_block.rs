//! The one plaintext block a shared handle keeps across calls (FORMAT.md
//! §8.1): used only while its group's page is unchanged on disk, and only
//! if it was the block's current version. Each property has its control.

use ephcrypt_format::{NonceSequence, SealedFile, BLOCK_SIZE};

mod dying;
use dying::{block, four_blocks, open_shared, DyingIo};

const B: usize = BLOCK_SIZE;

/// Bytes `[10, B)` of block `i` through `f` (a partial read: the cache).
fn tail_of(f: &mut SealedFile, io: &mut DyingIo, i: u64) -> Vec<u8> {
    let mut out = vec![0u8; B - 10];
    assert_eq!(f.read_at(io, &mut out, i * B as u64 + 10), Ok(B - 10));
    out
}

#[test]
fn a_partial_rewrite_reuses_the_block_the_handle_wrote_last() {
    // A walreceiver: partial writes into the tail page, call after call.
    let mut io = DyingIo::new(four_blocks());
    let mut nonces = NonceSequence::new([2; 8]);
    let mut f = open_shared(&mut io, true).unwrap();
    let mut model = block(2);
    for k in 0..20usize {
        let piece = [k as u8 + 1; 100];
        f.write_at(&mut io, &mut nonces, &piece, 2 * B as u64 + 100 * k as u64)
            .unwrap();
        model[100 * k..100 * (k + 1)].copy_from_slice(&piece);
    }
    assert_eq!(io.data_reads, 1, "only the first write reads the block");
    let mut g = open_shared(&mut io, false).unwrap();
    assert_eq!(
        tail_of(&mut g, &mut io, 2),
        model[10..],
        "the disk's version"
    );
}

#[test]
fn a_kept_block_is_dropped_when_another_handle_writes_its_group() {
    let mut io = DyingIo::new(four_blocks());
    let mut nonces = NonceSequence::new([2; 8]);
    let mut reader = open_shared(&mut io, false).unwrap();
    assert_eq!(tail_of(&mut reader, &mut io, 1), block(1)[10..]);
    // Control: unchanged, the kept block is used (no data read), so the
    // checks below see its being dropped, not a reader that never keeps.
    io.data_reads = 0;
    assert_eq!(tail_of(&mut reader, &mut io, 1), block(1)[10..]);
    assert_eq!(
        io.data_reads, 0,
        "an unchanged page: the kept block is used"
    );

    // Another handle rewrites that block: the reader sees the new bytes.
    let mut writer = open_shared(&mut io, true).unwrap();
    writer
        .write_at(&mut io, &mut nonces, &block(50), B as u64)
        .unwrap();
    io.data_reads = 0;
    assert_eq!(tail_of(&mut reader, &mut io, 1), block(50)[10..]);
    assert_eq!(io.data_reads, 1);

    // ... or another block of the same group: the page changed, so the
    // block is read again (same bytes).
    writer
        .write_at(&mut io, &mut nonces, &block(60), 3 * B as u64)
        .unwrap();
    io.data_reads = 0;
    assert_eq!(tail_of(&mut reader, &mut io, 1), block(50)[10..]);
    assert_eq!(io.data_reads, 1);
}

#[test]
fn a_block_read_under_its_previous_version_is_not_kept() {
    // A writer stopped between its write ahead (metadata page: new entry,
    // previous version kept) and its data write.
    let mut io = DyingIo::new(four_blocks());
    let mut nonces = NonceSequence::new([2; 8]);
    let mut writer = open_shared(&mut io, true).unwrap();
    let mut reader = open_shared(&mut io, false).unwrap();
    io.defer_next_data = true;
    writer
        .write_at(&mut io, &mut nonces, &block(70), B as u64)
        .unwrap();
    assert!(io.deferred.is_some());
    assert_eq!(
        tail_of(&mut reader, &mut io, 1),
        block(1)[10..],
        "the previous version, from disk"
    );
    // The data write lands; the page does not change again.
    io.land();
    assert_eq!(
        tail_of(&mut reader, &mut io, 1),
        block(70)[10..],
        "the new version: the previous one was not kept"
    );
    // Control: the same reader keeps a current version (no data read).
    io.data_reads = 0;
    assert_eq!(tail_of(&mut reader, &mut io, 1), block(70)[10..]);
    assert_eq!(io.data_reads, 0);
}

#[test]
fn a_kept_block_never_outlives_a_failed_call() {
    let mut io = DyingIo::new(four_blocks());
    let mut nonces = NonceSequence::new([2; 8]);
    let mut f = open_shared(&mut io, true).unwrap();
    f.write_at(&mut io, &mut nonces, &[9; 100], B as u64)
        .unwrap();
    // The next write dies at its first write (the metadata page ahead).
    io.dies_at = Some(io.writes);
    assert!(f
        .write_at(&mut io, &mut nonces, &[8; 100], B as u64 + 100)
        .is_err());
    io.dies_at = None;
    io.data_reads = 0;
    let mut expect = block(1);
    expect[..100].fill(9);
    assert_eq!(
        tail_of(&mut f, &mut io, 1),
        expect[10..],
        "the disk's bytes"
    );
    assert_eq!(io.data_reads, 1, "read again after the failed call");
}

#[test]
fn a_call_that_never_used_the_kept_block_does_not_vouch_for_it() {
    // Found by the randomized model (write_ahead_model.rs): a handle's own
    // write of another block must not re-mark a kept block it never checked
    // under its new page.
    let mut io = DyingIo::new(four_blocks());
    let mut nonces = NonceSequence::new([2; 8]);
    let mut a = open_shared(&mut io, true).unwrap();
    let mut b = open_shared(&mut io, true).unwrap();
    assert_eq!(tail_of(&mut a, &mut io, 1), block(1)[10..]);
    b.write_at(&mut io, &mut nonces, &block(80), B as u64)
        .unwrap();
    // a's whole-block write of block 0 (same group) keeps block 1 cached.
    a.write_at(&mut io, &mut nonces, &block(81), 0).unwrap();
    assert_eq!(tail_of(&mut a, &mut io, 1), block(80)[10..], "b's bytes");
}
