//! Patching the test binary's own GOT (an integration test runs in its own
//! process, so this is safe). Rust test binaries are PIE, bind-now, full
//! RELRO, and call libc mostly through GLOB_DAT slots (`-Z plt=no`).
//!
//! Every patching test takes `SERIAL` so that two tests never patch or
//! restore the same symbol at once.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use ephcrypt_got::elf::{Executable, RelocKind};
use ephcrypt_got::{self as got, GotError, PatchPlan, PatchReport, Relro};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Permissions (`rw-p`...) of the mapping holding `addr`.
fn perms_at(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, perms) = (f.next().unwrap(), f.next().unwrap());
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            usize::from_str_radix(a, 16).unwrap(),
            usize::from_str_radix(b, 16).unwrap(),
        );
        if addr >= a && addr < b {
            return perms.to_owned();
        }
    }
    panic!("{addr:#x} not mapped");
}

fn assert_protection_restored(report: &PatchReport) {
    for p in &report.patched {
        for s in &p.slots {
            let perms = perms_at(s.slot);
            if s.in_relro {
                assert!(
                    perms.starts_with("r-"),
                    "{}: RELRO slot {:#x} page is {perms}",
                    p.name,
                    s.slot
                );
            }
        }
    }
}

fn restore(name: &str) {
    let real = got::resolve_libc(&got::c_name(name).unwrap()).unwrap();
    let report = got::patch_executable(&[(name, real)]).unwrap();
    assert_eq!(got::slot_value(name), Some(real));
    assert_protection_restored(&report);
}

// --- getpid -----------------------------------------------------------------

static REAL_GETPID: AtomicUsize = AtomicUsize::new(0);
static GETPID_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn counting_getpid() -> libc::pid_t {
    GETPID_CALLS.fetch_add(1, SeqCst);
    // SAFETY: REAL_GETPID holds libc's getpid (set before patching).
    let real: extern "C" fn() -> libc::pid_t = unsafe {
        std::mem::transmute::<usize, extern "C" fn() -> libc::pid_t>(REAL_GETPID.load(SeqCst))
    };
    real()
}

#[test]
fn patch_getpid_counts_calls_and_restores_relro() {
    let _g = serial();
    let real = got::resolve_libc(c"getpid").unwrap();
    REAL_GETPID.store(real, SeqCst);
    let expected_pid = std::process::id();
    let shim = counting_getpid as extern "C" fn() -> libc::pid_t as usize;

    let report = got::patch_executable(&[("getpid", shim)]).unwrap();
    eprintln!("{report:#x?}");
    assert!(report.bind_now);
    assert_eq!(report.relro, Relro::Full);
    assert!(report.absent.is_empty());
    let p = report.patched_symbol("getpid").unwrap();
    assert!(p.slot_count() >= 1);
    assert_eq!(p.address, shim);
    assert_eq!(p.version.as_deref(), Some("GLIBC_2.2.5"));
    for s in &p.slots {
        // Bind-now: the previous value was libc's function, not a stub.
        assert_eq!(s.previous, real);
        assert!(!s.previous_in_executable);
        assert!(s.in_relro, "full RELRO: the slot is in PT_GNU_RELRO");
    }
    assert_eq!(report.lazy_slots(), 0);

    // Calls through the GOT now reach the shim, which forwards to libc.
    let before = GETPID_CALLS.load(SeqCst);
    assert_eq!(std::process::id(), expected_pid);
    assert_eq!(std::process::id(), expected_pid);
    assert!(GETPID_CALLS.load(SeqCst) >= before + 2);

    assert_eq!(got::slot_value("getpid"), Some(shim));
    assert!(got::slot_values("getpid")
        .unwrap()
        .iter()
        .all(|v| *v == shim));
    got::verify(&report).unwrap();
    assert_protection_restored(&report);

    // Someone overwriting the slot (here: us, restoring libc) is detected.
    restore("getpid");
    let err = got::verify(&report).unwrap_err();
    match err {
        GotError::Verify {
            ref symbol,
            expected,
            found,
            ..
        } => {
            assert_eq!(symbol, "getpid");
            assert_eq!(expected, shim);
            assert_eq!(found, real);
        }
        ref other => panic!("unexpected error {other}"),
    }
    let calls = GETPID_CALLS.load(SeqCst);
    let _ = std::process::id();
    assert_eq!(
        GETPID_CALLS.load(SeqCst),
        calls,
        "restored: shim no longer called"
    );
}

// --- open64 (variadic) ------------------------------------------------------

static REAL_OPEN64: AtomicUsize = AtomicUsize::new(0);
static MARKED_OPENS: AtomicUsize = AtomicUsize::new(0);
const MARKER: &str = "ephcrypt-got-patch-test";

type OpenFn = unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;

extern "C" fn counting_open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: open64's caller passes a valid C string.
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    if p.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
        MARKED_OPENS.fetch_add(1, SeqCst);
    }
    // SAFETY: REAL_OPEN64 holds libc's open64.
    let real: OpenFn = unsafe { std::mem::transmute::<usize, OpenFn>(REAL_OPEN64.load(SeqCst)) };
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { real(path, flags, mode) }
}

#[test]
fn patch_open64_intercepts_std_file_open() {
    let _g = serial();
    REAL_OPEN64.store(got::resolve_libc(c"open64").unwrap(), SeqCst);
    let shim = counting_open64 as extern "C" fn(*const c_char, c_int, c_uint) -> c_int as usize;
    let path = std::env::temp_dir().join(format!("{MARKER}-{}", std::process::id()));

    let plan = PatchPlan::new(&[("open64", shim)]).unwrap();
    assert!(plan.absent().is_empty());
    assert!(plan.found().any(|(n, c)| n == "open64" && c >= 1));
    let report = plan.apply().unwrap();
    assert_protection_restored(&report);

    std::fs::write(&path, b"hello").unwrap(); // O_CREAT with a mode
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    assert!(std::fs::File::open(path.with_extension("missing")).is_err());
    assert_eq!(MARKED_OPENS.load(SeqCst), 3);
    std::fs::remove_file(&path).unwrap();

    got::verify(&report).unwrap();
    restore("open64");
}

// --- memset: JUMP_SLOT and GLOB_DAT slots of one symbol ---------------------

static REAL_MEMSET: AtomicUsize = AtomicUsize::new(0);
static MEMSET_CALLS: AtomicUsize = AtomicUsize::new(0);

type MemsetFn = unsafe extern "C" fn(*mut c_void, c_int, usize) -> *mut c_void;

unsafe extern "C" fn counting_memset(dst: *mut c_void, c: c_int, n: usize) -> *mut c_void {
    MEMSET_CALLS.fetch_add(1, SeqCst);
    // SAFETY: REAL_MEMSET holds libc's memset.
    let real: MemsetFn =
        unsafe { std::mem::transmute::<usize, MemsetFn>(REAL_MEMSET.load(SeqCst)) };
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { real(dst, c, n) }
}

#[test]
fn patch_covers_every_slot_kind_of_a_symbol() {
    let _g = serial();
    let exe = Executable::current().unwrap();
    let kinds: Vec<RelocKind> = exe.imports_of("memset").map(|i| i.kind).collect();
    // Debug builds of this test have a PLT (JUMP_SLOT) slot for memset besides
    // the GLOB_DAT ones; optimized builds may not.
    eprintln!("memset slots: {kinds:?}");
    assert!(kinds.contains(&RelocKind::GlobDat));
    REAL_MEMSET.store(got::resolve_libc(c"memset").unwrap(), SeqCst);
    let shim = counting_memset as MemsetFn as usize;

    let report = got::patch_executable(&[("memset", shim)]).unwrap();
    let p = report.patched_symbol("memset").unwrap();
    assert_eq!(p.slot_count(), kinds.len());
    for kind in &kinds {
        assert!(p.slots.iter().any(|s| s.kind == *kind), "{kind:?} patched");
    }
    assert!(got::slot_values("memset")
        .unwrap()
        .iter()
        .all(|v| *v == shim));
    assert_protection_restored(&report);

    let len = std::hint::black_box(4096usize);
    let before = MEMSET_CALLS.load(SeqCst);
    let v = vec![0x5au8; len];
    let mut w = std::hint::black_box(v);
    // SAFETY: w has `len` bytes.
    unsafe { std::ptr::write_bytes(w.as_mut_ptr(), 0xa5, std::hint::black_box(len)) };
    assert!(w.iter().all(|b| *b == 0xa5));
    assert!(
        MEMSET_CALLS.load(SeqCst) > before,
        "memset went through the shim"
    );

    got::verify(&report).unwrap();
    restore("memset");
}

// --- absent symbols and bad requests ------------------------------------------

#[test]
fn unknown_symbol_is_reported_absent() {
    let _g = serial();
    let shim = counting_getpid as extern "C" fn() -> libc::pid_t as usize;
    let report =
        got::patch_executable(&[("ephcrypt_no_such_symbol", shim), ("preadv2", shim)]).unwrap();
    assert!(report.patched.is_empty());
    assert_eq!(report.slot_count(), 0);
    assert_eq!(
        report.absent,
        vec!["ephcrypt_no_such_symbol".to_owned(), "preadv2".to_owned()]
    );
    got::verify(&report).unwrap();
}

#[test]
fn bogus_requests_are_errors_not_panics() {
    let _g = serial();
    let shim = counting_getpid as extern "C" fn() -> libc::pid_t as usize;
    static DATA: u64 = 7;
    let data = &DATA as *const u64 as usize;
    let heap = Box::new(0u64);
    let cases: Vec<(Vec<(&str, usize)>, &str)> = vec![
        (vec![("getpid", 0)], "null"),
        (vec![("getpid", data)], "not code"),
        (vec![("getpid", &*heap as *const u64 as usize)], "not code"),
        (vec![("getpid", 8)], "not mapped"),
        (vec![("", shim)], "empty"),
        (vec![("stat@GLIBC_2.33", shim)], "version"),
        (vec![("get\0pid", shim)], "NUL"),
        (vec![("getpid", shim), ("getpid", shim + 1)], "twice"),
    ];
    let before = got::slot_value("getpid");
    for (req, what) in cases {
        let err = got::patch_executable(&req).unwrap_err();
        assert!(
            matches!(err, GotError::InvalidRequest { .. }),
            "{what}: {err}"
        );
        assert!(
            err.to_string().contains(what),
            "{what}: message {err} names the problem"
        );
    }
    assert_eq!(got::slot_value("getpid"), before, "nothing was written");
    // The same request twice with the same address is fine (deduplicated).
    let plan = PatchPlan::new(&[("ephcrypt_absent", shim), ("ephcrypt_absent", shim)]).unwrap();
    assert_eq!(plan.absent(), ["ephcrypt_absent".to_owned()]);
}

#[test]
fn verify_catches_a_slot_the_dynamic_linker_rewrote() {
    let _g = serial();
    let real = got::resolve_libc(c"getpid").unwrap();
    let shim = counting_getpid as extern "C" fn() -> libc::pid_t as usize;
    REAL_GETPID.store(real, SeqCst);
    let report = got::patch_executable(&[("getpid", shim)]).unwrap();
    got::verify(&report).unwrap();
    // What lazy resolution does to a slot whose stub runs after the patch:
    // it writes libc's address back.
    let undone = got::patch_executable(&[("getpid", real)]).unwrap();
    let err = got::verify(&report).unwrap_err();
    assert!(
        matches!(err, GotError::Verify { ref symbol, .. } if symbol == "getpid"),
        "{err}"
    );
    got::verify(&undone).unwrap();
}
