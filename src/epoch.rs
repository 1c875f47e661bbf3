//! The postmaster-lifetime epoch key.
//!
//! Life cycle (all in the postmaster, while no child exists):
//! 1. `_PG_init` (only under `shared_preload_libraries`): map a protected
//!    key page, fill it from the kernel CSPRNG, register an exit callback
//!    that wipes it.
//! 2. First `shmem_startup_hook`: publish the public epoch state
//!    (id, created at, fingerprint, protection) in shared memory.
//! 3. Every later `shmem_startup_hook` (crash-restart after a backend died):
//!    a new key with a new epoch id on a *fresh* page; the old page is wiped
//!    and unmapped, so a process that outlived the crash-restart keeps only
//!    zeros. Publish.
//! 4. Postmaster exit: the `on_proc_exit` callback wipes the key.
//!
//! Children inherit the current page through `fork`, read-only. The shims and the exit
//! path read only the key page, never PostgreSQL's shared memory (the
//! logger detaches it, and the postmaster unmaps it on its way out).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use ephcrypt_attest::to_hex;
use ephcrypt_interpose::secmem::{self, AllocMode, KeyPage, Protection};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLogLevel, PgLwLock};

use crate::errors::EphError;
use crate::gucs::{self, OnUnsupported};

/// Set in the postmaster's `_PG_init` when loaded through
/// `shared_preload_libraries`; inherited by every child through fork.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// How many times the postmaster initialized shared memory (postmaster-private).
static SHMEM_STARTUPS: AtomicU32 = AtomicU32::new(0);

/// Public state of the current epoch, in PostgreSQL shared memory.
#[derive(Clone, Copy, Default)]
pub struct EpochPublic {
    /// Generation of the key page this state describes (odd = live).
    pub generation: u32,
    pub epoch_id: [u8; 16],
    /// Microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// HMAC commitment to the key; never key bytes.
    pub fingerprint: [u8; 32],
    /// 0 = none, 1 = memfd_secret, 2 = mlock+dontdump.
    pub protection: u8,
    /// Crash-restarts seen by this postmaster (each one rotates the key).
    pub restarts: u32,
}

// SAFETY: plain-old-data with no pointers; valid in any process that maps
// the segment.
unsafe impl PGRXSharedMemory for EpochPublic {}

static EPOCH_PUBLIC: PgLwLock<EpochPublic> =
    // SAFETY: the name is unique to this extension and 'static.
    unsafe { PgLwLock::new(c"pg_ephcrypt_epoch") };

static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// Whether this server loaded pg_ephcrypt through shared_preload_libraries.
pub fn is_preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// ERROR 55000 unless preloaded.
pub fn require_preloaded() {
    if !is_preloaded() {
        EphError::NotPreloaded.raise();
    }
}

/// The current epoch's key page, if this process has one.
pub fn key_page() -> Option<&'static KeyPage> {
    secmem::current()
}

fn protection_code(p: Option<Protection>) -> u8 {
    match p {
        None => 0,
        Some(Protection::SecretMem) => 1,
        Some(Protection::LockedNoDump) => 2,
    }
}

/// Name of a protection code stored in [`EpochPublic`].
pub fn protection_name(code: u8) -> &'static str {
    match code {
        1 => Protection::SecretMem.name(),
        2 => Protection::LockedNoDump.name(),
        _ => "none",
    }
}

/// The fingerprint of the live key of `page`, or `None` if wiped.
pub fn fingerprint_of(page: &KeyPage) -> Option<[u8; 32]> {
    Some(page.epoch_key()?.fingerprint(&page.epoch_id()))
}

/// Called from `_PG_init` in the postmaster under shared_preload_libraries.
pub fn init_postmaster() {
    if secmem::current().is_some() {
        return; // _PG_init runs once per process
    }
    let page = match secmem::start_epoch(AllocMode::Auto, crate::time::now_unix_us()) {
        Ok(page) => page,
        Err(err) => {
            let error = EphError::KeyMemory(err.to_string());
            match gucs::on_unsupported() {
                OnUnsupported::Refuse => {
                    error.report(PgLogLevel::FATAL);
                    return;
                }
                OnUnsupported::Warn => {
                    // The operator chose availability: run without a key and
                    // without interposition (transient files are plaintext).
                    error.report(PgLogLevel::WARNING);
                    if ephcrypt_interpose::stats::init_shared().is_ok() {
                        ephcrypt_interpose::stats::count_refused_configuration();
                    }
                    PRELOADED.store(true, Ordering::Relaxed);
                    install_shmem_hooks();
                    return;
                }
            }
        }
    };
    // SAFETY: registering a plain C callback with a dummy argument, in the
    // postmaster's single thread. Children forget it (on_exit_reset).
    unsafe { pg_sys::on_proc_exit(Some(wipe_at_postmaster_exit), pg_sys::Datum::from(0usize)) };
    PRELOADED.store(true, Ordering::Relaxed);
    install_shmem_hooks();
    let _ = page;
    crate::interpose::install_in_postmaster();
}

fn install_shmem_hooks() {
    pg_shmem_init!(EPOCH_PUBLIC);
    // SAFETY: hook chaining in _PG_init, single-threaded postmaster.
    unsafe {
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(epoch_shmem_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn epoch_shmem_startup() {
    // SAFETY: calling the previous hook (pgrx's, which allocates our
    // struct) exactly as PostgreSQL would have.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            prev();
        }
    }
    // SAFETY: reading a PostgreSQL global of this process.
    if unsafe { pg_sys::IsUnderPostmaster } {
        return; // children never rotate or publish
    }
    let startups = SHMEM_STARTUPS.fetch_add(1, Ordering::Relaxed) + 1;
    let Some(mut page) = key_page() else {
        return; // on_unsupported = warn without a key page: status shows "none"
    };
    if startups > 1 {
        // Crash-restart: every child is gone; the old key goes with them
        // (wiped and unmapped), and the counters start afresh.
        ephcrypt_interpose::stats::reset_shared();
        // Pages published by the dead children described files of the
        // ending epoch (FORMAT.md §8.3).
        ephcrypt_interpose::shim::pool::reset();
        match secmem::start_epoch(AllocMode::Auto, crate::time::now_unix_us()) {
            Ok(p) => page = p,
            Err(err) => {
                secmem::wipe_current();
                EphError::KeyMemory(err.to_string()).report(PgLogLevel::FATAL);
                return;
            }
        }
    }
    publish(page, startups - 1);
}

fn publish(page: &KeyPage, restarts: u32) {
    let state = EpochPublic {
        generation: page.generation(),
        epoch_id: page.epoch_id(),
        created_at_us: page.created_at_us(),
        fingerprint: fingerprint_of(page).unwrap_or_default(),
        protection: protection_code(Some(page.protection())),
        restarts,
    };
    *EPOCH_PUBLIC.exclusive() = state;
    pgrx::log!("{}", epoch_log_line(&state, page.protection()));
    crate::anchor::certify_epoch(&state.epoch_id, state.created_at_us, restarts);
}

/// The one server-log line about a key epoch: public fields only.
pub fn epoch_log_line(state: &EpochPublic, protection: Protection) -> String {
    format!(
        "pg_ephcrypt: key epoch {} created (memory protection: {}, fingerprint {})",
        to_hex(&state.epoch_id),
        protection.name(),
        to_hex(&state.fingerprint)
    )
}

/// `on_proc_exit` callback of the postmaster: wipe the key. Touches only
/// the key page (PostgreSQL's shared memory may already be gone).
unsafe extern "C-unwind" fn wipe_at_postmaster_exit(_code: i32, _arg: pg_sys::Datum) {
    // The page is shared: only the postmaster (or a standalone backend)
    // may wipe it, never a child on its way out.
    // SAFETY: reading a PostgreSQL global of this process.
    if unsafe { pg_sys::IsUnderPostmaster } {
        return;
    }
    secmem::wipe_current();
}

/// A snapshot of the published public state (backends only).
pub fn public_state() -> EpochPublic {
    *EPOCH_PUBLIC.share()
}
