//! Every error path of the crate, and that no message carries secrets.

use ephcrypt_format::layout::MAGIC;
use ephcrypt_format::{
    logical_to_physical_size, physical_to_logical_size, sniff, EpochKey, FileCipher, FormatError,
    Header, NonceSequence, NonceSource, PhysicalIo, SealedFile, Sniff, VecIo, MAX_LOGICAL_SIZE,
    PHYS_BLOCK_SIZE,
};

const EK: [u8; 32] = [0x5C; 32];
const EPOCH: [u8; 16] = [0xE1; 16];
const FILE: [u8; 16] = [0xF2; 16];

fn key() -> EpochKey {
    EpochKey::from_bytes(EK)
}

fn header() -> [u8; 64] {
    FileCipher::create(&key(), &EPOCH, &FILE).unwrap().1
}

fn open_err(h: &[u8; 64]) -> FormatError {
    FileCipher::open(&key(), &EPOCH, h).unwrap_err()
}

#[test]
fn bad_magic() {
    let mut h = header();
    h[0] ^= 1;
    assert_eq!(Header::parse(&h), Err(FormatError::BadMagic));
    assert_eq!(open_err(&h), FormatError::BadMagic);
    assert_eq!(sniff(&h), Sniff::NotOurs);
    // A short foreign file is "not ours", not "truncated".
    let mut io = VecIo {
        data: b"hello world".to_vec(),
    };
    assert_eq!(
        SealedFile::open(&mut io, &key(), &EPOCH).unwrap_err(),
        FormatError::BadMagic
    );
    let mut io = VecIo { data: vec![0; 100] };
    assert_eq!(
        SealedFile::open(&mut io, &key(), &EPOCH).unwrap_err(),
        FormatError::BadMagic
    );
}

#[test]
fn unsupported_version_header_length_block_size() {
    let mut h = header();
    h[8] = 2;
    assert_eq!(Header::parse(&h), Err(FormatError::UnsupportedVersion(2)));
    assert_eq!(open_err(&h), FormatError::UnsupportedVersion(2));
    assert_eq!(sniff(&h), Sniff::Corrupt);
    h[8] = 0;
    assert_eq!(open_err(&h), FormatError::UnsupportedVersion(0));

    let mut h = header();
    h[10] = 65;
    assert_eq!(open_err(&h), FormatError::UnsupportedHeaderLength(65));
    assert_eq!(sniff(&h), Sniff::Corrupt);

    let mut h = header();
    h[12..16].copy_from_slice(&4096u32.to_le_bytes());
    assert_eq!(open_err(&h), FormatError::UnsupportedBlockSize(4096));
    assert_eq!(sniff(&h), Sniff::Corrupt);
}

#[test]
fn zero_file_id() {
    let mut h = header();
    h[32..48].fill(0);
    assert_eq!(Header::parse(&h), Err(FormatError::ZeroFileId));
    assert_eq!(open_err(&h), FormatError::ZeroFileId);
    assert_eq!(sniff(&h), Sniff::Corrupt);
    assert_eq!(
        FileCipher::create(&key(), &EPOCH, &[0; 16]).unwrap_err(),
        FormatError::ZeroFileId
    );
    let mut io = VecIo::default();
    assert_eq!(
        SealedFile::create(&mut io, &key(), &EPOCH, &[0; 16]).unwrap_err(),
        FormatError::ZeroFileId
    );
    assert_eq!(
        SealedFile::open_or_init(&mut io, &key(), &EPOCH, &[0; 16]).unwrap_err(),
        FormatError::ZeroFileId
    );
    assert!(io.data.is_empty());
}

#[test]
fn foreign_epoch() {
    let h = header();
    let e = FileCipher::open(&key(), &[0xE2; 16], &h).unwrap_err();
    assert_eq!(e, FormatError::ForeignEpoch);
    assert!(
        e.to_string().contains("written under another key epoch"),
        "{e}"
    );
    assert_eq!(sniff(&h), Sniff::Ours { epoch_id: EPOCH });
    let mut io = VecIo { data: h.to_vec() };
    assert_eq!(
        SealedFile::open(&mut io, &key(), &[0; 16]).unwrap_err(),
        FormatError::ForeignEpoch
    );
}

#[test]
fn header_auth_failed() {
    // Same epoch id, another key.
    let h = header();
    assert_eq!(
        FileCipher::open(&EpochKey::from_bytes([0x5D; 32]), &EPOCH, &h).unwrap_err(),
        FormatError::HeaderAuthFailed
    );
    // Tag or file id changed.
    for i in [32, 47, 48, 63] {
        let mut h = header();
        h[i] ^= 0x80;
        assert_eq!(open_err(&h), FormatError::HeaderAuthFailed, "byte {i}");
    }
}

#[test]
fn truncated_header_and_corrupt_sizes() {
    assert_eq!(
        Header::parse(&header()[..63]),
        Err(FormatError::TruncatedHeader { physical_len: 63 })
    );
    assert_eq!(
        Header::parse(&[]),
        Err(FormatError::TruncatedHeader { physical_len: 0 })
    );
    assert_eq!(sniff(&header()[..63]), Sniff::Corrupt);
    assert_eq!(sniff(&MAGIC[..7]), Sniff::NotOurs);
    assert_eq!(sniff(&[]), Sniff::NotOurs);

    let mut io = VecIo::default();
    assert_eq!(
        SealedFile::open(&mut io, &key(), &EPOCH).unwrap_err(),
        FormatError::TruncatedHeader { physical_len: 0 }
    );
    let mut io = VecIo {
        data: header()[..30].to_vec(),
    };
    let err = FormatError::TruncatedHeader { physical_len: 30 };
    assert_eq!(SealedFile::open(&mut io, &key(), &EPOCH).unwrap_err(), err);
    assert_eq!(
        SealedFile::open_or_init(&mut io, &key(), &EPOCH, &FILE).unwrap_err(),
        err
    );
    assert_eq!(physical_to_logical_size(30), Err(err));

    // A handle whose file was cut to 30 bytes behind its back.
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new([1; 8]);
    let mut f = SealedFile::create(&mut io, &key(), &EPOCH, &FILE).unwrap();
    io.data.truncate(30);
    assert_eq!(f.len(&mut io), Err(err));
    assert_eq!(f.write_at(&mut io, &mut nonces, b"x", 0), Err(err));
    assert_eq!(f.set_len(&mut io, &mut nonces, 5), Err(err));

    // 1..=28 bytes after the full blocks.
    let mut io = VecIo::default();
    let mut f = SealedFile::create(&mut io, &key(), &EPOCH, &FILE).unwrap();
    f.write_at(&mut io, &mut nonces, &[1; 8192], 0).unwrap();
    io.data.extend_from_slice(&[0; 28]);
    let err = FormatError::CorruptPhysicalSize {
        physical_len: 64 + 8220 + 28,
    };
    assert_eq!(f.len(&mut io), Err(err));
    assert_eq!(f.write_at(&mut io, &mut nonces, b"x", 0), Err(err));
    assert_eq!(f.set_len(&mut io, &mut nonces, 1), Err(err));
    let mut buf = [0u8; 100];
    f.invalidate_cache();
    assert_eq!(f.read_at(&mut io, &mut buf, 8192), Err(err));
}

#[test]
fn block_length_and_buffer_errors() {
    let (c, _) = FileCipher::create(&key(), &EPOCH, &FILE).unwrap();
    let mut out = vec![0u8; PHYS_BLOCK_SIZE];
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
        c.seal_block(0, n, &[0; 100], &mut out[..127]),
        Err(FormatError::BufferTooSmall {
            needed: 128,
            got: 127
        })
    );
    let len = c.seal_block(4, n, &[9; 100], &mut out).unwrap();
    let mut plain = [0u8; 8192];
    assert_eq!(
        c.open_block(4, &out[..len], &mut plain[..99]),
        Err(FormatError::BufferTooSmall {
            needed: 100,
            got: 99
        })
    );
    assert_eq!(
        c.open_block(4, &out[..28], &mut plain),
        Err(FormatError::TruncatedBlock { index: 4, len: 28 })
    );
    assert_eq!(
        c.open_block(4, &[0; PHYS_BLOCK_SIZE + 1], &mut plain),
        Err(FormatError::TruncatedBlock {
            index: 4,
            len: PHYS_BLOCK_SIZE + 1
        })
    );
    assert_eq!(
        c.open_block(4, &[], &mut plain),
        Err(FormatError::TruncatedBlock { index: 4, len: 0 })
    );
}

#[test]
fn block_auth_failed_zeroes_output() {
    let (c, _) = FileCipher::create(&key(), &EPOCH, &FILE).unwrap();
    let mut out = vec![0u8; PHYS_BLOCK_SIZE];
    let len = c.seal_block(2, [3; 12], &[0xAA; 500], &mut out).unwrap();
    out[20] ^= 1;
    let mut plain = [0x77u8; 8192];
    assert_eq!(
        c.open_block(2, &out[..len], &mut plain),
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
}

/// A nonce source that never recovers, to reach the exhaustion error in a write.
struct Strict(NonceSequence);

impl NonceSource for Strict {
    fn next_nonce(&mut self) -> ephcrypt_format::Result<[u8; 12]> {
        self.0.next()
    }
}

#[test]
fn nonce_space_exhausted() {
    let mut s = NonceSequence::with_counter([1; 8], u32::MAX);
    s.next().unwrap();
    assert_eq!(s.next(), Err(FormatError::NonceSpaceExhausted));

    let mut io = VecIo::default();
    let mut f = SealedFile::create(&mut io, &key(), &EPOCH, &FILE).unwrap();
    let mut strict = Strict(NonceSequence::with_counter([1; 8], u32::MAX));
    assert_eq!(f.write_at(&mut io, &mut strict, b"ab", 0), Ok(2));
    assert_eq!(
        f.write_at(&mut io, &mut strict, b"cd", 2),
        Err(FormatError::NonceSpaceExhausted)
    );
    assert_eq!(
        f.set_len(&mut io, &mut strict, 1),
        Err(FormatError::NonceSpaceExhausted)
    );
    // The failed writes changed nothing; a fresh stream continues.
    let mut buf = [0u8; 10];
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(2));
    assert_eq!(&buf[..2], b"ab");
    strict.0.reseed([2; 8]);
    assert_eq!(f.write_at(&mut io, &mut strict, b"cd", 2), Ok(2));
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(4));
    assert_eq!(&buf[..4], b"abcd");
}

#[test]
fn offset_too_large() {
    assert_eq!(
        logical_to_physical_size(MAX_LOGICAL_SIZE + 1),
        Err(FormatError::OffsetTooLarge)
    );
    let mut io = VecIo::default();
    let mut nonces = NonceSequence::new([1; 8]);
    let mut f = SealedFile::create(&mut io, &key(), &EPOCH, &FILE).unwrap();
    assert_eq!(
        f.write_at(&mut io, &mut nonces, b"x", MAX_LOGICAL_SIZE),
        Err(FormatError::OffsetTooLarge)
    );
    assert_eq!(
        f.write_at(&mut io, &mut nonces, b"x", u64::MAX),
        Err(FormatError::OffsetTooLarge)
    );
    assert_eq!(
        f.set_len(&mut io, &mut nonces, MAX_LOGICAL_SIZE + 1),
        Err(FormatError::OffsetTooLarge)
    );
    // Reads that far are simply past EOF.
    let mut buf = [0u8; 4];
    assert_eq!(f.read_at(&mut io, &mut buf, u64::MAX - 1), Ok(0));
    assert_eq!(f.read_at(&mut io, &mut buf, MAX_LOGICAL_SIZE), Ok(0));
    assert_eq!(io.data.len(), 64);
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
fn caller_io_errors_pass_through_and_drop_the_cache() {
    let mut io = FailingIo {
        inner: VecIo::default(),
        fail_writes: false,
    };
    let mut nonces = NonceSequence::new([1; 8]);
    let mut f = SealedFile::create(&mut io, &key(), &EPOCH, &FILE).unwrap();
    f.write_at(&mut io, &mut nonces, &[5; 300], 0).unwrap();
    io.fail_writes = true;
    assert_eq!(
        f.write_at(&mut io, &mut nonces, &[6; 10], 10),
        Err(MyError::Disk)
    );
    assert_eq!(f.set_len(&mut io, &mut nonces, 10), Err(MyError::Disk));
    // The cache must not keep the unwritten bytes: reads show the disk.
    let mut buf = [0u8; 300];
    assert_eq!(f.read_at(&mut io, &mut buf, 0), Ok(300));
    assert!(buf.iter().all(|&b| b == 5));
    io.inner.data.truncate(64 + 100);
    assert_eq!(f.len(&mut io), Ok(100 - 28));
    io.inner.data.truncate(64 + 20);
    assert_eq!(
        f.len(&mut io),
        Err(MyError::Format(FormatError::CorruptPhysicalSize {
            physical_len: 84
        }))
    );
}

#[test]
fn messages_never_carry_secrets() {
    let all = [
        FormatError::BadMagic,
        FormatError::UnsupportedVersion(9),
        FormatError::UnsupportedHeaderLength(9),
        FormatError::UnsupportedBlockSize(9),
        FormatError::ForeignEpoch,
        FormatError::ZeroFileId,
        FormatError::HeaderAuthFailed,
        FormatError::BlockAuthFailed { index: 3 },
        FormatError::TruncatedHeader { physical_len: 3 },
        FormatError::CorruptPhysicalSize { physical_len: 3 },
        FormatError::TruncatedBlock { index: 3, len: 3 },
        FormatError::InvalidBlockLength { len: 3 },
        FormatError::BufferTooSmall { needed: 3, got: 2 },
        FormatError::NonceSpaceExhausted,
        FormatError::OffsetTooLarge,
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
    // Secret-holding types redact themselves.
    let k = key();
    assert_eq!(format!("{k:?}"), "EpochKey(<redacted>)");
    let (c, _) = FileCipher::create(&k, &EPOCH, &FILE).unwrap();
    assert!(!format!("{c:?}").contains("92"), "{c:?}");
    let mut io = VecIo::default();
    let f = SealedFile::create(&mut io, &k, &EPOCH, &FILE).unwrap();
    assert!(format!("{f:?}").starts_with("SealedFile"));
}
