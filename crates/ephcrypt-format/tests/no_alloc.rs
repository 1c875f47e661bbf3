//! The read and write paths run inside libc shims: they must not allocate
//! after create/open, in either metadata mode (FORMAT.md §8), also when
//! shared handles revalidate or reload their cached pages (§8.1). A counting
//! global allocator (this test binary only) checks every Rust-side
//! allocation; AWS-LC's own C code does not allocate for AES-GCM seal/open.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ephcrypt_format::{
    EpochKey, FileCipher, FileName, FormatError, Mode, NonceSequence, PhysicalIo, SealedFile,
    BLOCK_SIZE, PAGE_SIZE,
};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards every call unchanged to the system allocator; it only
// bumps a thread-local counter on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

/// A fixed-capacity physical file: never allocates after construction.
struct FixedIo {
    data: Vec<u8>,
    len: usize,
}

impl PhysicalIo for FixedIo {
    type Error = FormatError;
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, FormatError> {
        let off = (off as usize).min(self.len);
        let n = buf.len().min(self.len - off);
        buf[..n].copy_from_slice(&self.data[off..off + n]);
        Ok(n)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), FormatError> {
        let off = off as usize;
        if off > self.len {
            self.data[self.len..off].fill(0);
        }
        self.data[off..off + buf.len()].copy_from_slice(buf);
        self.len = self.len.max(off + buf.len());
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> Result<(), FormatError> {
        let len = len as usize;
        if len > self.len {
            self.data[self.len..len].fill(0);
        }
        self.len = len;
        Ok(())
    }
    fn len(&mut self) -> Result<u64, FormatError> {
        Ok(self.len as u64)
    }
}

const B: u64 = BLOCK_SIZE as u64;
const G: u64 = 256 * B;

fn exercise(mode: Mode) -> usize {
    let key = EpochKey::from_bytes([0x33; 32]);
    let epoch = [1u8; 16];
    let name = FileName::new(1, b"pgsql_tmp9.1").unwrap();
    let mut io = FixedIo {
        data: vec![0; 4 * 257 * PAGE_SIZE],
        len: 0,
    };
    let mut nonces = NonceSequence::new([8; 8]);
    let mut file =
        SealedFile::create(&mut io, &mut nonces, &key, &epoch, &[2; 16], &name, mode).unwrap();
    let data = vec![0x5Au8; 4 * BLOCK_SIZE + 300];
    let mut buf = vec![0u8; 3 * BLOCK_SIZE];
    let (cipher, _) = FileCipher::create(&key, &epoch, &[3; 16], &name).unwrap();
    let mut ct = [0u8; BLOCK_SIZE];
    let mut plain = [0u8; BLOCK_SIZE];
    let mut page = [0u8; PAGE_SIZE];

    allocations_in(|| {
        file.write_at(&mut io, &mut nonces, &data, 0).unwrap(); // whole blocks + tail
        file.write_at(&mut io, &mut nonces, b"small", 100).unwrap(); // RMW
        file.write_at(&mut io, &mut nonces, b"append", data.len() as u64)
            .unwrap();
        file.write_at(&mut io, &mut nonces, b"gap", 9 * B + 5)
            .unwrap();
        // Across groups: gap fill into group 2, evictions, write-backs.
        file.write_at(&mut io, &mut nonces, b"far", 2 * G + 7)
            .unwrap();
        file.write_at(&mut io, &mut nonces, &data, G - 100).unwrap();
        file.read_at(&mut io, &mut buf, 17).unwrap();
        file.read_at(&mut io, &mut buf, 0).unwrap();
        file.read_at(&mut io, &mut buf, G + 3).unwrap();
        file.invalidate();
        file.read_at(&mut io, &mut buf, 8000).unwrap();
        file.set_len(&mut io, &mut nonces, G + 2 * B + 7).unwrap();
        file.set_len(&mut io, &mut nonces, 2 * B + 7).unwrap();
        file.set_len(&mut io, &mut nonces, 3 * G).unwrap();
        file.flush(&mut io, &mut nonces).unwrap();
        file.len(&mut io).unwrap();
        let tag = cipher
            .seal_block(4, nonces.next().unwrap(), &data[..BLOCK_SIZE], &mut ct)
            .unwrap();
        cipher
            .open_block(4, &[0; 12], &tag, &ct, &mut plain)
            .unwrap_err();
        cipher
            .seal_metadata(1, nonces.next().unwrap(), &mut page)
            .unwrap();
        cipher.open_metadata(1, &page).unwrap_err();
    })
}

/// Two shared handles taking turns: revalidations that succeed, and reloads
/// after the other handle's writes (FORMAT.md §8.1), allocate nothing.
fn exercise_shared_turns() -> usize {
    let key = EpochKey::from_bytes([0x33; 32]);
    let epoch = [1u8; 16];
    let name = FileName::new(1, b"pgsql_tmp9.2").unwrap();
    let mut io = FixedIo {
        data: vec![0; 4 * 257 * PAGE_SIZE],
        len: 0,
    };
    let mut na = NonceSequence::new([8; 8]);
    let mut nb = NonceSequence::new([9; 8]);
    let mut a = SealedFile::create(
        &mut io,
        &mut na,
        &key,
        &epoch,
        &[2; 16],
        &name,
        Mode::Shared,
    )
    .unwrap();
    let mut b = SealedFile::open(&mut io, &key, &epoch, &name, Mode::Shared, None).unwrap();
    let data = vec![0x5Au8; 2 * BLOCK_SIZE + 300];
    let mut buf = vec![0u8; 3 * BLOCK_SIZE];
    allocations_in(|| {
        for round in 0..4u64 {
            let off = round * (G / 2) + 11;
            a.write_at(&mut io, &mut na, &data, off).unwrap();
            a.read_at(&mut io, &mut buf, off).unwrap(); // revalidated
            b.read_at(&mut io, &mut buf, off).unwrap(); // reloaded
            b.write_at(&mut io, &mut nb, b"turn", off + 5).unwrap();
            b.len(&mut io).unwrap();
            a.read_at(&mut io, &mut buf, 0).unwrap(); // reloaded
        }
        b.set_len(&mut io, &mut nb, G + 7).unwrap();
        a.len(&mut io).unwrap();
        a.read_at(&mut io, &mut buf, G - 100).unwrap();
    })
}

#[test]
fn read_write_truncate_flush_and_block_ops_do_not_allocate() {
    for mode in [
        Mode::Shared,
        Mode::PRIVATE,
        Mode::Private { cache_groups: 2 },
    ] {
        let n = exercise(mode);
        assert_eq!(n, 0, "{mode:?}: the read/write path allocated {n} times");
    }
    let n = exercise_shared_turns();
    assert_eq!(n, 0, "shared handles taking turns allocated {n} times");
    // The harness can see allocations at all.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 10]))) > 0);
}
