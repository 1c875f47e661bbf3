//! PostgreSQL's memory out of core dumps and swap (issue #15): the pgrx
//! glue. The mechanism is `ephcrypt_interpose::memory`.
//!
//! In the postmaster:
//! 1. `_PG_init` ([`init_postmaster`], after the GOT patch, before any
//!    fork): `pg_ephcrypt.core_dumps = off` makes the process non-dumpable;
//!    the `mmap` shim is told which dynamic shared memory mappings to mark.
//! 2. Every `shmem_startup_hook` (start, and each crash-restart, which
//!    re-creates the segment): the mapping that holds our own shared struct
//!    is the main segment; it is marked `MADV_DONTDUMP` and, under
//!    `dontdump_lock`, `mlock`ed; then the kernel's flags for it are read
//!    back from `/proc/self/smaps` and published in the segment.
//!
//! Backends report what the kernel says ([`readback`]): their own mapping's
//! `dd` flag, their own DSM mappings' flags and their dumpable flag; the
//! lock, which `fork` does not copy to children, as the postmaster read it
//! back.

use ephcrypt_interpose::memory::{self as mem, DsmMarking, Mapping, VmFlags};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLogLevel, PgLwLock};

use crate::errors::EphError;
use crate::gucs::{self, MemoryHygiene, OnUnsupported};

/// What the postmaster read back from the kernel about the main segment.
/// `start`, `end` and `dontdump` are a record for the `#[pg_test]`s, which
/// compare them with a backend's own mapping; release code reads the rest.
#[derive(Clone, Copy, Default)]
#[cfg_attr(not(feature = "pg_test"), allow(dead_code))]
pub struct MemoryPublic {
    /// The postmaster looked at this segment (set by the startup hook).
    pub applied: bool,
    pub start: usize,
    pub end: usize,
    /// `VmFlags` of the postmaster's mapping right after applying.
    pub dontdump: bool,
    pub locked: bool,
    pub hugetlb: bool,
}

// SAFETY: plain-old-data; the addresses are only compared, never followed.
unsafe impl PGRXSharedMemory for MemoryPublic {}

static MEMORY_PUBLIC: PgLwLock<MemoryPublic> =
    // SAFETY: the name is unique to this extension and 'static.
    unsafe { PgLwLock::new(c"pg_ephcrypt_memory") };

static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// Refuse (FATAL) or warn per `pg_ephcrypt.on_unsupported`; returns only
/// under `warn`, and the caller then runs with the weaker setting.
fn unsupported(error: EphError) {
    match gucs::on_unsupported() {
        OnUnsupported::Refuse => error.report(PgLogLevel::FATAL),
        OnUnsupported::Warn => {
            ephcrypt_interpose::stats::count_refused_configuration();
            error.report(PgLogLevel::WARNING);
        }
    }
}

/// Called at the end of `_PG_init` in the postmaster (preloaded only).
pub fn init_postmaster() {
    if !gucs::core_dumps() {
        disable_core_dumps();
    }
    mem::set_dsm_marking(DsmMarking::Off);
    if gucs::memory_hygiene() != MemoryHygiene::Off {
        configure_dsm_marking();
    }
    pg_shmem_init!(MEMORY_PUBLIC);
    // SAFETY: hook chaining in _PG_init, single-threaded postmaster.
    unsafe {
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(memory_shmem_startup);
    }
}

fn disable_core_dumps() {
    match mem::set_dumpable(false).and_then(|()| mem::dumpable()) {
        Ok(0) => {}
        Ok(v) => unsupported(EphError::CoreDumps(format!(
            "the kernel reports dumpable = {v} after prctl(PR_SET_DUMPABLE, 0)"
        ))),
        Err(e) => unsupported(EphError::CoreDumps(format!(
            "prctl(PR_SET_DUMPABLE, 0): {e}"
        ))),
    }
}

/// Which DSM mappings the `mmap` shim must mark, given the server's
/// `dynamic_shared_memory_type` and what the GOT patch covers.
fn dsm_marking_for(dsm_type: Option<&str>, interposed: &[String]) -> Result<DsmMarking, String> {
    let has = |n: &str| interposed.iter().any(|s| s == n);
    let mmap = has("mmap") || has("mmap64");
    match dsm_type {
        Some("posix") if mmap && has("shm_open") => Ok(DsmMarking::ShmOpenFds),
        Some("mmap") if mmap => Ok(DsmMarking::SharedFileMappings),
        Some(t @ ("posix" | "mmap")) => Err(format!(
            "dynamic_shared_memory_type = {t}, but the postgres executable's mmap/shm_open calls \
             are not interposed (interposition off or failed)"
        )),
        Some(t) => Err(format!(
            "dynamic_shared_memory_type = {t} maps segments with shmat, which is not interposed"
        )),
        None => Err("dynamic_shared_memory_type is unknown".into()),
    }
}

fn configure_dsm_marking() {
    let dsm_type = crate::server::setting(c"dynamic_shared_memory_type");
    match dsm_marking_for(dsm_type.as_deref(), &crate::interpose::interposed_symbols()) {
        Ok(m) => mem::set_dsm_marking(m),
        Err(why) => unsupported(EphError::MemoryDontDump(why)),
    }
}

/// The address of our struct in the main segment (this process's mapping).
fn segment_address() -> usize {
    let guard = MEMORY_PUBLIC.share();
    &*guard as *const MemoryPublic as usize
}

#[pg_guard]
unsafe extern "C-unwind" fn memory_shmem_startup() {
    // SAFETY: calling the previous hook (pgrx's allocation of our struct,
    // and the others) exactly as PostgreSQL would have.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            prev();
        }
    }
    // SAFETY: reading a PostgreSQL global of this process.
    if unsafe { pg_sys::IsUnderPostmaster } {
        return; // the postmaster marks; children inherit the mapping
    }
    apply_to_main_segment();
}

fn kb(n: usize) -> usize {
    n.div_ceil(1024)
}

fn describe(m: &Mapping) -> String {
    let what = if m.path.is_empty() {
        "anonymous"
    } else {
        &m.path
    };
    format!("{} kB at {:#x}, {what}", kb(m.len()), m.start)
}

/// Mark (and lock) the main segment, read its flags back, publish them.
fn apply_to_main_segment() {
    let hygiene = gucs::memory_hygiene();
    let addr = segment_address();
    let found = match mem::flags_of_mapping(addr) {
        Ok(Some(found)) => Some(found),
        Ok(None) => {
            if hygiene != MemoryHygiene::Off {
                unsupported(EphError::MemoryDontDump(format!(
                    "no mapping in /proc/self/smaps contains the shared memory address {addr:#x}"
                )));
            }
            None
        }
        Err(e) => {
            if hygiene != MemoryHygiene::Off {
                unsupported(EphError::MemoryDontDump(format!(
                    "cannot read /proc/self/smaps: {e}"
                )));
            }
            None
        }
    };
    let Some((segment, before)) = found else {
        publish(MemoryPublic {
            applied: true,
            ..Default::default()
        });
        return;
    };
    let mut marked = false;
    if hygiene != MemoryHygiene::Off {
        match mem::exclude_from_dumps(&segment) {
            Err(e) => unsupported(EphError::MemoryDontDump(format!(
                "madvise(MADV_DONTDUMP) of the main segment ({}): {e}",
                describe(&segment)
            ))),
            Ok(()) => {
                marked = true;
                if hygiene == MemoryHygiene::DontDumpLock {
                    lock_segment(&segment, before);
                }
            }
        }
    }
    let after = match mem::flags_of_mapping(addr) {
        Ok(Some((_, f))) => f,
        _ => VmFlags::default(),
    };
    // Trust the kernel, not our calls.
    if marked && !after.dontdump {
        unsupported(EphError::MemoryDontDump(format!(
            "the kernel does not report the main segment ({}) as excluded from core dumps",
            describe(&segment)
        )));
    }
    let state = MemoryPublic {
        applied: true,
        start: segment.start,
        end: segment.end,
        dontdump: after.dontdump,
        locked: after.locked,
        hugetlb: after.hugetlb,
    };
    publish(state);
    pgrx::log!(
        "pg_ephcrypt: memory_hygiene = {}: main shared memory segment ({}): {}; dynamic shared memory: {}; core dumps: {}",
        hygiene.name(),
        describe(&segment),
        segment_words(&after),
        dsm_words(mem::dsm_marking()),
        core_dumps_name()
    );
}

fn lock_segment(segment: &Mapping, before: VmFlags) {
    if before.hugetlb {
        // hugetlb pages are never swapped, and mlock leaves them without
        // VM_LOCKED: nothing to do, and the readback counts them as locked.
        return;
    }
    let len = segment.len() as u64;
    let budget = match mem::memlock_budget() {
        Ok(b) => b,
        Err(e) => {
            unsupported(EphError::MemoryLock(format!(
                "cannot read RLIMIT_MEMLOCK: {e}"
            )));
            return;
        }
    };
    if let Err(needed) = budget.admits(len) {
        let limit = budget.limit.unwrap_or(u64::MAX);
        unsupported(EphError::MemoryLock(format!(
            "the main segment is {} kB, but RLIMIT_MEMLOCK is {} kB ({} kB locked already): \
             at least {} kB needed",
            len.div_ceil(1024),
            limit / 1024,
            budget.locked / 1024,
            needed.div_ceil(1024)
        )));
        return;
    }
    if let Err(e) = mem::lock(segment) {
        unsupported(EphError::MemoryLock(format!(
            "mlock of the main segment ({}): {e}",
            describe(segment)
        )));
        return;
    }
    match mem::flags_of_mapping(segment.start) {
        Ok(Some((_, f))) if f.unswappable() => {}
        _ => unsupported(EphError::MemoryLock(format!(
            "the kernel does not report the main segment ({}) as locked after mlock",
            describe(segment)
        ))),
    }
}

fn publish(state: MemoryPublic) {
    *MEMORY_PUBLIC.exclusive() = state;
}

fn segment_words(f: &VmFlags) -> &'static str {
    match (f.dontdump, f.unswappable()) {
        (true, true) => "excluded from core dumps, locked in RAM",
        (true, false) => "excluded from core dumps",
        (false, true) => "locked in RAM, in core dumps",
        (false, false) => "in core dumps, swappable",
    }
}

fn dsm_words(m: DsmMarking) -> &'static str {
    match m {
        DsmMarking::Off => "in core dumps",
        DsmMarking::ShmOpenFds => "excluded from core dumps (posix)",
        DsmMarking::SharedFileMappings => "excluded from core dumps (mmap)",
    }
}

fn core_dumps_name() -> &'static str {
    match mem::dumpable() {
        Ok(0) => "off",
        Ok(_) => "on",
        Err(_) => "unknown",
    }
}

/// What the kernel says about this server's memory, seen from this
/// process.
#[derive(Clone, Debug)]
pub struct Readback {
    /// `off`, `dontdump` or `dontdump_lock`: the main segment's `dd` flag in
    /// this process, and its lock as the postmaster read it back.
    pub hygiene: &'static str,
    /// The `mmap` shim marks DSM mappings in this process, and every DSM
    /// segment this process maps now carries `dd`.
    pub dsm_dontdump: bool,
    /// `PR_GET_DUMPABLE` of this process: `off` (0) or `on`.
    pub core_dumps: &'static str,
}

/// Read the memory hygiene in force from the kernel.
pub fn readback() -> Readback {
    let own = mem::flags_of_mapping(segment_address()).ok().flatten();
    let published = *MEMORY_PUBLIC.share();
    let dontdump = own.is_some_and(|(_, f)| f.dontdump);
    let locked = published.applied && (published.locked || published.hugetlb);
    let hygiene = match (dontdump, locked) {
        (true, true) => "dontdump_lock",
        (true, false) => "dontdump",
        (false, _) => "off",
    };
    let census = mem::dsm_census(&resolved_data_dir());
    let dsm_dontdump =
        mem::dsm_marking() != DsmMarking::Off && census.is_ok_and(|c| c.all_dontdump());
    Readback {
        hygiene,
        dsm_dontdump,
        core_dumps: core_dumps_name(),
    }
}

/// The data directory as the kernel names it in `/proc/self/smaps`
/// (symlinks resolved), for the `pg_dynshmem` segments.
fn resolved_data_dir() -> String {
    let dir = crate::scan::data_dir();
    std::fs::canonicalize(&dir)
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned()
}

/// Test probe, parallel safe so that a parallel worker can run it: this
/// process's pid, how many DSM segments it maps and how many carry `dd`,
/// whether its main-segment mapping carries `dd`, and its dumpable flag.
#[cfg(any(test, feature = "pg_test"))]
#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_test_memory_probe() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(dsm_mapped, i32),
        name!(dsm_dontdump, i32),
        name!(segment_dontdump, bool),
        name!(dumpable, i32),
    ),
> {
    let census = mem::dsm_census(&resolved_data_dir()).unwrap_or_default();
    let seg = mem::flags_of_mapping(segment_address())
        .ok()
        .flatten()
        .is_some_and(|(_, f)| f.dontdump);
    TableIterator::once((
        std::process::id() as i32,
        census.mapped as i32,
        census.dontdump as i32,
        seg,
        mem::dumpable().map_or(-1, i32::from),
    ))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn dsm_marking_follows_the_dsm_type_and_the_patch() {
        let all: Vec<String> = ["open", "mmap", "shm_open"].map(String::from).into();
        let no_shm: Vec<String> = ["open", "mmap64"].map(String::from).into();
        assert_eq!(
            dsm_marking_for(Some("posix"), &all),
            Ok(DsmMarking::ShmOpenFds)
        );
        assert_eq!(
            dsm_marking_for(Some("mmap"), &no_shm),
            Ok(DsmMarking::SharedFileMappings)
        );
        assert!(dsm_marking_for(Some("posix"), &no_shm).is_err());
        assert!(dsm_marking_for(Some("posix"), &[]).is_err());
        assert!(dsm_marking_for(Some("sysv"), &all)
            .unwrap_err()
            .contains("shmat"));
        assert!(dsm_marking_for(None, &all).is_err());
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::*;

    fn smaps_of(pid: i32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap()
    }

    fn flags_at(smaps: &str, addr: usize) -> VmFlags {
        mem::procfs::smaps_entry_containing(smaps, addr)
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("no mapping at {addr:#x}"))
    }

    /// A shared mapping made without the shim (this library's own libc
    /// import): the control that the `dd` check can fail.
    fn unmarked_shared_mapping() -> (*mut libc::c_void, usize) {
        let len = 1 << 20;
        // SAFETY: a fresh anonymous shared mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        (p, len)
    }

    #[pg_test]
    fn main_segment_is_dontdump_in_this_backend_and_the_postmaster() {
        let addr = segment_address();
        // SAFETY: reading a PostgreSQL global of this backend.
        let pm = unsafe { pg_sys::PostmasterPid };
        let own = flags_at(&smaps_of(std::process::id() as i32), addr);
        let postmaster = flags_at(&smaps_of(pm), addr);
        assert!(
            own.dontdump && own.shared,
            "backend's mapping of the segment: {own:?}"
        );
        assert!(postmaster.dontdump, "postmaster's mapping: {postmaster:?}");
        // Control: the same check on an unmarked shared mapping fails.
        let (p, len) = unmarked_shared_mapping();
        let control = flags_at(&smaps_of(std::process::id() as i32), p as usize);
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(p, len) };
        assert!(control.shared && !control.dontdump, "{control:?}");
        let published = *MEMORY_PUBLIC.share();
        assert!(published.applied && published.dontdump && !published.locked);
        assert!(published.start <= addr && addr < published.end);
    }

    #[pg_test]
    fn status_and_attestation_report_what_the_kernel_says() {
        let (hygiene, dsm, core): (String, bool, String) = Spi::connect(|c| {
            let t = c.select(
                "SELECT memory_hygiene, dsm_dontdump, core_dumps FROM pg_ephcrypt_status()",
                None,
                &[],
            )?;
            let r = t.first();
            Ok::<_, pgrx::spi::Error>((
                r.get::<String>(1)?.unwrap(),
                r.get::<bool>(2)?.unwrap(),
                r.get::<String>(3)?.unwrap(),
            ))
        })
        .unwrap();
        assert_eq!(hygiene, "dontdump");
        assert!(dsm);
        assert_eq!(core, "on");
        assert_eq!(mem::dumpable().unwrap(), 1);
        let doc: pgrx::JsonB =
            Spi::get_one("SELECT pg_ephcrypt_attest('\\x0011223344556677'::bytea)")
                .unwrap()
                .unwrap();
        assert_eq!(doc.0["memory_hygiene"], "dontdump");
        assert_eq!(doc.0["dsm_dontdump"], true);
        assert_eq!(doc.0["core_dumps"], "on");
        // The readback follows the kernel: a DSM mapping without dd in this
        // process turns dsm_dontdump false.
        // Named like PostgreSQL's own segments ("PostgreSQL.<u32>"); O_EXCL
        // guards against a clash with a real one.
        let name = format!("/PostgreSQL.99{}", std::process::id());
        let cname = std::ffi::CString::new(name).unwrap();
        // SAFETY: this library's own shm_open/mmap (not interposed), a
        // fresh object of one page, unlinked and unmapped below.
        let (fd, p) = unsafe {
            let fd = libc::shm_open(
                cname.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            );
            assert!(fd >= 0);
            assert_eq!(libc::ftruncate(fd, 4096), 0);
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            (fd, p)
        };
        let control = readback();
        // SAFETY: undoing the above.
        unsafe {
            libc::munmap(p, 4096);
            libc::close(fd);
            libc::shm_unlink(cname.as_ptr());
        }
        assert!(!control.dsm_dontdump, "{control:?}");
        assert!(readback().dsm_dontdump);
    }

    /// A DSM segment PostgreSQL creates (dsm_create: shm_open, ftruncate,
    /// mmap through the executable's GOT) carries dd; one mapped around the
    /// shim does not.
    #[pg_test]
    fn dsm_segments_created_by_postgres_are_dontdump() {
        let dir = resolved_data_dir();
        let before = mem::dsm_census(&dir).unwrap();
        // SAFETY: creating and detaching a DSM segment in a backend with a
        // resource owner (the test's transaction).
        let seg = unsafe { pg_sys::dsm_create(1 << 20, 0) };
        assert!(!seg.is_null());
        let during = mem::dsm_census(&dir).unwrap();
        // SAFETY: the segment created above.
        unsafe { pg_sys::dsm_detach(seg) };
        assert_eq!(during.mapped, before.mapped + 1, "{before:?} -> {during:?}");
        assert_eq!(
            during.dontdump,
            before.dontdump + 1,
            "{before:?} -> {during:?}"
        );
        assert!(during.all_dontdump());
    }

    #[pg_test]
    fn parallel_workers_map_dsm_with_dd_and_inherit_the_segment_flag() {
        Spi::run("SET LOCAL max_parallel_workers_per_gather = 2").unwrap();
        Spi::run("SET LOCAL parallel_setup_cost = 0").unwrap();
        Spi::run("SET LOCAL parallel_tuple_cost = 0").unwrap();
        let force = if pg_sys::PG_VERSION_NUM >= 160000 {
            "debug_parallel_query"
        } else {
            "force_parallel_mode"
        };
        Spi::run(&format!("SET LOCAL {force} = on")).unwrap();
        let rows: Vec<(i32, i32, i32, bool)> = Spi::connect(|client| {
            let t = client.select(
                "SELECT pid, dsm_mapped, dsm_dontdump, segment_dontdump FROM pg_ephcrypt_test_memory_probe()",
                None,
                &[],
            )?;
            t.map(|r| {
                Ok((
                    r.get::<i32>(1)?.unwrap(),
                    r.get::<i32>(2)?.unwrap(),
                    r.get::<i32>(3)?.unwrap(),
                    r.get::<bool>(4)?.unwrap(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap();
        assert_eq!(rows.len(), 1);
        let (pid, mapped, dontdump, segment) = rows[0];
        assert_ne!(pid, std::process::id() as i32, "ran in a parallel worker");
        // The worker maps at least the parallel context's segment.
        assert!(mapped >= 1, "{rows:?}");
        assert_eq!(mapped, dontdump, "{rows:?}");
        assert!(segment);
    }

    /// A marked table's pages sit in shared buffers (found by reading the
    /// main segment in this process: the control), yet gcore of another
    /// backend omits them, while that backend's private memory (its query
    /// text) is in the dump.
    #[pg_test]
    fn gcore_of_a_backend_omits_shared_buffers() {
        let shared_marker = format!("SHBUF-{}-{}", "MARK", std::process::id());
        Spi::run(&format!(
            "CREATE TABLE mem_marked AS SELECT g, '{}' || '{}-' || g AS v FROM generate_series(1, 2000) g",
            &shared_marker[..6],
            &shared_marker[6..]
        ))
        .unwrap();
        let needle = format!("{shared_marker}-1000");
        let published = *MEMORY_PUBLIC.share();
        // SAFETY: the main segment is mapped in this backend for its whole
        // life; reading it is what any backend may do.
        let segment = unsafe {
            std::slice::from_raw_parts(
                published.start as *const u8,
                published.end - published.start,
            )
        };
        assert!(
            memchr::memmem::find(segment, needle.as_bytes()).is_some(),
            "control: the marker is in shared buffers"
        );

        let port: String = Spi::get_one("SELECT current_setting('port')")
            .unwrap()
            .unwrap();
        let sockdir: String =
            Spi::get_one("SELECT split_part(current_setting('unix_socket_directories'), ',', 1)")
                .unwrap()
                .unwrap();
        let private_marker = format!("PRIVATE-MEM-{}", std::process::id());
        let mut child = std::process::Command::new("psql")
            .args(["-X", "-h", &sockdir, "-p", &port, "-d", "postgres", "-c"])
            .arg(format!("SELECT pg_sleep(20) /* {private_marker} */"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("psql");
        let mut backend = None;
        for _ in 0..200 {
            Spi::run("SELECT pg_stat_clear_snapshot()").unwrap();
            backend = Spi::get_one::<i32>(&format!(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%{private_marker}%' AND state = 'active' AND pid <> pg_backend_pid() LIMIT 1"
            ))
            .ok()
            .flatten();
            if backend.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let backend = backend.expect("the second backend is sleeping");
        let dir = std::env::temp_dir().join(format!("pg_ephcrypt_memcore_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("gcore")
            .arg("-o")
            .arg(dir.join("core"))
            .arg(backend.to_string())
            .output()
            .expect("gcore");
        let path = dir.join(format!("core.{backend}"));
        let core = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "gcore {backend}: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            memchr::memmem::find(&core, private_marker.as_bytes()).is_some(),
            "the dump is real: the backend's own query text is in it"
        );
        assert!(
            memchr::memmem::find(&core, shared_marker.as_bytes()).is_none(),
            "shared buffers reached a core dump"
        );
    }
}
