//! Tampering with the physical file is detected (FORMAT.md §11): every
//! truncation point, appended bytes, whole-file moves between names and
//! classes, flipped bits anywhere, zeroed pages, moved and foreign pages and
//! blocks, and replays of older blocks and metadata pages. Each negative
//! test has a control that shows the same path succeeds untampered. The one
//! documented limit (§12: a consistent older group put back, seen by a
//! handle without remembered state) is pinned as undetected.

use ephcrypt_format::{
    data_offset, meta_offset, EpochKey, FileName, FormatError, Mode, NonceSequence, PhysicalIo,
    Remembered, SealedFile, VecIo, BLOCK_SIZE, HEADER_LEN, PAGE_SIZE,
};

const EK: [u8; 32] = [0x61; 32];
const EPOCH: [u8; 16] = [0xE5; 16];
const FILE_A: [u8; 16] = [0xA1; 16];
const FILE_B: [u8; 16] = [0xB2; 16];
const CLASS: u8 = 1;
const NAME: &[u8] = b"pgsql_tmp1234.0.fileset/i3of8.p1.0";
const B: usize = BLOCK_SIZE;
/// Two groups: 256 + 10 full blocks and a 500-byte tail.
const BIG: usize = 266 * B + 500;
/// One group: 3 full blocks and a 500-byte tail.
const SMALL: usize = 3 * B + 500;
const MODES: [Mode; 2] = [Mode::Shared, Mode::PRIVATE];

fn key() -> EpochKey {
    EpochKey::from_bytes(EK)
}

fn name() -> FileName<'static> {
    FileName::new(CLASS, NAME).unwrap()
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 7) as u8).wrapping_mul(seed) ^ seed ^ (i >> 13) as u8)
        .collect()
}

/// A file written and flushed by a private handle, returned with it.
fn build_with(file_id: &[u8; 16], len: usize, seed: u8) -> (VecIo, SealedFile, NonceSequence) {
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::from_os_rng().unwrap();
    let mut f = SealedFile::create(
        &mut io,
        &mut nonces,
        &key(),
        &EPOCH,
        file_id,
        &name(),
        Mode::PRIVATE,
    )
    .unwrap();
    f.write_at(&mut io, &mut nonces, &content(len, seed), 0)
        .unwrap();
    f.flush(&mut io, &mut nonces).unwrap();
    (io, f, nonces)
}

fn build(len: usize) -> VecIo {
    build_with(&FILE_A, len, 3).0
}

/// A read-only view of the first `len` bytes of a physical file: cuts
/// without copying megabytes per cut.
struct CutIo<'a> {
    data: &'a [u8],
    len: usize,
}

impl PhysicalIo for CutIo<'_> {
    type Error = FormatError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        let off = (off as usize).min(self.len);
        let n = buf.len().min(self.len - off);
        buf[..n].copy_from_slice(&self.data[off..off + n]);
        Ok(n)
    }
    fn write_all_at(&mut self, _: &[u8], _: u64) -> Result<(), FormatError> {
        panic!("a reader wrote");
    }
    fn set_len(&mut self, _: u64) -> Result<(), FormatError> {
        panic!("a reader truncated");
    }
    fn len(&mut self) -> Result<u64, FormatError> {
        Ok(self.len as u64)
    }
}

fn open<I: PhysicalIo<Error = FormatError>>(
    io: &mut I,
    mode: Mode,
    rem: Option<&Remembered>,
) -> Result<SealedFile, FormatError> {
    SealedFile::open(io, &key(), &EPOCH, &name(), mode, rem)
}

/// Open with a fresh handle, query the size and read everything. A read that
/// returns less than the size without an error fails the test.
fn read_all_with<I: PhysicalIo<Error = FormatError>>(
    io: &mut I,
    mode: Mode,
    rem: Option<&Remembered>,
) -> Result<Vec<u8>, FormatError> {
    let mut f = open(io, mode, rem)?;
    let len = f.len(io)? as usize;
    let mut buf = vec![0u8; len + 10];
    let n = f.read_at(io, &mut buf, 0)?;
    assert_eq!(n, len, "short read without an error");
    buf.truncate(n);
    Ok(buf)
}

fn read_all(io: &mut VecIo, mode: Mode) -> Result<Vec<u8>, FormatError> {
    read_all_with(io, mode, None)
}

#[test]
fn untampered_files_read_back_in_both_modes() {
    for len in [SMALL, BIG] {
        let (mut io, mut writer, _) = build_with(&FILE_A, len, 3);
        for mode in MODES {
            assert_eq!(read_all(&mut io, mode).unwrap(), content(len, 3));
        }
        let rem = writer.remembered().unwrap();
        assert_eq!(
            read_all_with(&mut io, Mode::PRIVATE, Some(&rem)).unwrap(),
            content(len, 3)
        );
        let mut buf = vec![0u8; len];
        assert_eq!(writer.read_at(&mut io, &mut buf, 0), Ok(len));
    }
}

/// Cut points: every byte of page 0 and block 0, +-40 bytes around every
/// page boundary, every byte of the last 9000, and every 997th byte.
fn cut_points(full: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..=2 * PAGE_SIZE + 64).collect();
    for p in 0..=full / PAGE_SIZE + 1 {
        let at = p * PAGE_SIZE;
        cuts.extend(at.saturating_sub(40)..=at + 40);
    }
    cuts.extend(full.saturating_sub(9000)..=full);
    cuts.extend((0..full).step_by(997));
    cuts.retain(|&c| c < full);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

#[test]
fn every_truncation_point_is_an_error_for_a_fresh_handle() {
    let io = build(BIG);
    let full = io.data.len();
    assert_eq!(full, data_offset(266) as usize + 500);
    let cuts = cut_points(full);
    assert!(cuts.len() > 30_000, "{}", cuts.len());
    // Control: the whole file reads in both modes through the same view.
    for mode in MODES {
        let mut whole = CutIo {
            data: &io.data,
            len: full,
        };
        assert_eq!(
            read_all_with(&mut whole, mode, None).unwrap(),
            content(BIG, 3)
        );
    }
    for &cut in &cuts {
        for mode in MODES {
            let mut t = CutIo {
                data: &io.data,
                len: cut,
            };
            let r = read_all_with(&mut t, mode, None);
            let e = r.expect_err("a cut file read without an error");
            let expected = match cut {
                0 => matches!(e, FormatError::EmptyFile),
                1..PAGE_SIZE => matches!(e, FormatError::TruncatedHeader { .. }),
                _ => matches!(
                    e,
                    FormatError::Truncated { .. }
                        | FormatError::CorruptPhysicalSize { .. }
                        | FormatError::SizeMismatch { .. }
                ),
            };
            assert!(expected, "cut at {cut} of {full}: {e:?}");
        }
    }
}

#[test]
fn every_truncation_point_is_an_error_with_remembered_state() {
    let (io, writer, _) = build_with(&FILE_A, BIG, 3);
    let rem = writer.remembered().unwrap();
    let full = io.data.len();
    let mut whole = CutIo {
        data: &io.data,
        len: full,
    };
    assert!(read_all_with(&mut whole, Mode::PRIVATE, Some(&rem)).is_ok());
    for cut in cut_points(full).into_iter().step_by(7) {
        let mut t = CutIo {
            data: &io.data,
            len: cut,
        };
        assert!(
            open(&mut t, Mode::PRIVATE, Some(&rem)).is_err(),
            "cut at {cut} opened with remembered state"
        );
    }
}

/// The writing process's private handle keeps the true length (never a
/// shorter one) and fails exactly the reads that reach missing data.
#[test]
fn truncation_under_the_writers_handle_fails_the_reads_that_reach_it() {
    let (io, mut writer, _) = build_with(&FILE_A, BIG, 3);
    let full = io.data.len();
    let data = content(BIG, 3);
    let mut buf = vec![0u8; B];
    for cut in cut_points(full).into_iter().step_by(13) {
        let mut t = CutIo {
            data: &io.data,
            len: cut,
        };
        writer.invalidate();
        assert_eq!(writer.len(&mut t), Ok(BIG as u64), "cut {cut}: len");
        let mut all = vec![0u8; BIG];
        assert!(
            writer.read_at(&mut t, &mut all, 0).is_err(),
            "cut {cut}: whole read"
        );
        // Block 0 lives in [8192, 16384): readable iff it is all there (the
        // metadata of group 0 is cached by the writer).
        writer.invalidate();
        let r = writer.read_at(&mut t, &mut buf, 0);
        if cut >= 2 * PAGE_SIZE {
            assert_eq!(r, Ok(B), "cut {cut}");
            assert_eq!(buf[..], data[..B]);
        } else {
            assert!(
                matches!(r, Err(FormatError::Truncated { group: 0 })),
                "cut {cut}: {r:?}"
            );
        }
    }
}

#[test]
fn truncation_is_seen_by_a_shared_handle_at_its_next_call() {
    let mut io = build(BIG);
    let mut f = open(&mut io, Mode::Shared, None).unwrap();
    assert_eq!(f.len(&mut io), Ok(BIG as u64));
    io.data.truncate(meta_offset(1) as usize); // the last group is gone
    assert_eq!(f.len(&mut io), Err(FormatError::Truncated { group: 0 }));
    let mut buf = [0u8; 10];
    assert_eq!(
        f.read_at(&mut io, &mut buf, 0),
        Err(FormatError::Truncated { group: 0 })
    );
}

#[test]
fn appended_bytes_and_holes_are_errors() {
    for extra in [1usize, 100, 8192, 8193, 300_000] {
        let mut t = build(SMALL);
        let len = t.data.len();
        t.data.resize(len + extra, 0);
        for mode in MODES {
            let r = read_all(&mut t, mode);
            assert!(
                matches!(
                    r,
                    Err(FormatError::SizeMismatch { .. }
                        | FormatError::CorruptPhysicalSize { .. }
                        | FormatError::MetadataAuthFailed { .. })
                ),
                "{extra} bytes appended: {r:?}"
            );
        }
    }
}

#[test]
fn whole_file_moved_or_copied_under_another_name_or_class_fails() {
    let mut io = build(SMALL);
    let others: [(u8, &[u8]); 5] = [
        (CLASS + 1, NAME),
        (CLASS, b"pgsql_tmp1234.0.fileset/i3of8.p1.1"),
        (CLASS, b"pgsql_tmp1234.0.fileset/i3of8.p1.0 "),
        (CLASS, b""),
        (0, b"16384/t3_16400_fsm.1"),
    ];
    for mode in MODES {
        // Control: the right name opens.
        assert!(SealedFile::open(&mut io, &key(), &EPOCH, &name(), mode, None).is_ok());
        for (class, other) in others {
            let n = FileName::new(class, other).unwrap();
            assert_eq!(
                SealedFile::open(&mut io, &key(), &EPOCH, &n, mode, None).unwrap_err(),
                FormatError::HeaderAuthFailed
            );
        }
    }
}

#[test]
fn a_bit_flipped_in_any_byte_is_an_error() {
    let io = build(SMALL);
    let full = io.data.len();
    assert_eq!(full, 4 * PAGE_SIZE + 500);
    for pos in 0..full {
        let mut t = io.clone();
        t.data[pos] ^= 1 << (pos % 8);
        for mode in MODES {
            let e = read_all(&mut t, mode).expect_err("flip not detected");
            let ok = match pos {
                0..HEADER_LEN => true, // one of the header checks
                HEADER_LEN..PAGE_SIZE => e == FormatError::MetadataAuthFailed { group: 0 },
                _ => {
                    e == FormatError::BlockAuthFailed {
                        index: ((pos - PAGE_SIZE) / B) as u64,
                    }
                }
            };
            assert!(ok, "byte {pos}: {e:?}");
        }
    }
}

#[test]
fn flips_in_a_later_group_and_its_metadata_are_errors() {
    let io = build(BIG);
    let page1 = meta_offset(1) as usize;
    let positions = (page1..page1 + PAGE_SIZE)
        .step_by(3)
        .chain((data_offset(256) as usize..io.data.len()).step_by(1021));
    for pos in positions {
        let mut t = io.clone();
        t.data[pos] ^= 0x10;
        let e = read_all(&mut t, Mode::Shared).expect_err("flip not detected");
        assert!(
            matches!(
                e,
                FormatError::MetadataAuthFailed { group: 1 } | FormatError::BlockAuthFailed { .. }
            ),
            "byte {pos}: {e:?}"
        );
    }
}

#[test]
fn zeroed_or_punched_pages_never_authenticate() {
    // gocryptfs would read an all-zero block as a hole of zeros; PostgreSQL
    // would then see an empty page and silently lose rows. Here it is an error.
    let io = build(BIG);
    for (page_at, expect) in [
        (data_offset(0), FormatError::BlockAuthFailed { index: 0 }),
        (
            data_offset(200),
            FormatError::BlockAuthFailed { index: 200 },
        ),
        (
            data_offset(260),
            FormatError::BlockAuthFailed { index: 260 },
        ),
        (meta_offset(1), FormatError::MetadataAuthFailed { group: 1 }),
    ] {
        let mut t = io.clone();
        let at = page_at as usize;
        t.data[at..at + PAGE_SIZE].fill(0);
        for mode in MODES {
            assert_eq!(read_all(&mut t, mode), Err(expect), "page at {at}");
        }
    }
    // Page 0 zeroed after the header: the metadata of group 0.
    let mut t = io.clone();
    t.data[HEADER_LEN..PAGE_SIZE].fill(0);
    assert_eq!(
        read_all(&mut t, Mode::Shared),
        Err(FormatError::MetadataAuthFailed { group: 0 })
    );
    // The last (partial) block zeroed.
    let mut t = io.clone();
    let last = data_offset(266) as usize;
    t.data[last..].fill(0);
    assert_eq!(
        read_all(&mut t, Mode::Shared),
        Err(FormatError::BlockAuthFailed { index: 266 })
    );
    // A zeroed entry in an otherwise authentic page is a MAC failure.
    let mut t = io.clone();
    t.data[128..156].fill(0);
    assert_eq!(
        read_all(&mut t, Mode::Shared),
        Err(FormatError::MetadataAuthFailed { group: 0 })
    );
}

#[test]
fn swapped_moved_and_foreign_pages_and_blocks_are_detected() {
    let io = build(BIG);
    let other = build_with(&FILE_B, BIG, 3).0;
    let page = |i: u64| data_offset(i) as usize..data_offset(i) as usize + B;
    // Two data blocks swapped.
    let mut t = io.clone();
    let (a, b) = (t.data[page(1)].to_vec(), t.data[page(2)].to_vec());
    t.data[page(1)].copy_from_slice(&b);
    t.data[page(2)].copy_from_slice(&a);
    assert_eq!(
        read_all(&mut t, Mode::Shared),
        Err(FormatError::BlockAuthFailed { index: 1 })
    );
    // A data block of another file (same key, name and position).
    let mut t = io.clone();
    t.data[page(5)].copy_from_slice(&other.data[page(5)]);
    assert_eq!(
        read_all(&mut t, Mode::Shared),
        Err(FormatError::BlockAuthFailed { index: 5 })
    );
    // The metadata page of another file at the same position.
    let m1 = meta_offset(1) as usize..meta_offset(1) as usize + PAGE_SIZE;
    let mut t = io.clone();
    t.data[m1.clone()].copy_from_slice(&other.data[m1.clone()]);
    assert_eq!(
        read_all(&mut t, Mode::Shared),
        Err(FormatError::MetadataAuthFailed { group: 1 })
    );
    // This file's page 0 (minus its header) moved to group 1's position.
    let mut t = io.clone();
    let p0 = t.data[..PAGE_SIZE].to_vec();
    t.data[m1].copy_from_slice(&p0);
    assert_eq!(
        read_all(&mut t, Mode::Shared),
        Err(FormatError::MetadataAuthFailed { group: 1 })
    );
    // Another file's header on this file.
    let mut t = io.clone();
    t.data[..HEADER_LEN].copy_from_slice(&other.data[..HEADER_LEN]);
    assert_eq!(
        read_all(&mut t, Mode::Shared),
        Err(FormatError::MetadataAuthFailed { group: 0 })
    );
}

/// A block replaced by an older version of itself, metadata left current:
/// its entry has moved on, so everyone detects it (v1 could not).
#[test]
fn an_older_data_block_alone_is_detected_by_everyone() {
    let (mut io, mut writer, mut nonces) = build_with(&FILE_A, SMALL, 3);
    let block1 = data_offset(1) as usize..data_offset(1) as usize + B;
    let old = io.data[block1.clone()].to_vec();
    writer
        .write_at(&mut io, &mut nonces, &content(B, 9), B as u64)
        .unwrap();
    writer.flush(&mut io, &mut nonces).unwrap();
    // Control: the new version reads.
    assert!(read_all(&mut io, Mode::Shared).is_ok());
    io.data[block1].copy_from_slice(&old);
    for mode in MODES {
        assert_eq!(
            read_all(&mut io, mode),
            Err(FormatError::BlockAuthFailed { index: 1 })
        );
    }
    writer.invalidate();
    let mut buf = vec![0u8; B];
    assert_eq!(
        writer.read_at(&mut io, &mut buf, B as u64),
        Err(FormatError::BlockAuthFailed { index: 1 })
    );
}

/// An older metadata page put back alone: the writer (after reloading it,
/// and through remembered state) says replayed; a fresh handle fails on the
/// block whose entry went back.
#[test]
fn an_older_metadata_page_alone_is_detected() {
    let (mut io, mut writer, mut nonces) = build_with(&FILE_A, BIG, 3);
    let page0 = io.data[..PAGE_SIZE].to_vec();
    writer
        .write_at(&mut io, &mut nonces, &content(B, 9), B as u64)
        .unwrap();
    writer.flush(&mut io, &mut nonces).unwrap();
    let rem = writer.remembered().unwrap();
    // Control: remembered state accepts the current file.
    assert!(read_all_with(&mut io, Mode::PRIVATE, Some(&rem)).is_ok());
    io.data[..PAGE_SIZE].copy_from_slice(&page0);
    assert_eq!(
        open(&mut io, Mode::PRIVATE, Some(&rem)).unwrap_err(),
        FormatError::MetadataReplayed { group: 0 }
    );
    for mode in MODES {
        assert_eq!(
            read_all(&mut io, mode),
            Err(FormatError::BlockAuthFailed { index: 1 })
        );
    }
    // The writer keeps reading through its cached (current) metadata.
    let mut buf = vec![0u8; B];
    assert_eq!(writer.read_at(&mut io, &mut buf, B as u64), Ok(B));
    assert_eq!(buf, content(B, 9));
}

/// A writer with two cache slots on a three-group file must reload page 0
/// after touching groups 1 and 2: an older page 0 put back meanwhile is
/// replayed metadata (its digest is not the one written).
#[test]
fn the_writer_detects_an_older_page_when_it_reloads_it() {
    let len = 2 * 256 * B + 10 * B;
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::from_os_rng().unwrap();
    let mode = Mode::Private { cache_groups: 2 };
    let mut w =
        SealedFile::create(&mut io, &mut nonces, &key(), &EPOCH, &FILE_A, &name(), mode).unwrap();
    w.write_at(&mut io, &mut nonces, &content(len, 3), 0)
        .unwrap();
    w.flush(&mut io, &mut nonces).unwrap();
    let page0 = io.data[..PAGE_SIZE].to_vec();
    w.write_at(&mut io, &mut nonces, &content(B, 9), B as u64)
        .unwrap();
    w.flush(&mut io, &mut nonces).unwrap();
    let mut buf = vec![0u8; B];
    let mut touch_other_groups = |w: &mut SealedFile, io: &mut VecIo| {
        w.invalidate();
        w.read_at(io, &mut buf[..1], 256 * B as u64).unwrap();
        w.read_at(io, &mut buf[..1], 512 * B as u64).unwrap();
    };
    // Control: without tampering the reload succeeds.
    touch_other_groups(&mut w, &mut io);
    let mut one = [0u8; 1];
    assert_eq!(w.read_at(&mut io, &mut one, B as u64), Ok(1));
    touch_other_groups(&mut w, &mut io);
    io.data[..PAGE_SIZE].copy_from_slice(&page0);
    assert_eq!(
        w.read_at(&mut io, &mut one, B as u64),
        Err(FormatError::MetadataReplayed { group: 0 })
    );
}

/// A consistent older state of a group — its page and its blocks — put back.
#[test]
fn a_consistent_older_group_is_detected_by_the_writer_and_pinned_undetected_otherwise() {
    let (mut io, mut writer, mut nonces) = build_with(&FILE_A, SMALL, 3);
    let old = io.data.clone();
    writer
        .write_at(&mut io, &mut nonces, &content(B, 9), B as u64)
        .unwrap();
    writer.flush(&mut io, &mut nonces).unwrap();
    let rem = writer.remembered().unwrap();
    let new = io.data.clone();
    assert_eq!(old.len(), new.len());
    io.data.copy_from_slice(&old);
    // The writer: remembered state, or its own handle after a reload.
    assert_eq!(
        open(&mut io, Mode::PRIVATE, Some(&rem)).unwrap_err(),
        FormatError::MetadataReplayed { group: 0 }
    );
    // KNOWN LIMIT (FORMAT.md §12): a handle without remembered state reads
    // the older, genuine version without an error.
    for mode in MODES {
        let read = read_all(&mut io, mode)
            .expect("a consistent older group opens in a fresh handle (known limit)");
        assert_eq!(read, content(SMALL, 3));
    }
    // Control: the current version reads as the new content.
    io.data.copy_from_slice(&new);
    let mut expect = content(SMALL, 3);
    expect[B..2 * B].copy_from_slice(&content(B, 9));
    assert_eq!(read_all(&mut io, Mode::Shared).unwrap(), expect);
}

/// An older, shorter final state with the file cut back to it.
#[test]
fn an_older_shorter_file_is_detected_by_the_writer_and_pinned_undetected_otherwise() {
    let (mut io, mut writer, mut nonces) = build_with(&FILE_A, SMALL, 3);
    let old = io.data.clone();
    writer
        .write_at(&mut io, &mut nonces, &content(5 * B, 4), SMALL as u64)
        .unwrap();
    writer.flush(&mut io, &mut nonces).unwrap();
    let rem = writer.remembered().unwrap();
    io.data = old;
    // Page 0's digest is checked first: it is not the one last written.
    assert_eq!(
        open(&mut io, Mode::PRIVATE, Some(&rem)).unwrap_err(),
        FormatError::MetadataReplayed { group: 0 }
    );
    let mut buf = vec![0u8; B];
    assert_eq!(writer.len(&mut io), Ok((SMALL + 5 * B) as u64));
    assert!(matches!(
        writer.read_at(&mut io, &mut buf, SMALL as u64 + 100),
        Err(FormatError::Truncated { group: 0 })
    ));
    // KNOWN LIMIT (FORMAT.md §12).
    assert_eq!(
        read_all(&mut io, Mode::Shared).unwrap(),
        content(SMALL, 3),
        "an older shorter state reads cleanly without remembered state (known limit)"
    );
}

/// An older page that contradicts the length (group 0 final while group 1
/// exists) is detected by everyone at open.
#[test]
fn an_older_page_that_contradicts_the_length_is_detected_by_everyone() {
    let (mut io, mut writer, mut nonces) = build_with(&FILE_A, 250 * B, 3);
    let page0 = io.data[..PAGE_SIZE].to_vec();
    writer
        .write_at(&mut io, &mut nonces, &content(20 * B, 4), 250 * B as u64)
        .unwrap();
    writer.flush(&mut io, &mut nonces).unwrap();
    assert!(read_all(&mut io, Mode::Shared).is_ok());
    io.data[..PAGE_SIZE].copy_from_slice(&page0);
    for mode in MODES {
        assert_eq!(
            read_all(&mut io, mode),
            Err(FormatError::MetadataReplayed { group: 0 })
        );
    }
}

#[test]
fn a_file_of_another_key_or_epoch_is_refused() {
    let mut io = build(SMALL);
    assert_eq!(
        SealedFile::open(
            &mut io,
            &EpochKey::from_bytes([0x62; 32]),
            &EPOCH,
            &name(),
            Mode::Shared,
            None
        )
        .unwrap_err(),
        FormatError::HeaderAuthFailed
    );
    assert_eq!(
        SealedFile::open(&mut io, &key(), &[0xE6; 16], &name(), Mode::Shared, None).unwrap_err(),
        FormatError::ForeignEpoch
    );
    let mut empty = VecIo::default();
    assert_eq!(
        open(&mut empty, Mode::Shared, None).unwrap_err(),
        FormatError::EmptyFile
    );
}

/// The file grew by a group behind the writer's back (group 0 untouched, the
/// new last group unknown to the remembered state): the remembered length
/// catches it.
#[test]
fn a_file_grown_behind_the_writers_back_fails_the_remembered_length() {
    let len = 256 * B + 10;
    let (mut io, writer, mut nonces) = build_with(&FILE_A, len, 3);
    let rem = writer.remembered().unwrap();
    drop(writer);
    assert!(open(&mut io, Mode::PRIVATE, Some(&rem)).is_ok());
    let mut other = open(&mut io, Mode::Shared, None).unwrap();
    other
        .write_at(&mut io, &mut nonces, &[1; 10], 2 * 256 * B as u64)
        .unwrap();
    assert_eq!(
        open(&mut io, Mode::PRIVATE, Some(&rem)).unwrap_err(),
        FormatError::RememberedLength {
            remembered: len as u64,
            found: 2 * 256 * B as u64 + 10
        }
    );
}

/// A sparse file made to look huge: reads past the data give zeros.
struct HugeIo<'a> {
    data: &'a [u8],
    len: u64,
}

impl PhysicalIo for HugeIo<'_> {
    type Error = FormatError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        let n = buf.len().min(self.len.saturating_sub(off) as usize);
        buf[..n].fill(0);
        if let Some(real) = self.data.get(off as usize..) {
            let k = real.len().min(n);
            buf[..k].copy_from_slice(&real[..k]);
        }
        Ok(n)
    }
    fn write_all_at(&mut self, _: &[u8], _: u64) -> Result<(), FormatError> {
        panic!("a reader wrote");
    }
    fn set_len(&mut self, _: u64) -> Result<(), FormatError> {
        panic!("a reader truncated");
    }
    fn len(&mut self) -> Result<u64, FormatError> {
        Ok(self.len)
    }
}

/// The physical size is the attacker's: opening a file extended to 2^50
/// bytes (half a billion groups) must fail on the hole where its last
/// metadata page should be, without sizing anything from that size.
#[test]
fn a_huge_sparse_physical_size_does_not_drive_allocation() {
    let io = build(SMALL);
    let len = (1u64 << 50) + 12_345;
    let last_group = (len - 1) / PAGE_SIZE as u64 / 257;
    for mode in MODES {
        let mut t = HugeIo {
            data: &io.data,
            len,
        };
        let e = open(&mut t, mode, None).unwrap_err();
        assert_eq!(e, FormatError::MetadataAuthFailed { group: last_group });
    }
    // Control: the true size opens.
    let mut t = HugeIo {
        data: &io.data,
        len: io.data.len() as u64,
    };
    assert!(open(&mut t, Mode::PRIVATE, None).is_ok());
}

// ---- Long-lived shared handles (FORMAT.md §8.1): a handle that cached a
// verified page revalidates it by its 28-byte MAC trailer at each call.

/// Read everything through an existing handle (its cached pages are used
/// once their trailers are found unchanged).
fn read_all_via(f: &mut SealedFile, io: &mut VecIo) -> Result<Vec<u8>, FormatError> {
    let len = f.len(io)? as usize;
    let mut buf = vec![0u8; len + 10];
    let n = f.read_at(io, &mut buf, 0)?;
    assert_eq!(n, len, "short read without an error");
    buf.truncate(n);
    Ok(buf)
}

/// Another genuine page of the same group (an older one) put back: its
/// trailer differs from the cached copy's, so the long-lived handle reloads
/// it and judges it exactly as a fresh handle does.
#[test]
fn a_long_lived_shared_handle_reloads_and_judges_an_older_page() {
    let (mut io, mut writer, mut nonces) = build_with(&FILE_A, BIG, 3);
    let page0 = io.data[..PAGE_SIZE].to_vec();
    writer
        .write_at(&mut io, &mut nonces, &content(B, 9), B as u64)
        .unwrap();
    writer.flush(&mut io, &mut nonces).unwrap();
    let mut expect = content(BIG, 3);
    expect[B..2 * B].copy_from_slice(&content(B, 9));
    let mut reader = open(&mut io, Mode::Shared, None).unwrap();
    // Control: it reads the current version, twice (the second time from
    // its revalidated pages).
    assert_eq!(read_all_via(&mut reader, &mut io).unwrap(), expect);
    assert_eq!(read_all_via(&mut reader, &mut io).unwrap(), expect);
    io.data[..PAGE_SIZE].copy_from_slice(&page0);
    assert_eq!(
        read_all_via(&mut reader, &mut io),
        Err(FormatError::BlockAuthFailed { index: 1 })
    );
    assert_eq!(
        read_all(&mut io, Mode::Shared),
        Err(FormatError::BlockAuthFailed { index: 1 })
    );
}

/// The cached page is the one that is old: the handle verified group 0 when
/// it was final, a writer then appended group 1, and the old page 0 (with
/// the trailer the handle cached) was put back. Its trailer matches, but
/// its state contradicts the length: replayed, as for a fresh handle.
#[test]
fn a_long_lived_shared_handle_checks_a_revalidated_page_against_the_length() {
    let (mut io, mut writer, mut nonces) = build_with(&FILE_A, 250 * B, 3);
    let page0 = io.data[..PAGE_SIZE].to_vec();
    let mut reader = open(&mut io, Mode::Shared, None).unwrap();
    assert_eq!(
        read_all_via(&mut reader, &mut io).unwrap(),
        content(250 * B, 3)
    );
    writer
        .write_at(&mut io, &mut nonces, &content(20 * B, 4), 250 * B as u64)
        .unwrap();
    writer.flush(&mut io, &mut nonces).unwrap();
    let mut expect = content(250 * B, 3);
    expect.extend_from_slice(&content(20 * B, 4));
    // Control: the untampered copy reads (the changed trailer forces a
    // reload of page 0).
    let mut control = io.clone();
    let mut reader2 = open(&mut io, Mode::Shared, None).unwrap();
    read_all_via(&mut reader2, &mut io).unwrap();
    io.data[..PAGE_SIZE].copy_from_slice(&page0);
    assert_eq!(
        read_all_via(&mut reader, &mut io),
        Err(FormatError::MetadataReplayed { group: 0 })
    );
    assert_eq!(
        read_all(&mut io, Mode::Shared),
        Err(FormatError::MetadataReplayed { group: 0 })
    );
    // reader2 had cached the current page 0: the old one has another
    // trailer, is reloaded and contradicts the length.
    assert_eq!(
        read_all_via(&mut reader2, &mut io),
        Err(FormatError::MetadataReplayed { group: 0 })
    );
    assert_eq!(read_all_via(&mut reader, &mut control).unwrap(), expect);
    assert_eq!(read_all_via(&mut reader2, &mut control).unwrap(), expect);
}

/// Every byte of page 0 flipped under a long-lived shared handle: a flip in
/// the trailer makes it reload and fail the MAC; a flip in the body with the
/// trailer kept leaves the cached genuine copy in use, so the read returns
/// the genuine content, never the edited bytes. A fresh handle fails the MAC
/// for every flip (control of the flips).
#[test]
fn a_long_lived_shared_handle_never_uses_an_edited_page_body() {
    let mut io = build(SMALL);
    let genuine = content(SMALL, 3);
    let mut reader = open(&mut io, Mode::Shared, None).unwrap();
    assert_eq!(read_all_via(&mut reader, &mut io).unwrap(), genuine);
    for pos in HEADER_LEN..PAGE_SIZE {
        io.data[pos] ^= 1 << (pos % 8);
        let got = read_all_via(&mut reader, &mut io);
        if pos >= PAGE_SIZE - 28 {
            assert_eq!(
                got,
                Err(FormatError::MetadataAuthFailed { group: 0 }),
                "byte {pos}"
            );
        } else {
            assert!(got.as_ref() == Ok(&genuine), "byte {pos}: {got:?}");
        }
        if pos % 61 == 0 || pos >= PAGE_SIZE - 28 {
            assert_eq!(
                read_all(&mut io, Mode::Shared),
                Err(FormatError::MetadataAuthFailed { group: 0 }),
                "byte {pos}"
            );
        }
        io.data[pos] ^= 1 << (pos % 8);
        // Untampered again: a handle that reloaded reads it again.
        if pos >= PAGE_SIZE - 28 {
            assert_eq!(read_all_via(&mut reader, &mut io).unwrap(), genuine);
        }
    }
}

/// An older data block and its older entry pasted into the current page,
/// the current trailer kept: the long-lived handle uses its cached (current)
/// entry, and the old block fails its tag; a fresh handle fails the page's
/// MAC. Nobody reads the old block.
#[test]
fn an_older_block_with_its_entry_pasted_under_the_current_trailer_is_detected() {
    let (mut io, mut writer, mut nonces) = build_with(&FILE_A, SMALL, 3);
    let block1 = data_offset(1) as usize..data_offset(1) as usize + B;
    let entry1 = 128 + 28..128 + 2 * 28;
    let old_block = io.data[block1.clone()].to_vec();
    let old_entry = io.data[entry1.clone()].to_vec();
    writer
        .write_at(&mut io, &mut nonces, &content(B, 9), B as u64)
        .unwrap();
    writer.flush(&mut io, &mut nonces).unwrap();
    let mut expect = content(SMALL, 3);
    expect[B..2 * B].copy_from_slice(&content(B, 9));
    let mut reader = open(&mut io, Mode::Shared, None).unwrap();
    // Control.
    assert_eq!(read_all_via(&mut reader, &mut io).unwrap(), expect);
    io.data[block1].copy_from_slice(&old_block);
    io.data[entry1].copy_from_slice(&old_entry);
    assert_eq!(
        read_all_via(&mut reader, &mut io),
        Err(FormatError::BlockAuthFailed { index: 1 })
    );
    assert_eq!(
        read_all(&mut io, Mode::Shared),
        Err(FormatError::MetadataAuthFailed { group: 0 })
    );
}

/// A long-lived handle whose cached final page revalidates still checks the
/// physical size against it at every call (FORMAT.md §7.1): cuts and
/// appended bytes are errors.
#[test]
fn a_long_lived_shared_handle_checks_the_size_at_every_call() {
    let mut io = build(BIG);
    let mut reader = open(&mut io, Mode::Shared, None).unwrap();
    assert_eq!(read_all_via(&mut reader, &mut io).unwrap(), content(BIG, 3));
    let full = io.data.clone();
    for cut in [full.len() - 1, full.len() - 500, data_offset(265) as usize] {
        io.data.truncate(cut);
        assert_eq!(
            reader.len(&mut io),
            Err(FormatError::Truncated { group: 1 }),
            "cut {cut}"
        );
        io.data = full.clone();
        assert_eq!(reader.len(&mut io), Ok(BIG as u64));
    }
    io.data.push(0);
    assert!(matches!(
        reader.len(&mut io),
        Err(FormatError::SizeMismatch { .. })
    ));
    io.data.pop();
    assert_eq!(read_all_via(&mut reader, &mut io).unwrap(), content(BIG, 3));
}
