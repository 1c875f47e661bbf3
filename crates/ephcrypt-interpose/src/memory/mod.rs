//! Keeping PostgreSQL's memory out of core dumps and swap (issue #15).
//!
//! Three mechanisms, each a few system calls; the policy (which setting,
//! what to refuse) lives in the pgrx glue (`src/memory.rs`):
//!
//! * **The main shared memory segment** (shared buffers, WAL buffers, lock
//!   tables, `min_dynamic_shared_memory`, ...): the postmaster finds the
//!   mapping that contains an address inside it ([`find_mapping`]), marks it
//!   `MADV_DONTDUMP` ([`exclude_from_dumps`]) and optionally `mlock`s it
//!   ([`lock`], after [`memlock_budget`]). Children inherit `VM_DONTDUMP`
//!   through `fork`; `VM_LOCKED` is not inherited, but the pages are the
//!   postmaster's for its whole life, and a page stays unevictable while
//!   any mapping of it is locked.
//! * **Dynamic shared memory** (parallel query, parallel hash, DSA): every
//!   process that maps a segment does so with `mmap(MAP_SHARED)` on an fd
//!   from `shm_open` (`dynamic_shared_memory_type = posix`) or on a file
//!   under `pg_dynshmem` (`mmap`), through the executable's GOT. The
//!   `shm_open` shim remembers its fds in a fixed bit set ([`note_shm_fd`]),
//!   `close` forgets them ([`forget_fd`]), and the `mmap` shim marks the
//!   new mapping ([`after_mmap`]).
//! * **The whole process**: `prctl(PR_SET_DUMPABLE, 0)` in the postmaster
//!   before any fork ([`set_dumpable`]): no core file, no ptrace by the same
//!   user, for the postmaster and every child (`fork` keeps the flag; only
//!   `execve` or a credential change resets it).
//!
//! Everything here reports errors as `std::io::Error`; the shim hooks never
//! panic and never allocate.

pub mod procfs;

use std::ffi::{c_int, c_void};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

pub use procfs::{DsmCensus, Mapping, MemlockBudget, VmFlags};

/// Which new `MAP_SHARED` mappings the `mmap` shim excludes from core dumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DsmMarking {
    /// None (`memory_hygiene = off`, or not interposed).
    Off = 0,
    /// Mappings of fds handed out by `shm_open`
    /// (`dynamic_shared_memory_type = posix`).
    ShmOpenFds = 1,
    /// Every `MAP_SHARED` mapping of a file (`dynamic_shared_memory_type =
    /// mmap`: the segments are files under `pg_dynshmem`, opened like any
    /// other file; PostgreSQL maps no other file shared on Linux).
    SharedFileMappings = 2,
}

/// fd numbers the bit set covers (as many as the shims' fd table).
pub const MAX_SHM_FDS: usize = 65536;

static DSM_MARKING: AtomicU8 = AtomicU8::new(DsmMarking::Off as u8);

/// One bit per fd number below [`MAX_SHM_FDS`]: handed out by
/// `shm_open` and not closed since. Inherited through fork like the fd
/// table. A bit left stale (an fd closed behind our back) can only make a
/// later shared mapping of that number excluded from core dumps too.
static SHM_FDS: [AtomicU64; MAX_SHM_FDS / 64] = [const { AtomicU64::new(0) }; MAX_SHM_FDS / 64];

/// Set what the `mmap` shim marks (postmaster, before any child exists).
pub fn set_dsm_marking(m: DsmMarking) {
    DSM_MARKING.store(m as u8, Ordering::Relaxed);
}

/// What the `mmap` shim marks in this process.
pub fn dsm_marking() -> DsmMarking {
    match DSM_MARKING.load(Ordering::Relaxed) {
        1 => DsmMarking::ShmOpenFds,
        2 => DsmMarking::SharedFileMappings,
        _ => DsmMarking::Off,
    }
}

#[inline(always)]
fn slot(fd: c_int) -> Option<(&'static AtomicU64, u64)> {
    let i = usize::try_from(fd).ok().filter(|&i| i < MAX_SHM_FDS)?;
    Some((&SHM_FDS[i / 64], 1u64 << (i % 64)))
}

/// `shm_open` returned `fd`: remember it (only while marking shm fds).
/// `false` if it cannot be remembered (a number at or above
/// [`MAX_SHM_FDS`]): the caller must not hand it out, or the segment
/// would be mapped unmarked.
#[inline]
pub(crate) fn note_shm_fd(fd: c_int) -> bool {
    if fd < 0 || DSM_MARKING.load(Ordering::Relaxed) != DsmMarking::ShmOpenFds as u8 {
        return true;
    }
    match slot(fd) {
        Some((word, bit)) => {
            word.fetch_or(bit, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// `fd` is being closed: forget it. One relaxed load when it is not a
/// `shm_open` fd (every close of the server goes through here).
#[inline(always)]
pub(crate) fn forget_fd(fd: c_int) {
    if let Some((word, bit)) = slot(fd) {
        if word.load(Ordering::Relaxed) & bit != 0 {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// Whether `fd` came from `shm_open` and is still open (tests, diagnostics).
pub fn is_shm_fd(fd: c_int) -> bool {
    slot(fd).is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
}

/// The `mmap` shim's epilogue: `addr` is what the real `mmap` returned for
/// `(len, flags, fd)`. A DSM mapping is marked `MADV_DONTDUMP` before the
/// caller sees it; if that fails, the mapping is undone and the call fails
/// with madvise's errno (fail closed: PostgreSQL raises "could not map
/// shared memory segment"). Anything else is returned untouched after a
/// flag test and at most one load.
#[inline]
pub(crate) fn after_mmap(addr: *mut c_void, len: usize, flags: c_int, fd: c_int) -> *mut c_void {
    if addr == libc::MAP_FAILED || flags & libc::MAP_SHARED == 0 || flags & libc::MAP_ANONYMOUS != 0
    {
        return addr;
    }
    let mark = match DSM_MARKING.load(Ordering::Relaxed) {
        1 => is_shm_fd(fd),
        2 => true,
        _ => false,
    };
    if !mark {
        return addr;
    }
    mark_new_mapping(addr, len)
}

#[cold]
fn mark_new_mapping(addr: *mut c_void, len: usize) -> *mut c_void {
    // SAFETY: addr/len describe the mapping the kernel created for this
    // very call; madvise only changes its VMA flags.
    if unsafe { libc::madvise(addr, len, libc::MADV_DONTDUMP) } == 0 {
        return addr;
    }
    let err = errno();
    // SAFETY: undoing the mapping created for this call, which the caller
    // never saw.
    unsafe { libc::munmap(addr, len) };
    set_errno(err);
    libc::MAP_FAILED
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

// ---------------------------------------------------------------------------
// The main segment (postmaster).

/// The mapping of this process that contains `addr` (`/proc/self/maps`).
pub fn find_mapping(addr: usize) -> io::Result<Option<Mapping>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    Ok(procfs::mapping_containing(&maps, addr))
}

/// The smaps entry (and flags) of this process's mapping containing `addr`,
/// as the kernel reports it now.
pub fn flags_of_mapping(addr: usize) -> io::Result<Option<(Mapping, VmFlags)>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    Ok(procfs::smaps_entry_containing(&smaps, addr))
}

/// The DSM segments this process maps now (`/proc/self/smaps`).
pub fn dsm_census(data_dir: &str) -> io::Result<DsmCensus> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    Ok(procfs::dsm_census(&smaps, data_dir))
}

/// `MADV_DONTDUMP` on the whole of `m`, which must be a mapping of this
/// process as read from `/proc/self/maps` just before.
pub fn exclude_from_dumps(m: &Mapping) -> io::Result<()> {
    // SAFETY: madvise on a range the kernel reported as mapped in this
    // process; MADV_DONTDUMP changes VMA flags only, never the contents.
    if unsafe { libc::madvise(m.start as *mut c_void, m.len(), libc::MADV_DONTDUMP) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mlock` the whole of `m` (faults every page in).
pub fn lock(m: &Mapping) -> io::Result<()> {
    // SAFETY: mlock on a range the kernel reported as mapped in this
    // process; it pins pages, never changes their contents.
    if unsafe { libc::mlock(m.start as *const c_void, m.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What this process may still lock: `RLIMIT_MEMLOCK`, `VmLck`, and
/// whether it holds `CAP_IPC_LOCK`.
pub fn memlock_budget() -> io::Result<MemlockBudget> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    let caps = procfs::cap_eff(&status).unwrap_or(0);
    Ok(MemlockBudget {
        limit: (rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur),
        locked: procfs::status_kb(&status, "VmLck").unwrap_or(0),
        cap_ipc_lock: caps & (1u64 << procfs::CAP_IPC_LOCK) != 0,
    })
}

// ---------------------------------------------------------------------------
// The whole process.

/// `prctl(PR_SET_DUMPABLE)`.
pub fn set_dumpable(dumpable: bool) -> io::Result<()> {
    let v = libc::c_ulong::from(dumpable);
    // SAFETY: PR_SET_DUMPABLE takes one integer argument (0 or 1).
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, v, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(PR_GET_DUMPABLE)`: 0 (no core, no same-user ptrace), 1, or 2
/// (root-owned cores, after a credential change under `suid_dumpable = 2`).
pub fn dumpable() -> io::Result<u8> {
    // SAFETY: PR_GET_DUMPABLE takes no argument and returns the flag.
    let v = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    u8::try_from(v).map_err(|_| io::Error::last_os_error())
}
