//! Metadata pages published in a shared pool (FORMAT.md §8.3): a shared
//! handle's calls write data blocks only; other handles read through the
//! pool; the disk holds the pages after a drain; a stamp is not a MAC; a
//! pool page of another group or file is refused; create writes page 0
//! through; write-ahead handles never publish.

use ephcrypt_format::{
    meta_offset, FormatError, Mode, NonceSequence, SealedFile, VecIo, BLOCK_SIZE, PAGE_SIZE,
};

mod dying;
use dying::{create_sealed, is_meta, key, name, open_shared, DyingIo, PagePool, EPOCH, FILE};

const B: usize = BLOCK_SIZE;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn meta_writes(io: &DyingIo) -> usize {
    io.log.iter().filter(|(meta, _)| *meta).count()
}

/// A file of 3 groups and a bit, created through, then written by a
/// publishing handle.
fn published_file(room: usize) -> (DyingIo, SealedFile, NonceSequence, Vec<u8>) {
    let mut io = DyingIo::new(VecIo::default());
    create_sealed(&mut io, &bytes(5 * B, 1));
    io.pool = Some(PagePool::with_room(room));
    let mut w = open_shared(&mut io, false).unwrap();
    let mut nonces = NonceSequence::new([9; 8]);
    let data = bytes(3 * 256 * B + 100, 2);
    io.log.clear();
    w.write_at(&mut io, &mut nonces, &data, 0).unwrap();
    (io, w, nonces, data)
}

fn read_all(io: &mut DyingIo, want: usize) -> Result<Vec<u8>, FormatError> {
    let mut r = open_shared(io, false)?;
    let mut out = vec![0u8; want + 10];
    let n = r.read_at(io, &mut out, 0)?;
    out.truncate(n);
    Ok(out)
}

#[test]
fn a_publishing_writer_writes_data_only_and_readers_use_the_pool() {
    let (mut io, _w, _n, data) = published_file(16);
    assert_eq!(meta_writes(&io), 0, "no metadata page went to disk");
    assert_eq!(io.pool.as_ref().unwrap().pages.len(), 4, "groups 0..=3");
    let served = io.pool.as_ref().unwrap().served;
    assert_eq!(read_all(&mut io, data.len()).unwrap(), data);
    assert!(io.pool.as_ref().unwrap().served > served);
}

#[test]
fn control_without_the_pool_the_disk_pages_are_stale() {
    let (mut io, _w, _n, data) = published_file(16);
    io.pool.as_mut().unwrap().hidden = true;
    // The disk's page 0 still says 5 blocks; the file has 769.
    assert!(read_all(&mut io, data.len()).is_err());
}

#[test]
fn after_a_drain_the_disk_alone_is_the_file() {
    let (mut io, w, mut nonces, data) = published_file(16);
    io.drain(w.cipher(), &mut nonces);
    assert!(io.pool.as_ref().unwrap().pages.is_empty());
    io.pool = None;
    assert_eq!(read_all(&mut io, data.len()).unwrap(), data);
}

#[test]
fn a_full_pool_writes_through_and_keeps_what_it_holds_current() {
    // Room for 1 page: group 0's (published first); the others go through.
    let (mut io, mut w, mut nonces, mut data) = published_file(1);
    assert_eq!(meta_writes(&io), 3);
    assert_eq!(io.pool.as_ref().unwrap().pages.len(), 1);
    // A later rewrite in group 0 updates the pool's page, not the disk's.
    io.log.clear();
    let patch = bytes(B, 7);
    w.write_at(&mut io, &mut nonces, &patch, 0).unwrap();
    data[..B].copy_from_slice(&patch);
    assert_eq!(meta_writes(&io), 0);
    assert_eq!(read_all(&mut io, data.len()).unwrap(), data);
    io.pool.as_mut().unwrap().hidden = true;
    assert!(read_all(&mut io, data.len()).is_err(), "control");
}

#[test]
fn a_published_page_on_disk_does_not_authenticate() {
    let (mut io, _w, _n, data) = published_file(16);
    // An attacker (or a drain that forgot to seal) puts the stamped page
    // where the sealed one belongs.
    let page = io.pool.as_ref().unwrap().pages[&(FILE, 1)].clone();
    io.inner.data[meta_offset(1) as usize..][..PAGE_SIZE].copy_from_slice(&page[..]);
    io.pool.as_mut().unwrap().pages.remove(&(FILE, 1));
    let mut r = open_shared(&mut io, false).unwrap();
    let mut out = vec![0u8; B];
    let e = r.read_at(&mut io, &mut out, 256 * B as u64).unwrap_err();
    assert!(
        matches!(e, FormatError::MetadataAuthFailed { group: 1 }),
        "{e:?}"
    );
    // Control: the same read with the pool's page.
    let (mut io, _w, _n, _) = published_file(16);
    let mut r = open_shared(&mut io, false).unwrap();
    assert_eq!(r.read_at(&mut io, &mut out, 256 * B as u64).unwrap(), B);
    assert_eq!(out, data[256 * B..257 * B]);
}

#[test]
fn a_pool_page_of_another_group_or_file_is_refused() {
    let (mut io, _w, _n, data) = published_file(16);
    let pool = io.pool.as_mut().unwrap();
    let g2 = pool.pages[&(FILE, 2)].clone();
    pool.set_page((FILE, 1), g2);
    let mut r = open_shared(&mut io, false).unwrap();
    let mut out = vec![0u8; B];
    let e = r.read_at(&mut io, &mut out, 256 * B as u64).unwrap_err();
    assert!(
        matches!(e, FormatError::MetadataAuthFailed { group: 1 }),
        "{e:?}"
    );
    // Another file's page under this file's key: its header copy differs.
    let (mut io, _w, _n, _) = published_file(16);
    let pool = io.pool.as_mut().unwrap();
    let mut other = pool.pages[&(FILE, 1)].clone();
    other[20] ^= 1; // inside the header copy (the file id)
    pool.set_page((FILE, 1), other);
    let mut r = open_shared(&mut io, false).unwrap();
    assert!(r.read_at(&mut io, &mut out, 256 * B as u64).is_err());
    // Control: untouched, the read works.
    let (mut io, _w, _n, _) = published_file(16);
    let mut r = open_shared(&mut io, false).unwrap();
    assert_eq!(r.read_at(&mut io, &mut out, 256 * B as u64).unwrap(), B);
    assert_eq!(out, data[256 * B..257 * B]);
}

#[test]
fn create_writes_page_zero_through_and_write_ahead_publishes_too() {
    let mut io = DyingIo::new(VecIo::default());
    io.pool = Some(PagePool::with_room(16));
    let mut nonces = NonceSequence::new([3; 8]);
    let f = SealedFile::create(
        &mut io,
        &mut nonces,
        &key(),
        &EPOCH,
        &FILE,
        &name(),
        Mode::Shared,
    )
    .unwrap();
    drop(f);
    assert_eq!(io.log, vec![(true, 0)], "page 0 on disk");
    assert!(io.pool.as_ref().unwrap().pages.is_empty());
    // A write ahead (a WAL tail-page rewrite) publishes its page before
    // its data write, as it would write it.
    let mut wa = open_shared(&mut io, true).unwrap();
    wa.write_at(&mut io, &mut nonces, &bytes(2 * B, 5), 0)
        .unwrap();
    io.log.clear();
    let before = io.pool.as_ref().unwrap().published;
    wa.write_at(&mut io, &mut nonces, &bytes(B, 6), 0).unwrap();
    assert_eq!(meta_writes(&io), 0);
    assert!(io.pool.as_ref().unwrap().published > before);
    let mut out = vec![0u8; B];
    let mut r = open_shared(&mut io, true).unwrap();
    assert_eq!(r.read_at(&mut io, &mut out, 0).unwrap(), B);
    assert_eq!(out, bytes(B, 6));
    // Control: without the pool the same write ahead writes its page.
    io.pool = None;
    io.log.clear();
    let mut wa = open_shared(&mut io, true);
    assert!(wa.is_err(), "the disk's pages are older than the data");
    let _ = wa.as_mut();
    assert!(!io.log.iter().any(|&(meta, off)| meta && is_meta(off)));
}

/// Block by block, call by call, as a file-set member or a WAL segment is
/// written: after the first publish of a group, each later one names only
/// the chunks it changed (the test pool checks that they make the page),
/// and a handle whose copy is the pool's current version is told so
/// instead of copying the page again (checked too).
#[test]
fn publishes_name_their_chunks_and_current_copies_are_not_copied_again() {
    let mut io = DyingIo::new(VecIo::default());
    create_sealed(&mut io, &bytes(B, 1));
    io.pool = Some(PagePool::with_room(16));
    let mut w = open_shared(&mut io, false).unwrap();
    let mut r = open_shared(&mut io, false).unwrap();
    let mut nonces = NonceSequence::new([4; 8]);
    let mut out = vec![0u8; B];
    for k in 0..300usize {
        let block = bytes(B, k as u8);
        w.write_at(&mut io, &mut nonces, &block, (k * B) as u64)
            .unwrap();
        // A rewrite in place and a short tail: other chunks of the page.
        if k % 7 == 3 {
            w.write_at(&mut io, &mut nonces, &block[..100], (k * B) as u64)
                .unwrap();
        }
        // The reader twice: once after the write, once with nothing new.
        for _ in 0..2 {
            assert_eq!(r.read_at(&mut io, &mut out, (k * B) as u64).unwrap(), B);
            assert_eq!(out[..100], block[..100]);
        }
    }
    // A cut back into group 0, then appends again.
    w.set_len(&mut io, &mut nonces, (10 * B + 5) as u64)
        .unwrap();
    w.write_at(&mut io, &mut nonces, &bytes(B, 77), (10 * B) as u64)
        .unwrap();
    let pool = io.pool.as_ref().unwrap();
    assert!(
        pool.partial > 250,
        "publishes of a known version copy their chunks only ({} of {})",
        pool.partial,
        pool.published
    );
    assert!(
        pool.current > 250,
        "lookups of a current copy: {}",
        pool.current
    );
    let mut all = vec![0u8; 11 * B + 10];
    assert_eq!(r.read_at(&mut io, &mut all, 0).unwrap(), 11 * B);
    assert_eq!(all[10 * B..11 * B], bytes(B, 77)[..]);
    assert_eq!(all[9 * B..10 * B], bytes(B, 9)[..]);
}

/// Control: the test pool's checks can fail. A publish that names too few
/// chunks, and a copy claimed current that is not, panic.
#[test]
fn control_the_test_pool_catches_a_claim_that_is_not_true() {
    use ephcrypt_format::meta::Touched;
    use ephcrypt_format::{PoolBase, Published};
    let mut pool = PagePool::with_room(4);
    let key = (FILE, 0);
    let mut page = [0u8; PAGE_SIZE];
    let v1 = pool.publish(key, &page, None).unwrap();
    page[5000] = 1; // chunk 39
    let named = Touched(1 << 38);
    let short = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.publish(
            key,
            &page,
            Some(PoolBase {
                version: v1,
                changed: named,
            }),
        )
    }));
    assert!(short.is_err(), "a chunk left out");
    let mut pool = PagePool::with_room(4);
    let v1 = pool.publish(key, &[0u8; PAGE_SIZE], None).unwrap();
    let v2 = pool
        .publish(
            key,
            &page,
            Some(PoolBase {
                version: v1,
                changed: Touched(1 << 39),
            }),
        )
        .unwrap();
    let mut copy = [0u8; PAGE_SIZE];
    assert_eq!(pool.lookup(key, &mut copy, Some(v1)), Published::Copied(v2));
    assert_eq!(copy[..], page[..]);
    assert_eq!(pool.lookup(key, &mut copy, Some(v2)), Published::Current);
    copy[1] = 9;
    let stale = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.lookup(key, &mut copy, Some(v2))
    }));
    assert!(stale.is_err(), "a copy that is not the current version");
}
