//! Fuzz entry points, as plain functions.
//!
//! The cargo-fuzz targets in `fuzz/` call these, and so do the normal tests
//! (`tests/fuzz_entry_points.rs`) with a few thousand random and mutated
//! inputs, so they keep compiling and passing on stable Rust. Each function
//! panics exactly when an invariant is violated, and must not panic otherwise.

use std::sync::OnceLock;

use crate::block::FileCipher;
use crate::error::FormatError;
use crate::file::{Mode, SealedFile, VecIo};
use crate::header::{sniff, Header, Sniff};
use crate::keys::{EpochKey, FileName};
use crate::layout::{
    group_of, logical_to_physical_size, meta_offset, BLOCK_SIZE, GROUP_BLOCKS, HEADER_LEN,
    NONCE_LEN, PAGE_SIZE, TAG_LEN,
};
use crate::meta::{self, GroupState, Page};
use crate::nonce::NonceSequence;

/// Fixed key material of the fuzz harness (not secret).
pub const FUZZ_KEY: [u8; 32] = [0x42; 32];
/// Epoch id of the fuzz harness.
pub const FUZZ_EPOCH: [u8; 16] = [0xE0; 16];
/// File id of the fuzz harness.
pub const FUZZ_FILE_ID: [u8; 16] = [0xF1; 16];
/// Class id of the fuzz harness's file name.
pub const FUZZ_CLASS: u8 = 1;
/// Name of the fuzz harness's file.
pub const FUZZ_NAME: &[u8] = b"pgsql_tmp4242.7";

/// The harness's epoch key.
#[must_use]
pub fn fuzz_key() -> EpochKey {
    EpochKey::from_bytes(FUZZ_KEY)
}

/// The harness's file name.
#[must_use]
pub fn fuzz_name() -> FileName<'static> {
    match FileName::new(FUZZ_CLASS, FUZZ_NAME) {
        Ok(n) => n,
        Err(_) => unreachable!("short name"),
    }
}

fn fuzz_cipher() -> &'static (FileCipher, [u8; HEADER_LEN]) {
    static CIPHER: OnceLock<(FileCipher, [u8; HEADER_LEN])> = OnceLock::new();
    CIPHER.get_or_init(|| {
        FileCipher::create(&fuzz_key(), &FUZZ_EPOCH, &FUZZ_FILE_ID, &fuzz_name())
            .expect("fixed inputs are valid")
    })
}

/// The harness file's genuine 64-byte header (a seed for mutation).
#[must_use]
pub fn fuzz_header_bytes() -> [u8; HEADER_LEN] {
    fuzz_cipher().1
}

/// A genuine sealed data block of the harness file, as `nonce || tag ||
/// ciphertext`: block `index` holding `plain_len` (1..=8192) bytes of a fixed
/// pattern, with a fixed nonce.
#[must_use]
pub fn fuzz_sealed_block(index: u64, plain_len: usize) -> Vec<u8> {
    let plain: Vec<u8> = (0..plain_len).map(|i| (i * 7 + 3) as u8).collect();
    let nonce = nonce_for(index);
    let mut ct = vec![0u8; plain_len];
    let tag = fuzz_cipher()
        .0
        .seal_block(index, nonce, &plain, &mut ct)
        .expect("valid block");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&tag);
    out.extend_from_slice(&ct);
    out
}

/// A genuine metadata page of the harness file for `group` with `count`
/// blocks (entries of a fixed pattern) and a fixed MAC nonce.
#[must_use]
pub fn fuzz_metadata_page(group: u64, count: u16, final_group: bool) -> Vec<u8> {
    let mut page = [0u8; PAGE_SIZE];
    let _ = meta::init(&mut page, &fuzz_header_bytes(), group);
    for j in 0..usize::from(count) {
        let _ = meta::set_entry(
            &mut page,
            j,
            &[j as u8 | 1; NONCE_LEN],
            &[0x80 | j as u8; TAG_LEN],
        );
    }
    let state = if final_group {
        GroupState {
            count,
            last_len: if count == 0 { 0 } else { 100 },
            final_group,
        }
    } else {
        GroupState {
            count: GROUP_BLOCKS as u16,
            last_len: BLOCK_SIZE as u16,
            final_group,
        }
    };
    let _ = meta::set_state(&mut page, state);
    fuzz_cipher()
        .0
        .seal_metadata(group, nonce_for(group ^ 0xFF), &mut page)
        .expect("valid page");
    page.to_vec()
}

fn nonce_for(index: u64) -> [u8; NONCE_LEN] {
    let mut n = [0x5A; NONCE_LEN];
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

/// Header parsing and sniffing of arbitrary bytes.
///
/// Invariants: parse never panics; a parsed header re-serializes to the input
/// bytes; `sniff` agrees with `parse`; `FileCipher::open` accepts a header only
/// if it is exactly the header `FileCipher::create` makes for its file id and
/// the harness name, and never under another name.
pub fn fuzz_header(data: &[u8]) {
    let parsed = Header::parse(data);
    let sniffed = sniff(data);
    match parsed {
        Ok(h) => {
            assert_eq!(&h.to_bytes()[..], &data[..HEADER_LEN], "re-serialization");
            assert_eq!(
                sniffed,
                Sniff::Ours {
                    epoch_id: h.epoch_id
                }
            );
            let mut bytes = [0u8; HEADER_LEN];
            bytes.copy_from_slice(&data[..HEADER_LEN]);
            let key = fuzz_key();
            match FileCipher::open(&key, &FUZZ_EPOCH, &fuzz_name(), &bytes) {
                Ok(c) => {
                    let (_, genuine) =
                        FileCipher::create(&key, &FUZZ_EPOCH, &h.file_id, &fuzz_name())
                            .expect("parsed file id is non-zero");
                    assert_eq!(bytes, genuine, "opened a header that is not genuine");
                    assert_eq!(c.header_bytes(), &genuine);
                    let other = FileName::new(FUZZ_CLASS + 1, FUZZ_NAME).expect("short");
                    assert_eq!(
                        FileCipher::open(&key, &FUZZ_EPOCH, &other, &bytes).unwrap_err(),
                        FormatError::HeaderAuthFailed,
                        "opened under another class"
                    );
                }
                Err(e) => assert!(
                    matches!(e, FormatError::ForeignEpoch | FormatError::HeaderAuthFailed),
                    "unexpected {e:?}"
                ),
            }
        }
        Err(e) => {
            if data.len() >= 8 && data[..8] == crate::layout::MAGIC {
                assert_eq!(sniffed, Sniff::Corrupt, "{e:?}");
            } else {
                assert_eq!(sniffed, Sniff::NotOurs, "{e:?}");
            }
        }
    }
}

/// Opening an arbitrary data block: `data` = block index (8, LE) || nonce
/// (12) || tag (16) || ciphertext.
///
/// Invariants: no panic; on failure the output is all zero; on success the
/// block re-seals (same nonce) to exactly the input, i.e. only genuine blocks
/// open.
pub fn fuzz_open_block(data: &[u8]) {
    let Some((idx, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((nonce, rest)) = rest.split_first_chunk::<NONCE_LEN>() else {
        return;
    };
    let Some((tag, ct)) = rest.split_first_chunk::<TAG_LEN>() else {
        return;
    };
    let index = u64::from_le_bytes(*idx);
    let cipher = &fuzz_cipher().0;
    let mut out = [0xEEu8; BLOCK_SIZE];
    match cipher.open_block(index, nonce, tag, ct, &mut out) {
        Ok(n) => {
            assert_eq!(n, ct.len());
            let mut again = vec![0u8; n];
            let t = cipher
                .seal_block(index, *nonce, &out[..n], &mut again)
                .expect("re-seal");
            assert!(
                again == ct && t == *tag,
                "opened a block that is not genuine"
            );
        }
        Err(FormatError::InvalidBlockLength { len }) => {
            assert!(len == 0 || len > BLOCK_SIZE);
            assert!(out.iter().all(|&b| b == 0xEE), "output touched");
        }
        Err(FormatError::BlockAuthFailed { index: i }) => {
            assert_eq!(i, index);
            assert!(
                out[..ct.len()].iter().all(|&b| b == 0),
                "unauthenticated bytes left"
            );
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
    // In place gives the same verdict.
    let mut inplace = ct.to_vec();
    let ok = cipher
        .open_block_in_place(index, nonce, tag, &mut inplace)
        .is_ok();
    assert_eq!(
        ok,
        cipher.open_block(index, nonce, tag, ct, &mut out).is_ok()
    );
    if !ok && !inplace.is_empty() && inplace.len() <= BLOCK_SIZE {
        assert!(inplace.iter().all(|&b| b == 0), "in-place left bytes");
    }
}

/// Tampering with a genuine data block: `data` selects block index, length
/// and a list of edits (bit flips in nonce, tag or ciphertext, truncation,
/// index change). Invariant: the block opens iff the edits changed nothing.
pub fn fuzz_tamper_block(data: &[u8]) {
    let mut it = data.iter().copied();
    let mut next = || it.next().unwrap_or(0);
    let index = u64::from(next() % 4);
    let plain_len = 1 + (usize::from(next()) << 8 | usize::from(next())) % BLOCK_SIZE;
    let genuine = fuzz_sealed_block(index, plain_len);
    let mut phys = genuine.clone();
    let mut open_index = index;
    let edits = usize::from(next() % 8);
    for _ in 0..edits {
        match next() % 4 {
            0 | 1 => {
                let pos = (usize::from(next()) << 8 | usize::from(next())) % phys.len().max(1);
                if let Some(b) = phys.get_mut(pos) {
                    *b ^= 1 << (next() % 8);
                }
            }
            2 => {
                let cut = usize::from(next()) % 64;
                phys.truncate(phys.len().saturating_sub(cut).max(NONCE_LEN + TAG_LEN));
            }
            _ => open_index = u64::from(next() % 4),
        }
    }
    let mut nonce = [0u8; NONCE_LEN];
    let mut tag = [0u8; TAG_LEN];
    nonce.copy_from_slice(&phys[..NONCE_LEN]);
    tag.copy_from_slice(&phys[NONCE_LEN..NONCE_LEN + TAG_LEN]);
    let mut out = [0u8; BLOCK_SIZE];
    let ok = fuzz_cipher()
        .0
        .open_block(
            open_index,
            &nonce,
            &tag,
            &phys[NONCE_LEN + TAG_LEN..],
            &mut out,
        )
        .is_ok();
    assert_eq!(
        ok,
        phys == genuine && open_index == index,
        "tamper not detected"
    );
}

/// Opening an arbitrary metadata page: `data[0]` picks the group position
/// (0..4), the rest is the page (cut or zero-padded to 8192 bytes).
///
/// Invariants: no panic; a page opens only if it re-seals (same nonce) to
/// exactly itself, and its state is valid for its position.
pub fn fuzz_metadata(data: &[u8]) {
    let Some((&g, rest)) = data.split_first() else {
        return;
    };
    let group = u64::from(g % 4);
    let mut page: Page = [0u8; PAGE_SIZE];
    let n = rest.len().min(PAGE_SIZE);
    page[..n].copy_from_slice(&rest[..n]);
    let cipher = &fuzz_cipher().0;
    match cipher.open_metadata(group, &page) {
        Ok(state) => {
            assert!(state.is_valid(group));
            let mut again = page;
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&page[meta::OFF_MAC_NONCE..meta::OFF_MAC_TAG]);
            cipher
                .seal_metadata(group, nonce, &mut again)
                .expect("re-seal");
            assert!(again == page, "opened a page that is not genuine");
        }
        Err(e) => assert_eq!(e, FormatError::MetadataAuthFailed { group }),
    }
}

/// One operation on a file, applied both to a plain `Vec<u8>` model and to the
/// encrypted representation by [`check_file_ops`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Logical write of `len` bytes (pattern from `seed`) at `off`.
    Write {
        /// Logical offset.
        off: u64,
        /// Number of bytes.
        len: usize,
        /// Pattern seed.
        seed: u8,
    },
    /// Logical read.
    Read {
        /// Logical offset.
        off: u64,
        /// Number of bytes asked.
        len: usize,
    },
    /// Truncate or extend.
    SetLen(u64),
    /// Size query.
    Len,
    /// Write dirty metadata back.
    Flush,
    /// Flush, drop the handle and open again; private handles pass their
    /// remembered state.
    Reopen,
    /// Flush, drop the handle and open again without remembered state.
    ReopenFresh,
    /// Forget cached plaintext (and, shared, everything).
    Invalidate,
    /// Shared mode: the following operations go through the other handle
    /// (another process with its own nonce stream, opened at the first
    /// switch), until the next switch. Private mode: nothing.
    Switch,
}

fn pattern(seed: u8, off: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len as u64).map(move |i| {
        let x = (off + i)
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(u64::from(seed) * 31);
        (x >> 7) as u8 | 1 // never 0, so zero-filled gaps are visible
    })
}

fn open_harness(io: &mut VecIo, mode: Mode, rem: Option<&crate::Remembered>) -> SealedFile {
    SealedFile::open(io, &fuzz_key(), &FUZZ_EPOCH, &fuzz_name(), mode, rem)
        .unwrap_or_else(|e| panic!("open: {e}"))
}

/// Apply `ops` to a `Vec<u8>` model and to a [`SealedFile`] in `mode` over a
/// [`VecIo`], and panic at the first observable difference (read data and
/// counts, sizes, physical size, nonce reuse on disk).
pub fn check_file_ops(ops: &[FileOp], mode: Mode) {
    check_file_ops_with(ops, mode, false);
}

/// [`check_file_ops`] with every handle's [`SealedFile::set_write_ahead`]
/// set to `write_ahead`.
pub fn check_file_ops_with(ops: &[FileOp], mode: Mode, write_ahead: bool) {
    check_file_ops_configured(ops, mode, write_ahead, None);
}

/// [`check_file_ops`] with every handle's [`SealedFile::set_cache_limit`]
/// set to `limit`.
pub fn check_file_ops_cache_limit(ops: &[FileOp], mode: Mode, limit: u8) {
    check_file_ops_configured(ops, mode, false, Some(limit));
}

fn check_file_ops_configured(ops: &[FileOp], mode: Mode, write_ahead: bool, limit: Option<u8>) {
    let configure = |f: &mut SealedFile| {
        f.set_write_ahead(write_ahead);
        if let Some(l) = limit {
            f.set_cache_limit(l);
        }
    };
    let open_harness = |io: &mut VecIo, mode: Mode, rem: Option<&crate::Remembered>| {
        let mut f = open_harness(io, mode, rem);
        configure(&mut f);
        f
    };
    let key = fuzz_key();
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new(*b"fuzznonc");
    let mut file = SealedFile::create(
        &mut io,
        &mut nonces,
        &key,
        &FUZZ_EPOCH,
        &FUZZ_FILE_ID,
        &fuzz_name(),
        mode,
    )
    .expect("create");
    configure(&mut file);
    let private = mode != Mode::Shared;
    let mut other: Option<SealedFile> = None;
    let mut other_nonces = NonceSequence::new(*b"fuzzoth2");
    let mut model: Vec<u8> = Vec::new();
    let mut buf = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            FileOp::Write { off, len, seed } => {
                let data: Vec<u8> = pattern(seed, off, len).collect();
                let n = file
                    .write_at(&mut io, &mut nonces, &data, off)
                    .unwrap_or_else(|e| panic!("step {step} {op:?}: {e}"));
                assert_eq!(n, len);
                if len > 0 {
                    let end = off as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
            }
            FileOp::Read { off, len } => {
                buf.clear();
                buf.resize(len, 0xCC);
                // Both read paths: the plain one never writes, the one for
                // writing handles may write a dirty metadata page back.
                let n = if step % 2 == 0 {
                    file.read_at(&mut io, &mut buf, off)
                } else {
                    file.read_at_mut(&mut io, &mut nonces, &mut buf, off)
                }
                .unwrap_or_else(|e| panic!("step {step} {op:?}: {e}"));
                let start = (off as usize).min(model.len());
                let want = &model[start..(start + len).min(model.len())];
                assert_eq!(n, want.len(), "step {step} {op:?}: count");
                assert!(buf[..n] == *want, "step {step} {op:?}: data");
            }
            FileOp::SetLen(len) => {
                file.set_len(&mut io, &mut nonces, len)
                    .unwrap_or_else(|e| panic!("step {step} {op:?}: {e}"));
                model.resize(len as usize, 0);
            }
            FileOp::Len => {}
            FileOp::Flush => {
                file.flush(&mut io, &mut nonces).expect("flush");
                assert!(!file.is_dirty());
            }
            FileOp::Reopen | FileOp::ReopenFresh => {
                file.flush(&mut io, &mut nonces).expect("flush");
                let rem = if private && *op == FileOp::Reopen {
                    Some(file.remembered().expect("remembered"))
                } else {
                    None
                };
                drop(file);
                file = open_harness(&mut io, mode, rem.as_ref());
            }
            FileOp::Invalidate => file.invalidate(),
            FileOp::Switch => {
                if !private {
                    let mut next = other
                        .take()
                        .unwrap_or_else(|| open_harness(&mut io, mode, None));
                    core::mem::swap(&mut file, &mut next);
                    other = Some(next);
                    core::mem::swap(&mut nonces, &mut other_nonces);
                }
            }
        }
        let len = file.len(&mut io).expect("len");
        assert_eq!(len, model.len() as u64, "step {step} {op:?}: len");
        // The disk lags a private handle by at most its held (unsealed)
        // last block; a clean handle matches it exactly.
        let want = logical_to_physical_size(model.len() as u64).expect("size");
        let have = io.data.len() as u64;
        if file.is_dirty() {
            assert!(
                have <= want && want - have <= BLOCK_SIZE as u64 + 8192,
                "step {step} {op:?}: physical size {have}, logical {want}"
            );
        } else {
            assert_eq!(have, want, "step {step} {op:?}: physical size");
            assert_unique_nonces(&io.data, model.len() as u64);
        }
    }
    // Finally read everything back through a fresh handle of either mode.
    file.flush(&mut io, &mut nonces).expect("flush");
    drop(file);
    drop(other);
    for m in [Mode::Shared, Mode::PRIVATE] {
        let mut fresh = open_harness(&mut io, m, None);
        let mut all = vec![0u8; model.len() + 100];
        let n = fresh.read_at(&mut io, &mut all, 0).expect("read all");
        assert_eq!(n, model.len());
        assert!(all[..n] == model[..], "final contents");
    }
}

/// Every nonce on disk (data entries in use and metadata MACs) is distinct.
fn assert_unique_nonces(phys: &[u8], logical: u64) {
    let mut seen: Vec<[u8; NONCE_LEN]> = Vec::new();
    let blocks = logical.div_ceil(BLOCK_SIZE as u64);
    let groups = if blocks == 0 {
        1
    } else {
        group_of(blocks - 1) + 1
    };
    for g in 0..groups {
        let at = meta_offset(g) as usize;
        let page: &Page = phys[at..at + PAGE_SIZE].try_into().expect("page");
        let mut mac = [0u8; NONCE_LEN];
        mac.copy_from_slice(&page[meta::OFF_MAC_NONCE..meta::OFF_MAC_TAG]);
        seen.push(mac);
        let count = meta::state(page).map_or(0, |s| s.count);
        for j in 0..usize::from(count) {
            seen.push(meta::entry(page, j).0);
        }
    }
    let count = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), count, "nonce reused within the file");
}

/// The mode a fuzz input's first byte selects.
#[must_use]
pub fn fuzz_mode(b: u8) -> Mode {
    match b % 3 {
        0 => Mode::Shared,
        1 => Mode::Private {
            cache_groups: crate::MIN_CACHE_GROUPS,
        },
        _ => Mode::PRIVATE,
    }
}

/// Decode fuzz bytes into file operations over a small range (a few blocks,
/// and across the first group boundary) and run [`check_file_ops`].
pub fn fuzz_file_ops(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut ops = Vec::new();
    let b = BLOCK_SIZE as u64;
    let g = GROUP_BLOCKS as u64 * b;
    while let Some((chunk, tail)) = rest.split_first_chunk::<5>() {
        rest = tail;
        let a = u64::from(u16::from_le_bytes([chunk[1], chunk[2]]));
        let n = u16::from_le_bytes([chunk[3], chunk[4]]);
        // Half the offsets near the start, half near the first group
        // boundary (2 MiB), where metadata pages change hands.
        let off = if a & 1 == 0 {
            (a >> 1) * 5 * b / 32768
        } else {
            (g - 3 * b) + (a >> 1) * 6 * b / 32768
        };
        ops.push(match chunk[0] % 10 {
            0..=2 => FileOp::Write {
                off,
                len: usize::from(n) % (2 * BLOCK_SIZE + 100),
                seed: chunk[0],
            },
            3 | 4 => FileOp::Read {
                off,
                len: usize::from(n) % (2 * BLOCK_SIZE + 100),
            },
            5 => FileOp::SetLen(off),
            6 => FileOp::Reopen,
            7 => FileOp::ReopenFresh,
            8 => FileOp::Flush,
            _ => match n % 3 {
                0 => FileOp::Len,
                1 => FileOp::Invalidate,
                _ => FileOp::Switch,
            },
        });
        if ops.len() >= 48 {
            break;
        }
    }
    check_file_ops(&ops, fuzz_mode(first));
}

/// A genuine harness file: 3 full blocks and one of 500 bytes, in group 0.
fn genuine_file() -> &'static (VecIo, Vec<u8>) {
    static FILE: OnceLock<(VecIo, Vec<u8>)> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut io = VecIo::default();
        let mut nonces = NonceSequence::new(*b"readfile");
        let content: Vec<u8> = pattern(9, 0, 3 * BLOCK_SIZE + 500).collect();
        let mut f = SealedFile::create(
            &mut io,
            &mut nonces,
            &fuzz_key(),
            &FUZZ_EPOCH,
            &FUZZ_FILE_ID,
            &fuzz_name(),
            Mode::Shared,
        )
        .expect("create");
        f.write_at(&mut io, &mut nonces, &content, 0)
            .expect("write");
        (io, content)
    })
}

/// Reading a genuine file in which `data` replaces bytes: `data[0]` picks the
/// region (0: the data pages, 1: the entries of page 0, 2: appended after
/// the end), the rest is written there.
///
/// Invariant: no panic, and whatever a read returns is the genuine content
/// at that offset (nothing forged opens; a cut or grown file is an error).
pub fn fuzz_read_file(data: &[u8]) {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let (genuine, content) = genuine_file();
    let mut io = genuine.clone();
    match sel % 3 {
        0 => {
            io.data.truncate(PAGE_SIZE);
            io.data.extend_from_slice(bytes);
        }
        1 => {
            let at = meta::OFF_ENTRIES;
            let n = bytes.len().min(meta::END_ENTRIES - at);
            io.data[at..at + n].copy_from_slice(&bytes[..n]);
        }
        _ => io.data.extend_from_slice(bytes),
    }
    let changed = io.data != genuine.data;
    for mode in [Mode::Shared, Mode::PRIVATE] {
        let opened = SealedFile::open(&mut io, &fuzz_key(), &FUZZ_EPOCH, &fuzz_name(), mode, None);
        let mut file = match opened {
            Ok(f) => f,
            Err(e) => {
                assert!(changed, "genuine file failed to open: {e}");
                continue;
            }
        };
        let mut buf = vec![0u8; content.len() + 10];
        let off = bytes.first().map_or(0, |&b| u64::from(b) * 97);
        match file.read_at(&mut io, &mut buf, off) {
            Ok(n) => {
                let start = (off as usize).min(content.len());
                assert_eq!(
                    &buf[..n],
                    &content[start..start + n],
                    "forged bytes returned"
                );
                assert_eq!(n, content.len() - start, "short read without an error");
            }
            Err(e) => assert!(changed, "genuine file failed to read: {e}"),
        }
        let _ = file.len(&mut io);
    }
}
