//! Fuzz entry points, as plain functions.
//!
//! The cargo-fuzz targets in `fuzz/` call these, and so do the normal tests
//! (`tests/fuzz_entry_points.rs`) with a few thousand random and mutated
//! inputs, so they keep compiling and passing on stable Rust. Each function
//! panics exactly when an invariant is violated, and must not panic otherwise.

use std::sync::OnceLock;

use crate::block::FileCipher;
use crate::error::FormatError;
use crate::file::{PhysicalIo, SealedFile, VecIo};
use crate::header::{sniff, Header, Sniff};
use crate::keys::EpochKey;
use crate::layout::{
    logical_to_physical_size, BLOCK_SIZE, HEADER_LEN, MIN_PHYS_BLOCK_SIZE, NONCE_LEN,
    PHYS_BLOCK_SIZE,
};
use crate::nonce::NonceSequence;

/// Fixed key material of the fuzz harness (not secret).
pub const FUZZ_KEY: [u8; 32] = [0x42; 32];
/// Epoch id of the fuzz harness.
pub const FUZZ_EPOCH: [u8; 16] = [0xE0; 16];
/// File id of the fuzz harness.
pub const FUZZ_FILE_ID: [u8; 16] = [0xF1; 16];

/// The harness's epoch key.
#[must_use]
pub fn fuzz_key() -> EpochKey {
    EpochKey::from_bytes(FUZZ_KEY)
}

fn fuzz_cipher() -> &'static (FileCipher, [u8; HEADER_LEN]) {
    static CIPHER: OnceLock<(FileCipher, [u8; HEADER_LEN])> = OnceLock::new();
    CIPHER.get_or_init(|| {
        FileCipher::create(&fuzz_key(), &FUZZ_EPOCH, &FUZZ_FILE_ID).expect("fixed inputs are valid")
    })
}

/// The harness file's genuine 64-byte header (a seed for mutation).
#[must_use]
pub fn fuzz_header_bytes() -> [u8; HEADER_LEN] {
    fuzz_cipher().1
}

/// A genuine sealed block of the harness file: block `index` holding
/// `plain_len` (1..=8192) bytes of a fixed pattern, with a fixed nonce.
#[must_use]
pub fn fuzz_sealed_block(index: u64, plain_len: usize) -> Vec<u8> {
    let plain: Vec<u8> = (0..plain_len).map(|i| (i * 7 + 3) as u8).collect();
    let mut out = vec![0u8; PHYS_BLOCK_SIZE];
    let n = fuzz_cipher()
        .0
        .seal_block(index, nonce_for(index), &plain, &mut out)
        .expect("valid block");
    out.truncate(n);
    out
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
/// if it is exactly the header `FileCipher::create` makes for its file id.
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
            match FileCipher::open(&key, &FUZZ_EPOCH, &bytes) {
                Ok(c) => {
                    let (_, genuine) = FileCipher::create(&key, &FUZZ_EPOCH, &h.file_id)
                        .expect("parsed file id is non-zero");
                    assert_eq!(bytes, genuine, "opened a header that is not genuine");
                    assert_eq!(c.header_bytes(), &genuine);
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

/// Opening an arbitrary physical block: `data[0..8]` = block index (LE), the
/// rest = physical block.
///
/// Invariants: no panic; on failure the output is all zero; on success the
/// block re-seals (same nonce) to exactly the input, i.e. only genuine blocks
/// open.
pub fn fuzz_open_block(data: &[u8]) {
    let Some((idx, phys)) = data.split_first_chunk::<8>() else {
        return;
    };
    let index = u64::from_le_bytes(*idx);
    let cipher = &fuzz_cipher().0;
    let mut out = [0xEEu8; BLOCK_SIZE];
    match cipher.open_block(index, phys, &mut out) {
        Ok(n) => {
            assert_eq!(n + 28, phys.len());
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&phys[..NONCE_LEN]);
            let mut again = [0u8; PHYS_BLOCK_SIZE];
            let m = cipher
                .seal_block(index, nonce, &out[..n], &mut again)
                .expect("re-seal");
            assert_eq!(&again[..m], phys, "opened a block that is not genuine");
        }
        Err(FormatError::TruncatedBlock { .. }) => {
            assert!(!(MIN_PHYS_BLOCK_SIZE..=PHYS_BLOCK_SIZE).contains(&phys.len()));
            assert!(out.iter().all(|&b| b == 0xEE), "output touched");
        }
        Err(FormatError::BlockAuthFailed { index: i }) => {
            assert_eq!(i, index);
            let n = phys.len() - 28;
            assert!(
                out[..n].iter().all(|&b| b == 0),
                "unauthenticated bytes left"
            );
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
}

/// Tampering with a genuine block: `data` selects block index, length and a
/// list of edits (bit flips, truncation, index change). Invariant: the block
/// opens iff the edits changed nothing.
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
                phys.truncate(phys.len().saturating_sub(cut));
            }
            _ => open_index = u64::from(next() % 4),
        }
    }
    let mut out = [0u8; BLOCK_SIZE];
    let ok = fuzz_cipher()
        .0
        .open_block(open_index, &phys, &mut out)
        .is_ok();
    assert_eq!(
        ok,
        phys == genuine && open_index == index,
        "tamper not detected"
    );
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
    /// Drop the `SealedFile` and open the file again (fresh cache, header check).
    Reopen,
    /// Forget the cached block.
    InvalidateCache,
}

fn pattern(seed: u8, off: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len as u64).map(move |i| {
        let x = (off + i)
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(u64::from(seed) * 31);
        (x >> 7) as u8 | 1 // never 0, so zero-filled gaps are visible
    })
}

/// Apply `ops` to a `Vec<u8>` model and to a [`SealedFile`] over a [`VecIo`],
/// and panic at the first observable difference (read data and counts, sizes,
/// physical size, nonce reuse). `start_empty` starts from a 0-byte file via
/// [`SealedFile::open_or_init`], else from [`SealedFile::create`].
pub fn check_file_ops(ops: &[FileOp], start_empty: bool) {
    let key = fuzz_key();
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new(*b"fuzznonc");
    let mut file = if start_empty {
        SealedFile::open_or_init(&mut io, &key, &FUZZ_EPOCH, &FUZZ_FILE_ID).expect("init")
    } else {
        SealedFile::create(&mut io, &key, &FUZZ_EPOCH, &FUZZ_FILE_ID).expect("create")
    };
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
                let n = file
                    .read_at(&mut io, &mut buf, off)
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
            FileOp::Reopen => {
                drop(file);
                file = SealedFile::open_or_init(&mut io, &key, &FUZZ_EPOCH, &FUZZ_FILE_ID)
                    .unwrap_or_else(|e| panic!("step {step} {op:?}: {e}"));
            }
            FileOp::InvalidateCache => file.invalidate_cache(),
        }
        let len = file.len(&mut io).expect("len");
        assert_eq!(len, model.len() as u64, "step {step} {op:?}: len");
        let phys = io.len().expect("phys len");
        if !(phys == 0 && model.is_empty()) {
            assert_eq!(
                Ok(phys),
                logical_to_physical_size(model.len() as u64),
                "step {step} {op:?}: physical size"
            );
        }
        assert_unique_nonces(&io.data);
    }
    // Finally read everything back through a fresh handle.
    let mut fresh =
        SealedFile::open_or_init(&mut io, &key, &FUZZ_EPOCH, &FUZZ_FILE_ID).expect("open");
    let mut all = vec![0u8; model.len() + 100];
    let n = fresh.read_at(&mut io, &mut all, 0).expect("read all");
    assert_eq!(n, model.len());
    assert!(all[..n] == model[..], "final contents");
}

fn assert_unique_nonces(phys: &[u8]) {
    if phys.len() <= HEADER_LEN {
        return;
    }
    let mut seen: Vec<&[u8]> = phys[HEADER_LEN..]
        .chunks(PHYS_BLOCK_SIZE)
        .map(|b| &b[..NONCE_LEN.min(b.len())])
        .collect();
    let count = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), count, "nonce reused within the file");
}

/// Decode fuzz bytes into file operations over a small range (a few blocks)
/// and run [`check_file_ops`].
pub fn fuzz_file_ops(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut ops = Vec::new();
    let span = 5 * BLOCK_SIZE as u64;
    while let Some((chunk, tail)) = rest.split_first_chunk::<5>() {
        rest = tail;
        let a = u64::from(u16::from_le_bytes([chunk[1], chunk[2]]));
        let b = u16::from_le_bytes([chunk[3], chunk[4]]);
        let off = a * span / 65536;
        ops.push(match chunk[0] % 8 {
            0..=2 => FileOp::Write {
                off,
                len: usize::from(b) % (2 * BLOCK_SIZE + 100),
                seed: chunk[0],
            },
            3 | 4 => FileOp::Read {
                off,
                len: usize::from(b) % (2 * BLOCK_SIZE + 100),
            },
            5 => FileOp::SetLen(off),
            6 => FileOp::Reopen,
            _ => {
                if b % 2 == 0 {
                    FileOp::Len
                } else {
                    FileOp::InvalidateCache
                }
            }
        });
        if ops.len() >= 64 {
            break;
        }
    }
    check_file_ops(&ops, first % 2 == 0);
}

/// Reading a file whose blocks are arbitrary bytes behind a genuine header.
/// Invariant: no panic, and no byte is returned (nothing forged opens).
pub fn fuzz_read_file(data: &[u8]) {
    let mut io = VecIo {
        data: fuzz_header_bytes().to_vec(),
    };
    io.data.extend_from_slice(data);
    let key = fuzz_key();
    let mut file = SealedFile::open(&mut io, &key, &FUZZ_EPOCH).expect("genuine header");
    let mut buf = [0u8; 3 * BLOCK_SIZE];
    let off = data.first().map_or(0, |&b| u64::from(b) * 97);
    match file.read_at(&mut io, &mut buf, off) {
        Ok(n) => assert_eq!(n, 0, "forged bytes returned"),
        Err(e) => assert!(
            matches!(
                e,
                FormatError::BlockAuthFailed { .. } | FormatError::CorruptPhysicalSize { .. }
            ),
            "unexpected {e:?}"
        ),
    }
    let _ = file.len(&mut io);
}
