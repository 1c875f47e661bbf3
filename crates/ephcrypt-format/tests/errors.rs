//! Every error path of the crate (FORMAT.md §10), and that no message
//! carries secrets or names.

use ephcrypt_format::layout::MAGIC;
use ephcrypt_format::{
    logical_to_physical_size, physical_to_logical_size, sniff, EpochKey, FileCipher, FileName,
    FormatError, Header, Mode, NonceSequence, NonceSource, PhysicalIo, SealedFile, Sniff, VecIo,
    MAX_LOGICAL_SIZE, PAGE_SIZE,
};

const EK: [u8; 32] = [0x5C; 32];
const EPOCH: [u8; 16] = [0xE1; 16];
const FILE: [u8; 16] = [0xF2; 16];
const NAME: &[u8] = b"16384/t3_16400_fsm.1";

fn key() -> EpochKey {
    EpochKey::from_bytes(EK)
}

fn name() -> FileName<'static> {
    FileName::new(2, NAME).unwrap()
}

fn header() -> [u8; 64] {
    FileCipher::create(&key(), &EPOCH, &FILE, &name())
        .unwrap()
        .1
}

fn open_err(h: &[u8; 64]) -> FormatError {
    FileCipher::open(&key(), &EPOCH, &name(), h).unwrap_err()
}

fn create(io: &mut VecIo, nonces: &mut NonceSequence, mode: Mode) -> SealedFile {
    SealedFile::create(io, nonces, &key(), &EPOCH, &FILE, &name(), mode).unwrap()
}

fn open(io: &mut VecIo, mode: Mode) -> Result<SealedFile, FormatError> {
    SealedFile::open(io, &key(), &EPOCH, &name(), mode, None)
}

#[test]
fn empty_file_is_its_own_error() {
    let mut io = VecIo::default();
    for mode in [Mode::Shared, Mode::PRIVATE] {
        assert_eq!(open(&mut io, mode).unwrap_err(), FormatError::EmptyFile);
    }
    assert_eq!(physical_to_logical_size(0), Ok(0));
    assert_eq!(sniff(&[]), Sniff::NotOurs);
    // A created file is never empty: create writes page 0 at once.
    let mut nonces = NonceSequence::new([1; 8]);
    let f = create(&mut io, &mut nonces, Mode::Shared);
    assert_eq!(io.data.len(), PAGE_SIZE);
    drop(f);
    assert!(open(&mut io, Mode::Shared).is_ok());
    // A shared handle whose file was emptied behind its back.
    let mut f = open(&mut io, Mode::Shared).unwrap();
    io.data.clear();
    assert_eq!(f.len(&mut io), Err(FormatError::EmptyFile));
}

#[test]
fn bad_magic() {
    let mut h = header();
    h[0] ^= 1;
    assert_eq!(Header::parse(&h), Err(FormatError::BadMagic));
    assert_eq!(open_err(&h), FormatError::BadMagic);
    assert_eq!(sniff(&h), Sniff::NotOurs);
    // A short foreign file is "not ours", not "truncated".
    for data in [b"hello world".to_vec(), vec![0; 100], vec![0; 9000]] {
        let mut io = VecIo { data };
        assert_eq!(
            open(&mut io, Mode::Shared).unwrap_err(),
            FormatError::BadMagic
        );
    }
}

#[test]
fn unsupported_version_header_length_block_size() {
    // A v1 file (same header layout, version 1) is ours but unsupported.
    let mut v1 = header();
    v1[8] = 1;
    assert_eq!(Header::parse(&v1), Err(FormatError::UnsupportedVersion(1)));
    assert_eq!(open_err(&v1), FormatError::UnsupportedVersion(1));
    assert_eq!(sniff(&v1), Sniff::Corrupt);
    let mut io = VecIo { data: v1.to_vec() };
    io.data.extend_from_slice(&[7; 8220 + 93]);
    assert_eq!(
        open(&mut io, Mode::PRIVATE).unwrap_err(),
        FormatError::UnsupportedVersion(1)
    );

    let mut h = header();
    h[8] = 3;
    assert_eq!(open_err(&h), FormatError::UnsupportedVersion(3));
    let mut h = header();
    h[10] = 65;
    assert_eq!(open_err(&h), FormatError::UnsupportedHeaderLength(65));
    assert_eq!(sniff(&h), Sniff::Corrupt);
    let mut h = header();
    h[12..16].copy_from_slice(&4096u32.to_le_bytes());
    assert_eq!(open_err(&h), FormatError::UnsupportedBlockSize(4096));
    assert_eq!(sniff(&h), Sniff::Corrupt);
    // Control: the genuine header.
    assert_eq!(sniff(&header()), Sniff::Ours { epoch_id: EPOCH });
    assert_eq!(Header::parse(&header()).unwrap().to_bytes(), header());
}

#[test]
fn zero_file_id() {
    let mut h = header();
    h[32..48].fill(0);
    assert_eq!(Header::parse(&h), Err(FormatError::ZeroFileId));
    assert_eq!(open_err(&h), FormatError::ZeroFileId);
    assert_eq!(sniff(&h), Sniff::Corrupt);
    assert_eq!(
        FileCipher::create(&key(), &EPOCH, &[0; 16], &name()).unwrap_err(),
        FormatError::ZeroFileId
    );
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new([1; 8]);
    assert_eq!(
        SealedFile::create(
            &mut io,
            &mut nonces,
            &key(),
            &EPOCH,
            &[0; 16],
            &name(),
            Mode::PRIVATE
        )
        .unwrap_err(),
        FormatError::ZeroFileId
    );
    assert!(io.data.is_empty());
}

#[test]
fn foreign_epoch() {
    let h = header();
    let e = FileCipher::open(&key(), &[0xE2; 16], &name(), &h).unwrap_err();
    assert_eq!(e, FormatError::ForeignEpoch);
    assert!(
        e.to_string().contains("written under another key epoch"),
        "{e}"
    );
    assert_eq!(sniff(&h), Sniff::Ours { epoch_id: EPOCH });
}

#[test]
fn header_auth_failed_for_other_key_tag_or_name() {
    let h = header();
    assert!(FileCipher::open(&key(), &EPOCH, &name(), &h).is_ok());
    assert_eq!(
        FileCipher::open(&EpochKey::from_bytes([0x5D; 32]), &EPOCH, &name(), &h).unwrap_err(),
        FormatError::HeaderAuthFailed
    );
    for i in [32, 47, 48, 63] {
        let mut h = header();
        h[i] ^= 0x80;
        assert_eq!(open_err(&h), FormatError::HeaderAuthFailed, "byte {i}");
    }
    let other = FileName::new(2, b"16384/t3_16400_fsm.2").unwrap();
    assert_eq!(
        FileCipher::open(&key(), &EPOCH, &other, &h).unwrap_err(),
        FormatError::HeaderAuthFailed
    );
}

#[test]
fn name_too_long() {
    let long = [b'x'; 256];
    assert_eq!(
        FileName::new(1, &long),
        Err(FormatError::NameTooLong { len: 256 })
    );
    assert!(FileName::new(1, &long[..255]).is_ok());
}

#[test]
fn truncated_header_and_corrupt_sizes() {
    assert_eq!(
        Header::parse(&header()[..63]),
        Err(FormatError::TruncatedHeader { physical_len: 63 })
    );
    assert_eq!(sniff(&header()[..63]), Sniff::Corrupt);
    assert_eq!(sniff(&MAGIC[..7]), Sniff::NotOurs);
    for cut in [30usize, 64, 100, PAGE_SIZE - 1] {
        let mut io = VecIo::default();
        let mut nonces = NonceSequence::new([1; 8]);
        drop(create(&mut io, &mut nonces, Mode::PRIVATE));
        io.data.truncate(cut);
        assert_eq!(
            open(&mut io, Mode::PRIVATE).unwrap_err(),
            FormatError::TruncatedHeader {
                physical_len: cut as u64
            }
        );
        assert_eq!(
            physical_to_logical_size(cut as u64),
            Err(FormatError::TruncatedHeader {
                physical_len: cut as u64
            })
        );
    }
    // Ending inside the metadata page of group 1.
    let p = 257 * 8192 + 10;
    assert_eq!(
        physical_to_logical_size(p),
        Err(FormatError::CorruptPhysicalSize { physical_len: p })
    );
}

#[test]
fn invalid_arguments() {
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new([1; 8]);
    for cache_groups in [0u8, 1, 65, 255] {
        let mode = Mode::Private { cache_groups };
        assert!(matches!(
            SealedFile::create(&mut io, &mut nonces, &key(), &EPOCH, &FILE, &name(), mode),
            Err(FormatError::InvalidArgument(_))
        ));
        assert!(io.data.is_empty());
    }
    let mut f = create(&mut io, &mut nonces, Mode::PRIVATE);
    // create on a non-empty file.
    assert!(matches!(
        SealedFile::create(
            &mut io,
            &mut nonces,
            &key(),
            &EPOCH,
            &FILE,
            &name(),
            Mode::PRIVATE
        ),
        Err(FormatError::InvalidArgument(_))
    ));
    // Remembered state is for private files.
    let rem = f.remembered().unwrap();
    assert!(matches!(
        SealedFile::open(&mut io, &key(), &EPOCH, &name(), Mode::Shared, Some(&rem)),
        Err(FormatError::InvalidArgument(_))
    ));
    let shared = open(&mut io, Mode::Shared).unwrap();
    assert!(matches!(
        shared.remembered(),
        Err(FormatError::InvalidArgument(_))
    ));
    // Unflushed.
    f.write_at(&mut io, &mut nonces, b"x", 0).unwrap();
    assert!(f.is_dirty());
    assert_eq!(f.remembered(), Err(FormatError::Unflushed));
    f.flush(&mut io, &mut nonces).unwrap();
    assert!(f.remembered().is_ok());
}

#[test]
fn remembered_file_id() {
    let mut a = VecIo::default();
    let mut nonces = NonceSequence::new([1; 8]);
    let f = create(&mut a, &mut nonces, Mode::PRIVATE);
    let rem = f.remembered().unwrap();
    assert_eq!(rem.file_id(), FILE);
    assert_eq!(rem.len(), 0);
    assert_eq!(rem.groups(), 1);
    // Control.
    assert!(SealedFile::open(&mut a, &key(), &EPOCH, &name(), Mode::PRIVATE, Some(&rem)).is_ok());
    // Another file (other id) in its place.
    let mut b = VecIo::default();
    SealedFile::create(
        &mut b,
        &mut nonces,
        &key(),
        &EPOCH,
        &[0xF3; 16],
        &name(),
        Mode::PRIVATE,
    )
    .unwrap();
    assert_eq!(
        SealedFile::open(&mut b, &key(), &EPOCH, &name(), Mode::PRIVATE, Some(&rem)).unwrap_err(),
        FormatError::RememberedFileId
    );
}

#[test]
fn block_length_and_buffer_errors() {
    let (c, _) = FileCipher::create(&key(), &EPOCH, &FILE, &name()).unwrap();
    let mut out = vec![0u8; 8192];
    let n = [0u8; 12];
    assert_eq!(
        c.seal_block(0, n, &[], &mut out),
        Err(FormatError::InvalidBlockLength { len: 0 })
    );
    assert_eq!(
        c.seal_block(0, n, &[0; 8193], &mut out),
        Err(FormatError::InvalidBlockLength { len: 8193 })
    );
    assert_eq!(
        c.seal_block(0, n, &[0; 100], &mut out[..99]),
        Err(FormatError::BufferTooSmall {
            needed: 100,
            got: 99
        })
    );
    let tag = c.seal_block(4, n, &[9; 100], &mut out).unwrap();
    let mut plain = [0u8; 8192];
    assert_eq!(
        c.open_block(4, &n, &tag, &out[..100], &mut plain[..99]),
        Err(FormatError::BufferTooSmall {
            needed: 100,
            got: 99
        })
    );
    assert_eq!(
        c.open_block(4, &n, &tag, &[], &mut plain),
        Err(FormatError::InvalidBlockLength { len: 0 })
    );
    assert_eq!(
        c.open_block_in_place(4, &n, &tag, &mut [0; 8193]),
        Err(FormatError::InvalidBlockLength { len: 8193 })
    );
    // Control.
    assert_eq!(c.open_block(4, &n, &tag, &out[..100], &mut plain), Ok(100));
}

#[test]
fn block_auth_failed_zeroes_output() {
    let (c, _) = FileCipher::create(&key(), &EPOCH, &FILE, &name()).unwrap();
    let mut ct = vec![0u8; 500];
    let nonce = [3; 12];
    let tag = c.seal_block(2, nonce, &[0xAA; 500], &mut ct).unwrap();
    ct[20] ^= 1;
    let mut plain = [0x77u8; 8192];
    assert_eq!(
        c.open_block(2, &nonce, &tag, &ct, &mut plain),
        Err(FormatError::BlockAuthFailed { index: 2 })
    );
    assert!(
        plain[..500].iter().all(|&b| b == 0),
        "unauthenticated bytes returned"
    );
    assert!(
        plain[500..].iter().all(|&b| b == 0x77),
        "bytes past the block touched"
    );
    let mut inplace = ct.clone();
    assert_eq!(
        c.open_block_in_place(2, &nonce, &tag, &mut inplace),
        Err(FormatError::BlockAuthFailed { index: 2 })
    );
    assert!(inplace.iter().all(|&b| b == 0));
}

/// A nonce source that never recovers, to reach the exhaustion error.
struct Strict(NonceSequence);

impl NonceSource for Strict {
    fn next_nonce(&mut self) -> ephcrypt_format::Result<[u8; 12]> {
        self.0.next()
    }
}

#[test]
fn nonce_space_exhausted_changes_nothing() {
    let mut s = NonceSequence::with_counter([1; 8], u32::MAX);
    s.next().unwrap();
    assert_eq!(s.next(), Err(FormatError::NonceSpaceExhausted));

    for mode in [Mode::Shared, Mode::PRIVATE] {
        let mut io = VecIo::default();
        let mut nonces = NonceSequence::new([1; 8]);
        let mut f = create(&mut io, &mut nonces, mode);
        f.write_at(&mut io, &mut nonces, b"ab", 0).unwrap();
        f.flush(&mut io, &mut nonces).unwrap();
        let mut strict = Strict(NonceSequence::with_counter([2; 8], u32::MAX));
        strict.0.next().unwrap();
        if mode != Mode::Shared {
            // Private mode holds a write's partial last block unsealed: the
            // write takes no nonce, the failure shows when it is sealed, and
            // the held bytes are kept for a later try (FORMAT.md §8).
            assert_eq!(f.write_at(&mut io, &mut strict, b"cd", 2), Ok(2));
            assert_eq!(
                f.flush(&mut io, &mut strict),
                Err(FormatError::NonceSpaceExhausted)
            );
            assert!(f.is_dirty());
            let mut buf = [0u8; 10];
            assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(4));
            assert_eq!(&buf[..4], b"abcd");
            assert_eq!(
                f.set_len(&mut io, &mut strict, 1),
                Err(FormatError::NonceSpaceExhausted)
            );
            strict.0.reseed([3; 8]);
            f.flush(&mut io, &mut strict).unwrap();
            assert!(!f.is_dirty());
            assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(4));
            assert_eq!(&buf[..4], b"abcd");
            continue;
        }
        assert_eq!(
            f.write_at(&mut io, &mut strict, b"cd", 2),
            Err(FormatError::NonceSpaceExhausted)
        );
        assert_eq!(
            f.set_len(&mut io, &mut strict, 1),
            Err(FormatError::NonceSpaceExhausted)
        );
        // The failed calls changed nothing; a fresh stream continues.
        let mut buf = [0u8; 10];
        assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(2));
        assert_eq!(&buf[..2], b"ab");
        strict.0.reseed([3; 8]);
        assert_eq!(f.write_at(&mut io, &mut strict, b"cd", 2), Ok(2));
        assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(4));
        assert_eq!(&buf[..4], b"abcd");
    }
}

#[test]
fn offset_too_large() {
    assert_eq!(
        logical_to_physical_size(MAX_LOGICAL_SIZE + 1),
        Err(FormatError::OffsetTooLarge)
    );
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new([1; 8]);
    let mut f = create(&mut io, &mut nonces, Mode::PRIVATE);
    for off in [MAX_LOGICAL_SIZE, u64::MAX] {
        assert_eq!(
            f.write_at(&mut io, &mut nonces, b"x", off),
            Err(FormatError::OffsetTooLarge)
        );
    }
    assert_eq!(
        f.set_len(&mut io, &mut nonces, MAX_LOGICAL_SIZE + 1),
        Err(FormatError::OffsetTooLarge)
    );
    // Reads that far are simply past EOF.
    let mut buf = [0u8; 4];
    assert_eq!(f.read_at(&mut io, &mut buf, u64::MAX - 1), Ok(0));
    assert_eq!(f.read_at(&mut io, &mut buf, MAX_LOGICAL_SIZE), Ok(0));
    assert_eq!(io.data.len(), PAGE_SIZE);
}

/// I/O errors of the caller's type pass through unchanged.
#[derive(Debug, PartialEq)]
enum MyError {
    Format(FormatError),
    Disk,
}

impl From<FormatError> for MyError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

struct FailingIo {
    inner: VecIo,
    fail_writes: bool,
}

impl PhysicalIo for FailingIo {
    type Error = MyError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, MyError> {
        Ok(self.inner.read_at(buf, off)?)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), MyError> {
        if self.fail_writes {
            return Err(MyError::Disk);
        }
        Ok(self.inner.write_all_at(buf, off)?)
    }
    fn set_len(&mut self, len: u64) -> Result<(), MyError> {
        if self.fail_writes {
            return Err(MyError::Disk);
        }
        Ok(self.inner.set_len(len)?)
    }
    fn len(&mut self) -> Result<u64, MyError> {
        Ok(self.inner.len()?)
    }
}

#[test]
fn caller_io_errors_pass_through_and_leave_the_file_readable() {
    for mode in [Mode::Shared, Mode::Private { cache_groups: 2 }] {
        let mut io = FailingIo {
            inner: VecIo::default(),
            fail_writes: false,
        };
        let mut nonces = NonceSequence::new([1; 8]);
        let mut f =
            SealedFile::create(&mut io, &mut nonces, &key(), &EPOCH, &FILE, &name(), mode).unwrap();
        f.write_at(&mut io, &mut nonces, &[5; 300], 0).unwrap();
        f.flush(&mut io, &mut nonces).unwrap();
        io.fail_writes = true;
        if mode != Mode::Shared {
            // A held partial block: no I/O yet, the failure comes when it is
            // sealed, and the acknowledged bytes stay readable meanwhile.
            assert_eq!(f.write_at(&mut io, &mut nonces, &[6; 10], 10), Ok(10));
            assert_eq!(f.set_len(&mut io, &mut nonces, 10), Err(MyError::Disk));
            assert_eq!(
                f.write_at(&mut io, &mut nonces, &[6; 10], 5 * 8192),
                Err(MyError::Disk)
            );
            let mut buf = [0u8; 300];
            assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(300));
            assert!(buf[10..20].iter().all(|&b| b == 6));
            assert_eq!(
                f.len(&mut io),
                Ok(300),
                "the failed extension does not count"
            );
            assert_eq!(f.flush(&mut io, &mut nonces), Err(MyError::Disk));
            io.fail_writes = false;
            f.flush(&mut io, &mut nonces).unwrap();
            let mut g = SealedFile::open(&mut io, &key(), &EPOCH, &name(), mode, None).unwrap();
            assert_eq!(g.read_at(&mut io, &mut buf, 0), Ok(300));
            assert!(buf[10..20].iter().all(|&b| b == 6));
            assert!(buf[..10].iter().chain(&buf[20..]).all(|&b| b == 5));
            continue;
        }
        assert_eq!(
            f.write_at(&mut io, &mut nonces, &[6; 10], 10),
            Err(MyError::Disk)
        );
        assert_eq!(f.set_len(&mut io, &mut nonces, 10), Err(MyError::Disk));
        assert_eq!(
            f.write_at(&mut io, &mut nonces, &[6; 10], 5 * 8192),
            Err(MyError::Disk)
        );
        // Neither the plaintext cache nor the metadata kept the unwritten
        // bytes: reads show the disk.
        let mut buf = [0u8; 300];
        assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(300));
        assert!(buf.iter().all(|&b| b == 5));
        assert_eq!(f.len(&mut io), Ok(300));
        // A failed write-back stays dirty and succeeds later.
        if mode != Mode::Shared {
            io.fail_writes = false;
            f.write_at(&mut io, &mut nonces, &[7; 10], 0).unwrap();
            io.fail_writes = true;
            assert_eq!(f.flush(&mut io, &mut nonces), Err(MyError::Disk));
            assert!(f.is_dirty());
            io.fail_writes = false;
            f.flush(&mut io, &mut nonces).unwrap();
            assert!(!f.is_dirty());
        }
        drop(f);
        let mut g = SealedFile::open(&mut io, &key(), &EPOCH, &name(), Mode::Shared, None).unwrap();
        assert_eq!(g.read_at(&mut io, &mut buf, 0), Ok(300));
    }
}

#[test]
fn messages_never_carry_secrets_or_names() {
    let all = [
        FormatError::EmptyFile,
        FormatError::BadMagic,
        FormatError::UnsupportedVersion(9),
        FormatError::UnsupportedHeaderLength(9),
        FormatError::UnsupportedBlockSize(9),
        FormatError::ForeignEpoch,
        FormatError::ZeroFileId,
        FormatError::HeaderAuthFailed,
        FormatError::TruncatedHeader { physical_len: 3 },
        FormatError::CorruptPhysicalSize { physical_len: 3 },
        FormatError::Truncated { group: 3 },
        FormatError::SizeMismatch { physical_len: 3 },
        FormatError::MetadataAuthFailed { group: 3 },
        FormatError::MetadataReplayed { group: 3 },
        FormatError::BlockAuthFailed { index: 3 },
        FormatError::RememberedFileId,
        FormatError::RememberedLength {
            remembered: 3,
            found: 2,
        },
        FormatError::Unflushed,
        FormatError::NameTooLong { len: 300 },
        FormatError::InvalidArgument("x"),
        FormatError::InvalidBlockLength { len: 3 },
        FormatError::BufferTooSmall { needed: 3, got: 2 },
        FormatError::NonceSpaceExhausted,
        FormatError::OffsetTooLarge,
        FormatError::OutOfMemory,
        FormatError::RandomFailed,
        FormatError::CryptoFailure,
    ];
    for e in all {
        let msg = e.to_string();
        assert!(!msg.is_empty());
        // Only small numbers (indexes, lengths, versions) appear: no hex dump.
        let longest_hex_run = msg
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_hex_run < 8, "{msg}");
        assert!(!format!("{e:?}").contains("5c5c"), "{e:?}");
    }
    // Secret-holding types redact themselves; names are not printed.
    let k = key();
    assert_eq!(format!("{k:?}"), "EpochKey(<redacted>)");
    let (c, _) = FileCipher::create(&k, &EPOCH, &FILE, &name()).unwrap();
    assert!(!format!("{c:?}").contains("92"), "{c:?}");
    assert!(!format!("{:?}", name()).contains("16400"));
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new([1; 8]);
    let f = create(&mut io, &mut nonces, Mode::PRIVATE);
    let s = format!("{f:?} {:?}", f.remembered().unwrap());
    assert!(s.starts_with("SealedFile") && !s.contains("16400"), "{s}");
}
