//! The protected page that holds the epoch key.
//!
//! One page per key epoch, created in the postmaster while no child exists
//! (at start, and again at every crash-restart) and inherited by every child
//! through `fork` (a `MAP_SHARED` mapping). Children map it read-only (the
//! fork handler calls [`protect_in_child`]). A new epoch never reuses the
//! old page: the old one is wiped, then unmapped, so a process that survived
//! a crash-restart (a `setsid()` grandchild of a backend) keeps only a page
//! of zeros and never sees a later key. It is never in a file, never in
//! PostgreSQL's shared memory segment, never in a GUC:
//!
//! * preferred: `memfd_secret(2)` — the pages are removed from the kernel's
//!   direct map, are locked, never swapped and never in a core dump;
//! * fallback: an anonymous shared mapping with `mlock` (never swapped) and
//!   `MADV_DONTDUMP` (never in a core dump).
//!
//! Layout of the page (all fixed offsets, no pointers):
//!
//! | offset | size | field                                           |
//! |--------|------|-------------------------------------------------|
//! | 0      | 32   | epoch key (secret)                              |
//! | 32     | 16   | epoch id (public)                               |
//! | 48     | 8    | created at, microseconds since the Unix epoch   |
//! | 56     | 4    | generation (0 = no key, odd = live, even = wiped)|
//!
//! The public fields sit beside the key so that the libc shims never need
//! PostgreSQL's shared memory, which some processes (the logger) detach and
//! which the postmaster unmaps on its way out.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};

pub use crate::error::InterposeError;

/// Length of the epoch key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the public epoch id in bytes.
pub const EPOCH_ID_LEN: usize = 16;

const OFF_KEY: usize = 0;
const OFF_EPOCH_ID: usize = 32;
const OFF_CREATED: usize = 48;
const OFF_GENERATION: usize = 56;

/// `memfd_secret(2)` syscall number (same on x86_64 and aarch64).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SYS_MEMFD_SECRET: libc::c_long = 447;

/// Which protection holds the key page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// `memfd_secret(2)`: out of the kernel direct map, locked, not dumpable.
    SecretMem,
    /// Anonymous shared mapping, `mlock`ed and `MADV_DONTDUMP`.
    LockedNoDump,
}

impl Protection {
    /// Stable name shown in SQL status.
    pub fn name(self) -> &'static str {
        match self {
            Protection::SecretMem => "memfd_secret",
            Protection::LockedNoDump => "mlock+dontdump",
        }
    }
}

/// How to allocate the key page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocMode {
    /// `memfd_secret` if the kernel offers it, else the locked fallback.
    Auto,
    /// Only the locked anonymous fallback (tests, or kernels where
    /// secretmem misbehaves).
    LockedOnly,
}

/// One epoch's key page. The struct itself is never freed (a retired page
/// only stops answering), so a `&'static KeyPage` can never dangle.
pub struct KeyPage {
    base: *mut u8,
    len: usize,
    protection: Protection,
    /// The mapping is live (false once [`retire`](Self::retire)d).
    mapped: AtomicBool,
    /// The process that created the page; only it may write it.
    owner: AtomicI32,
}

// SAFETY: the page is plain memory; all mutation goes through `&self`
// methods that use volatile writes and the atomic generation, and
// PostgreSQL processes are single-threaded.
unsafe impl Send for KeyPage {}
// SAFETY: as above.
unsafe impl Sync for KeyPage {}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n <= 0 {
        4096
    } else {
        n as usize
    }
}

fn last_os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl KeyPage {
    /// Map a fresh, zeroed, protected page. Does not create a key yet.
    pub fn allocate(mode: AllocMode) -> Result<KeyPage, InterposeError> {
        if mode == AllocMode::Auto {
            if let Some(page) = Self::try_secretmem() {
                return Ok(page);
            }
        }
        Self::locked_anonymous()
    }

    fn try_secretmem() -> Option<KeyPage> {
        let len = page_size();
        // SAFETY: raw syscall with a flags argument of 0; returns an fd or -1.
        let fd = unsafe { libc::syscall(SYS_MEMFD_SECRET, libc::O_CLOEXEC as libc::c_ulong) };
        if fd < 0 {
            return None;
        }
        let fd = fd as libc::c_int;
        // SAFETY: fd is a descriptor we own; ftruncate sizes the secret file.
        let sized = unsafe { libc::ftruncate(fd, len as libc::off_t) } == 0;
        let base = if sized {
            // SAFETY: mapping a fresh fd of `len` bytes; the kernel picks the
            // address. Checked against MAP_FAILED below.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            }
        } else {
            libc::MAP_FAILED
        };
        // SAFETY: closing our own fd; the mapping keeps the memory alive.
        unsafe { libc::close(fd) };
        if base == libc::MAP_FAILED {
            return None;
        }
        Some(KeyPage::new(base.cast(), len, Protection::SecretMem))
    }

    fn locked_anonymous() -> Result<KeyPage, InterposeError> {
        let len = page_size();
        let base = map_shared_anonymous(len).map_err(InterposeError::KeyMap)?;
        // SAFETY: base/len describe the mapping just created.
        if unsafe { libc::mlock(base, len) } != 0 {
            let err = last_os_error();
            // SAFETY: unmapping the mapping we just created and own.
            unsafe { libc::munmap(base, len) };
            return Err(InterposeError::KeyLock(err));
        }
        // SAFETY: base/len describe the mapping just created.
        if unsafe { libc::madvise(base, len, libc::MADV_DONTDUMP) } != 0 {
            let err = last_os_error();
            // SAFETY: as above.
            unsafe { libc::munmap(base, len) };
            return Err(InterposeError::KeyDontDump(err));
        }
        Ok(KeyPage::new(base.cast(), len, Protection::LockedNoDump))
    }

    fn new(base: *mut u8, len: usize, protection: Protection) -> KeyPage {
        KeyPage {
            base,
            len,
            protection,
            mapped: AtomicBool::new(true),
            // SAFETY: getpid has no preconditions.
            owner: AtomicI32::new(unsafe { libc::getpid() }),
        }
    }

    /// Whether this process may write the page (it created it; children
    /// map it read-only).
    fn writable_here(&self) -> bool {
        // SAFETY: getpid has no preconditions.
        self.mapped.load(Ordering::Acquire)
            && self.owner.load(Ordering::Relaxed) == unsafe { libc::getpid() }
    }

    /// Wipe the key and unmap the page; the struct answers "no key" from
    /// then on. Creator only.
    pub fn retire(&self) {
        if !self.writable_here() {
            return;
        }
        self.wipe();
        self.mapped.store(false, Ordering::Release);
        // SAFETY: base/len describe this page's mapping; nothing reads it
        // after `mapped` turned false (every accessor checks it first).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }

    /// Make the page read-only in this process (a fork child).
    pub(crate) fn protect_read_only(&self) {
        if self.mapped.load(Ordering::Acquire) {
            // SAFETY: base/len describe a live mapping of this page; a
            // read-only view only makes writes fault.
            unsafe { libc::mprotect(self.base.cast(), self.len, libc::PROT_READ) };
        }
    }

    /// The protection in force.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// Start address of the mapping (for `/proc/<pid>/smaps` checks).
    pub fn address(&self) -> usize {
        self.base as usize
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn generation_atomic(&self) -> Option<&AtomicU32> {
        if !self.mapped.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: OFF_GENERATION is 4-byte aligned inside a page-aligned
        // mapping that is live (checked above); AtomicU32 has the same
        // layout as u32.
        Some(unsafe { &*(self.base.add(OFF_GENERATION) as *const AtomicU32) })
    }

    /// Current generation: 0 = never keyed, odd = a live key, even (> 0) =
    /// wiped.
    pub fn generation(&self) -> u32 {
        self.generation_atomic()
            .map_or(0, |g| g.load(Ordering::Acquire))
    }

    /// Whether a live key is present.
    pub fn is_live(&self) -> bool {
        self.generation() % 2 == 1
    }

    /// Wipe any previous key, then fill the key and a fresh epoch id with
    /// bytes from the kernel CSPRNG, written straight into the page (no
    /// copy of the key anywhere else). `created_at_us` is recorded as is.
    pub fn new_epoch(&self, created_at_us: i64) -> Result<(), InterposeError> {
        if !self.writable_here() {
            return Err(InterposeError::Unsupported(
                "the key page can only be written by the process that created it",
            ));
        }
        self.wipe();
        fill_random(self.base, KEY_LEN + EPOCH_ID_LEN)?;
        // SAFETY: OFF_CREATED..+8 lies inside the page; unaligned-safe write.
        unsafe {
            std::ptr::write_unaligned(self.base.add(OFF_CREATED) as *mut i64, created_at_us);
        }
        let g = self.generation();
        let next = if g % 2 == 1 { g + 2 } else { g + 1 };
        if let Some(a) = self.generation_atomic() {
            a.store(next, Ordering::Release);
        }
        Ok(())
    }

    /// Overwrite the key with zeros (volatile, so the compiler keeps it)
    /// and mark the page wiped. Public fields are kept for diagnostics.
    pub fn wipe(&self) {
        if !self.writable_here() {
            return;
        }
        for i in 0..KEY_LEN {
            // SAFETY: OFF_KEY + i < KEY_LEN lies inside the page.
            unsafe { std::ptr::write_volatile(self.base.add(OFF_KEY + i), 0u8) };
        }
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        let g = self.generation();
        if g % 2 == 1 {
            if let Some(a) = self.generation_atomic() {
                a.store(g + 1, Ordering::Release);
            }
        }
    }

    /// The key, borrowed from the page. `None` when no live key exists.
    pub fn key(&self) -> Option<&[u8; KEY_LEN]> {
        if !self.mapped.load(Ordering::Acquire) || !self.is_live() {
            return None;
        }
        // SAFETY: OFF_KEY..+32 lies inside the page, u8 arrays need no
        // alignment, and the page outlives the process's use of it.
        Some(unsafe { &*(self.base.add(OFF_KEY) as *const [u8; KEY_LEN]) })
    }

    /// The key as the format crate's key type, borrowed in place from the
    /// protected page: no copy of the key ever lands on the stack or heap.
    pub fn epoch_key(&self) -> Option<&ephcrypt_format::EpochKey> {
        if !self.mapped.load(Ordering::Acquire) || !self.is_live() {
            return None;
        }
        // SAFETY: EpochKey is #[repr(transparent)] over [u8; 32], so a
        // pointer to the 32 key bytes in the page is a valid &EpochKey; the
        // page outlives every use, and a shared reference never runs
        // EpochKey's zeroizing Drop.
        Some(unsafe { &*(self.base.add(OFF_KEY) as *const ephcrypt_format::EpochKey) })
    }

    /// The public epoch id.
    pub fn epoch_id(&self) -> [u8; EPOCH_ID_LEN] {
        let mut id = [0u8; EPOCH_ID_LEN];
        if !self.mapped.load(Ordering::Acquire) {
            return id;
        }
        // SAFETY: OFF_EPOCH_ID..+16 lies inside the page.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(OFF_EPOCH_ID),
                id.as_mut_ptr(),
                EPOCH_ID_LEN,
            )
        };
        id
    }

    /// When the current epoch was created (microseconds since Unix epoch).
    pub fn created_at_us(&self) -> i64 {
        if !self.mapped.load(Ordering::Acquire) {
            return 0;
        }
        // SAFETY: OFF_CREATED..+8 lies inside the live page.
        unsafe { std::ptr::read_unaligned(self.base.add(OFF_CREATED) as *const i64) }
    }
}

/// The current epoch's page (null before the first epoch). Set by the
/// postmaster while no child exists; children inherit the value.
static CURRENT: AtomicPtr<KeyPage> = AtomicPtr::new(std::ptr::null_mut());

/// The current epoch's key page, if there is one.
#[inline]
pub fn current() -> Option<&'static KeyPage> {
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: pages are leaked boxes, never freed (see `KeyPage`).
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Start a new key epoch on a fresh page: allocate and fill it, make it
/// current, then retire the previous page (wiped and unmapped). Postmaster
/// only, while no child exists.
pub fn start_epoch(
    mode: AllocMode,
    created_at_us: i64,
) -> Result<&'static KeyPage, InterposeError> {
    let page = KeyPage::allocate(mode)?;
    if let Err(e) = page.new_epoch(created_at_us) {
        page.retire();
        return Err(e);
    }
    let page: &'static KeyPage = Box::leak(Box::new(page));
    let old = CURRENT.swap(page as *const KeyPage as *mut KeyPage, Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: a leaked page, never freed.
        unsafe { &*old }.retire();
    }
    Ok(page)
}

/// Wipe the current key (postmaster exit). No-op in a child.
pub fn wipe_current() {
    if let Some(p) = current() {
        p.wipe();
    }
}

/// Fork child handler: the inherited page becomes read-only here.
pub fn protect_in_child() {
    if let Some(p) = current() {
        p.protect_read_only();
    }
}

/// A zeroed anonymous `MAP_SHARED` mapping of `len` bytes: shared with every
/// child forked later, never part of a file or of PostgreSQL's shared memory.
pub(crate) fn map_shared_anonymous(len: usize) -> std::io::Result<*mut libc::c_void> {
    // SAFETY: anonymous shared mapping at a kernel-chosen address, checked
    // against MAP_FAILED.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(last_os_error());
    }
    Ok(base)
}

/// getrandom(2) straight into `dst`, retrying on EINTR and short reads.
fn fill_random(dst: *mut u8, len: usize) -> Result<(), InterposeError> {
    let mut done = 0usize;
    while done < len {
        // SAFETY: dst..dst+len is writable memory owned by the caller.
        let n = unsafe { libc::getrandom(dst.add(done).cast(), len - done, 0) };
        if n < 0 {
            let err = last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(InterposeError::Random(err));
        }
        done += n as usize;
    }
    Ok(())
}

/// `/proc/self/smaps` entry of the mapping at `address`, for tests and
/// diagnostics: `(VmFlags line, first line)`.
pub fn smaps_entry(smaps: &str, address: usize) -> Option<(String, String)> {
    let start = format!("{address:x}-");
    let mut lines = smaps.lines();
    while let Some(line) = lines.next() {
        if line.starts_with(&start) {
            let header = line.to_string();
            for l in lines.by_ref() {
                if let Some(flags) = l.strip_prefix("VmFlags:") {
                    return Some((flags.trim().to_string(), header));
                }
            }
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_page(page: &KeyPage) {
        assert!(!page.is_live());
        assert!(page.key().is_none());
        page.new_epoch(1234).unwrap();
        assert!(page.is_live());
        let k1 = *page.key().unwrap();
        let e1 = page.epoch_id();
        assert_ne!(k1, [0u8; 32], "key must be random, not zero");
        assert_ne!(e1, [0u8; 16]);
        assert_eq!(page.created_at_us(), 1234);
        page.new_epoch(5678).unwrap();
        assert_ne!(*page.key().unwrap(), k1, "a new epoch has a new key");
        assert_ne!(page.epoch_id(), e1, "a new epoch has a new id");
        page.wipe();
        assert!(!page.is_live());
        assert!(page.key().is_none());
        // SAFETY: reading the first 32 bytes of our own live mapping.
        let raw = unsafe { std::slice::from_raw_parts(page.base, KEY_LEN) };
        assert!(raw.iter().all(|&b| b == 0), "wipe leaves zeros");
    }

    fn flags_of(page: &KeyPage) -> (String, String) {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        smaps_entry(&smaps, page.address()).expect("mapping listed in smaps")
    }

    #[test]
    fn locked_fallback_is_locked_and_not_dumpable() {
        let page = KeyPage::allocate(AllocMode::LockedOnly).unwrap();
        assert_eq!(page.protection(), Protection::LockedNoDump);
        let (flags, _) = flags_of(&page);
        let flags: Vec<&str> = flags.split_whitespace().collect();
        assert!(flags.contains(&"lo"), "mlocked: {flags:?}");
        assert!(flags.contains(&"dd"), "dontdump: {flags:?}");
        assert!(flags.contains(&"sh"), "shared with children: {flags:?}");
        check_page(&page);
    }

    #[test]
    fn auto_prefers_secretmem_when_available() {
        let page = KeyPage::allocate(AllocMode::Auto).unwrap();
        let (flags, header) = flags_of(&page);
        match page.protection() {
            Protection::SecretMem => {
                assert!(header.contains("secretmem"), "{header}");
                assert!(flags.split_whitespace().any(|f| f == "dd"), "{flags}");
            }
            Protection::LockedNoDump => {
                assert!(flags.split_whitespace().any(|f| f == "lo"), "{flags}");
            }
        }
        check_page(&page);
    }

    #[test]
    fn child_sees_parent_key_and_parent_wipe_reaches_child_view() {
        let page = KeyPage::allocate(AllocMode::Auto).unwrap();
        page.new_epoch(1).unwrap();
        let key = *page.key().unwrap();
        // SAFETY: fork in a test; the child only reads memory and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = page.key().map(|k| *k == key).unwrap_or(false);
            // SAFETY: _exit never returns and runs no Rust destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    /// Raw bytes of a mapping as a process sees it (no accessor checks).
    fn raw(addr: usize, len: usize) -> Vec<u8> {
        // SAFETY: the caller passes a mapping live in this process.
        unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
    }

    fn is_mapped(addr: usize) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().any(|l| l.starts_with(&format!("{addr:x}-")))
    }

    #[test]
    fn a_process_that_outlives_an_epoch_never_sees_the_next_key() {
        let first = start_epoch(AllocMode::Auto, 10).unwrap();
        let first_addr = first.address();
        let key1 = *first.key().unwrap();
        let (mut to_child, mut to_parent) = ([0i32; 2], [0i32; 2]);
        // SAFETY: plain pipe(2) calls with valid arrays.
        unsafe {
            assert_eq!(libc::pipe(to_child.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(to_parent.as_mut_ptr()), 0);
        }
        // SAFETY: fork in a test; the child only reads memory, talks over
        // the pipes and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            protect_in_child();
            // Control: before the rotation the child reads the live key.
            let mut code = if raw(first_addr, 32) == key1 { 0 } else { 1 };
            // SAFETY: one byte to our pipe: the control is done.
            unsafe { libc::write(to_parent[1], [0u8].as_ptr().cast(), 1) };
            let mut new_addr = [0u8; 8];
            // SAFETY: reading 8 bytes from our pipe into a local buffer.
            unsafe { libc::read(to_child[0], new_addr.as_mut_ptr().cast(), 8) };
            let new_addr = usize::from_le_bytes(new_addr);
            // After the rotation: its old mapping holds zeros where the key
            // was, and the new page does not exist in this process.
            if raw(first_addr, 32) != [0u8; 32] {
                code |= 2;
            }
            if is_mapped(new_addr) {
                code |= 4;
            }
            if current().and_then(KeyPage::key).is_some() {
                code |= 8; // the inherited view must say: no key
            }
            // SAFETY: writing one byte to our pipe.
            unsafe { libc::write(to_parent[1], [code as u8].as_ptr().cast(), 1) };
            // Read-only in a child: a write faults (the parent checks).
            // SAFETY: deliberately faulting on a read-only page.
            unsafe { std::ptr::write_volatile(first_addr as *mut u8, 1) };
            // SAFETY: _exit runs no destructors.
            unsafe { libc::_exit(0) };
        }
        let mut ready = [0u8];
        // SAFETY: reading one byte from our pipe.
        unsafe { libc::read(to_parent[0], ready.as_mut_ptr().cast(), 1) };
        let second = start_epoch(AllocMode::Auto, 20).unwrap();
        assert_ne!(second.address(), first_addr, "a fresh mapping");
        assert_ne!(*second.key().unwrap(), key1);
        assert!(first.key().is_none(), "the retired page answers no key");
        // Unmapped here; a test running in another thread may have been
        // given the same address for its own page since (seen in CI), so a
        // mapping there must at least not hold the old key.
        assert!(
            !is_mapped(first_addr) || raw(first_addr, 32) != key1,
            "the old page is unmapped here"
        );
        let mut code = [0xffu8];
        // SAFETY: writing 8 bytes to our pipe, reading 1 back.
        unsafe {
            libc::write(
                to_child[1],
                second.address().to_le_bytes().as_ptr().cast(),
                8,
            );
            libc::read(to_parent[0], code.as_mut_ptr().cast(), 1);
        }
        assert_eq!(
            code[0], 0,
            "child's view (bits: 1 control, 2 old key, 4 new page, 8 accessor)"
        );
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
            "a child cannot write the key page (status {status:#x})"
        );
        second.retire();
    }

    #[test]
    fn smaps_parser_finds_entry() {
        let text =
            "7f00-7f01 rw-s 0 00:01 1 /secretmem (deleted)\nSize: 4 kB\nVmFlags: rd wr sh dd lo\n";
        let (flags, header) = smaps_entry(text, 0x7f00).unwrap();
        assert_eq!(flags, "rd wr sh dd lo");
        assert!(header.contains("secretmem"));
        assert!(smaps_entry(text, 0x1234).is_none());
    }
}
