//! Issue #15 mechanism, through this test binary's own patched GOT: the
//! `shm_open` + `mmap` shims mark DSM-like mappings `MADV_DONTDUMP`, and
//! nothing else; the main-segment calls and the dumpable flag do what the
//! kernel then reports. Every check has a control that shows it can fail.

mod common;

use std::ffi::CString;
use std::os::fd::AsRawFd;

use ephcrypt_interpose::memory::{self, procfs, DsmMarking, VmFlags};

/// The shims are only installed into a binary that imports every required
/// file call (the import audit): make this one import pread and pwrite.
fn setup() -> (&'static std::path::Path, std::sync::MutexGuard<'static, ()>) {
    let mut b = [0u8; 1];
    // SAFETY: calls on an invalid fd, which fail with EBADF.
    unsafe {
        libc::pread(-1, b.as_mut_ptr().cast(), 1, 0);
        libc::pwrite(-1, b.as_ptr().cast(), 1, 0);
    }
    let (dir, _report, serial) = common::setup();
    (dir, serial)
}

fn flags_at(addr: *mut libc::c_void) -> VmFlags {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    procfs::smaps_entry_containing(&smaps, addr as usize)
        .map(|(_, f)| f)
        .expect("mapped")
}

struct Shm {
    name: CString,
    fd: i32,
}

/// A POSIX shared memory object, opened through the `shm_open` shim.
fn shm(tag: &str) -> Shm {
    let name = CString::new(format!("/ephcrypt-mem-test-{}-{tag}", std::process::id())).unwrap();
    // SAFETY: valid name; goes through this binary's GOT (the shim).
    let fd = unsafe {
        libc::shm_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            0o600,
        )
    };
    assert!(fd >= 0, "shm_open: {}", std::io::Error::last_os_error());
    // SAFETY: sizing our own fresh object.
    assert_eq!(unsafe { libc::ftruncate(fd, 65536) }, 0);
    Shm { name, fd }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: closing and unlinking what shm() created.
        unsafe {
            libc::close(self.fd);
            libc::shm_unlink(self.name.as_ptr());
        }
    }
}

/// mmap through the shim; unmapped by the caller.
fn map(fd: i32, flags: i32) -> *mut libc::c_void {
    // SAFETY: a fresh mapping of 64 KiB at a kernel-chosen address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            65536,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    p
}

fn unmap(p: *mut libc::c_void) {
    // SAFETY: unmapping what map() returned.
    unsafe { libc::munmap(p, 65536) };
}

fn dontdump_of(fd: i32, flags: i32) -> bool {
    let p = map(fd, flags);
    let f = flags_at(p);
    unmap(p);
    f.dontdump
}

#[test]
fn shared_mappings_of_shm_open_fds_are_dontdump_and_nothing_else_is() {
    let (dir, _serial) = setup();
    memory::set_dsm_marking(DsmMarking::ShmOpenFds);
    let s = shm("a");
    assert!(memory::is_shm_fd(s.fd), "the shm_open shim remembered it");
    assert!(dontdump_of(s.fd, libc::MAP_SHARED));
    // Private mappings are not shared memory.
    assert!(!dontdump_of(s.fd, libc::MAP_PRIVATE));
    // A shared mapping of a plain file is not DSM under posix.
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("plain-shared-map"))
        .unwrap();
    file.set_len(65536).unwrap();
    assert!(!memory::is_shm_fd(file.as_raw_fd()));
    assert!(!dontdump_of(file.as_raw_fd(), libc::MAP_SHARED));
    // Anonymous shared memory (the main segment's kind) is left to the
    // postmaster's startup hook.
    assert!(!dontdump_of(-1, libc::MAP_SHARED | libc::MAP_ANONYMOUS));

    // Under `mmap`-type DSM every shared file mapping is marked.
    memory::set_dsm_marking(DsmMarking::SharedFileMappings);
    assert!(dontdump_of(file.as_raw_fd(), libc::MAP_SHARED));
    assert!(!dontdump_of(file.as_raw_fd(), libc::MAP_PRIVATE));

    // Control: with marking off, the same shm mapping keeps its flags.
    memory::set_dsm_marking(DsmMarking::Off);
    assert!(!dontdump_of(s.fd, libc::MAP_SHARED));
    memory::set_dsm_marking(DsmMarking::ShmOpenFds);
    assert!(dontdump_of(s.fd, libc::MAP_SHARED));
}

#[test]
fn close_forgets_a_shm_fd_so_its_number_is_not_marked_later() {
    let (dir, _serial) = setup();
    memory::set_dsm_marking(DsmMarking::ShmOpenFds);
    let s = shm("b");
    let number = s.fd;
    drop(s); // close through the shim
    assert!(!memory::is_shm_fd(number));
    // The lowest free number is reused by the next open.
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("reused-number"))
        .unwrap();
    file.set_len(65536).unwrap();
    assert_eq!(file.as_raw_fd(), number, "the number was reused");
    assert!(!dontdump_of(file.as_raw_fd(), libc::MAP_SHARED));
    // No marking, no bit: shm_open is not remembered at all when off.
    memory::set_dsm_marking(DsmMarking::Off);
    let t = shm("c");
    assert!(!memory::is_shm_fd(t.fd));
}

#[test]
fn main_segment_calls_set_what_the_kernel_reports() {
    let (_dir, _serial) = setup();
    // SAFETY: a fresh anonymous shared mapping made around the shims.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            1 << 20,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let m = memory::find_mapping(p as usize + 4096).unwrap().unwrap();
    assert_eq!(m.start, p as usize);
    assert!(m.len() >= 1 << 20 && m.is_shared());
    let before = flags_at(p);
    assert!(!before.dontdump && !before.locked, "control: {before:?}");
    memory::exclude_from_dumps(&m).unwrap();
    assert!(flags_at(p).dontdump);
    let budget = memory::memlock_budget().unwrap();
    if budget.admits(m.len() as u64).is_ok() {
        memory::lock(&m).unwrap();
        let f = flags_at(p);
        assert!(f.locked && f.dontdump && f.unswappable());
        let after = memory::memlock_budget().unwrap();
        assert!(after.locked >= budget.locked + m.len() as u64, "VmLck grew");
    }
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(p, 1 << 20) };
}

#[test]
fn a_too_small_memlock_limit_is_seen_before_mlock() {
    let (_dir, _serial) = setup();
    // In a child: lower RLIMIT_MEMLOCK; the budget the postmaster checks
    // must then refuse a segment larger than the limit (unless the process
    // holds CAP_IPC_LOCK, which lifts the limit).
    let status = common_child(|| {
        let rl = libc::rlimit {
            rlim_cur: 64 * 1024,
            rlim_max: 64 * 1024,
        };
        // SAFETY: lowering our own limit in a forked child.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) } != 0 {
            return 10;
        }
        let b = memory::memlock_budget().unwrap();
        if b.limit != Some(64 * 1024) {
            return 11;
        }
        if !b.cap_ipc_lock && b.admits(1 << 20).is_ok() {
            return 12;
        }
        0
    });
    assert_eq!(status, 0);
}

/// Run `f` in a forked child; its return value is the exit status.
fn common_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork in a test; the child only runs `f` and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: leaving the child without running the parent's exit path.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status));
    libc::WEXITSTATUS(status)
}

#[test]
fn non_dumpable_is_kept_across_fork() {
    let (_dir, _serial) = setup();
    assert_eq!(memory::dumpable().unwrap(), 1, "control: dumpable to start");
    let status = common_child(|| {
        memory::set_dumpable(false).unwrap();
        if memory::dumpable().unwrap() != 0 {
            return 20;
        }
        // A grandchild forked after that, like PostgreSQL's children.
        common_child(|| i32::from(memory::dumpable().unwrap()))
    });
    assert_eq!(status, 0, "the grandchild is not dumpable");
    assert_eq!(memory::dumpable().unwrap(), 1, "the parent is untouched");
}
