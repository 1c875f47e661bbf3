//! An attacker who puts back only an older metadata page (not the older data
//! block) must not make a shared handle that keeps the block's plaintext
//! (FORMAT.md §8.1) return the old version: the kept block is used only if
//! the block's ciphertext still starts with the kept version's head, so the
//! holder reads the disk's block and fails it (BlockAuthFailed), as every
//! other handle does (FORMAT.md §11: undetected only if the older data
//! blocks are put back too). Found by an attacker review of the first
//! version, which trusted the page's tag alone.

use ephcrypt_format::{meta_offset, NonceSequence, BLOCK_SIZE, PAGE_SIZE};

mod dying;
use dying::{block, four_blocks, open_shared, DyingIo};

const B: usize = BLOCK_SIZE;

fn file() -> DyingIo {
    DyingIo::new(four_blocks())
}

fn page0(io: &DyingIo) -> Vec<u8> {
    let o = meta_offset(0) as usize;
    io.inner.data[o..o + PAGE_SIZE].to_vec()
}

/// Returns what the holder reads after the replay of the page alone.
fn replay_page_only(holder_reads_partially: bool) -> Result<Vec<u8>, ephcrypt_format::FormatError> {
    let mut io = file();
    let mut nonces = NonceSequence::new([2; 8]);
    let mut holder = open_shared(&mut io, false).unwrap();
    let mut out = vec![0u8; B - 10];
    if holder_reads_partially {
        // A partial read: block 1 is kept under page 0's tag.
        assert_eq!(holder.read_at(&mut io, &mut out, B as u64 + 10), Ok(B - 10));
    } else {
        // A whole-block read: nothing kept.
        let mut whole = vec![0u8; B];
        assert_eq!(holder.read_at(&mut io, &mut whole, B as u64), Ok(B));
    }
    let old_page = page0(&io);
    // Another process rewrites block 1 (acknowledged).
    let mut writer = open_shared(&mut io, true).unwrap();
    writer
        .write_at(&mut io, &mut nonces, &block(99), B as u64)
        .unwrap();
    let mut fresh = open_shared(&mut io, false).unwrap();
    assert_eq!(fresh.read_at(&mut io, &mut out, B as u64 + 10), Ok(B - 10));
    assert_eq!(out, block(99)[10..], "the new version is on disk");
    // The attacker puts back the old page 0 only (same length, valid MAC).
    let o = meta_offset(0) as usize;
    io.inner.data[o..o + PAGE_SIZE].copy_from_slice(&old_page);
    holder
        .read_at(&mut io, &mut out, B as u64 + 10)
        .map(|_| out)
}

#[test]
fn a_page_only_replay_fails_the_block_for_a_handle_that_keeps_it_too() {
    let got = replay_page_only(true);
    assert!(
        got.is_err(),
        "the holder returned {} bytes of the block's OLD version (block(1)): {}",
        got.as_ref().map_or(0, Vec::len),
        got.as_ref().is_ok_and(|v| v[..] == block(1)[10..])
    );
}

#[test]
fn control_without_a_kept_block_the_replay_fails_the_block() {
    // The same handle with nothing kept reads the disk's (new) block under
    // the old entry: BlockAuthFailed, as FORMAT.md §11 says.
    assert!(replay_page_only(false).is_err());
}

/// The documented limit (FORMAT.md §11): the head check compares the first
/// 8 ciphertext bytes only, so an attacker who puts back the older page
/// *and* the older block's first 8 bytes (the rest stays the new version)
/// gets the holder to return the older genuine version; every other handle
/// fails the block. Found by a second review; this test pins the limit so
/// that a change of it shows up here (and in the docs).
#[test]
fn limit_the_older_page_plus_the_older_head_give_the_holder_the_older_version() {
    let mut io = file();
    let mut nonces = NonceSequence::new([2; 8]);
    let mut holder = open_shared(&mut io, false).unwrap();
    let mut out = vec![0u8; B - 10];
    assert_eq!(holder.read_at(&mut io, &mut out, B as u64 + 10), Ok(B - 10));
    let o = meta_offset(0) as usize;
    let d = ephcrypt_format::data_offset(1) as usize;
    let old_page = page0(&io);
    let old_head = io.inner.data[d..d + 8].to_vec();
    let mut writer = open_shared(&mut io, true).unwrap();
    writer
        .write_at(&mut io, &mut nonces, &block(99), B as u64)
        .unwrap();
    io.inner.data[o..o + PAGE_SIZE].copy_from_slice(&old_page);
    io.inner.data[d..d + 8].copy_from_slice(&old_head);
    // Every handle without the kept block fails it.
    let mut fresh = open_shared(&mut io, false).unwrap();
    let mut f_out = vec![0u8; B - 10];
    assert!(fresh.read_at(&mut io, &mut f_out, B as u64 + 10).is_err());
    // The holder returns the older genuine version, never other bytes.
    assert_eq!(holder.read_at(&mut io, &mut out, B as u64 + 10), Ok(B - 10));
    assert_eq!(out, block(1)[10..]);
}
