//! `system`: how PostgreSQL runs `archive_command` (`shell_archive.c`) and
//! the recovery commands. A shell run by the archiver while pg_wal is sealed
//! would archive ciphertext that nothing can read once the postmaster ends;
//! the start-up refusal cannot see an `archive_command` set by a later
//! reload, so the glue installs a guard that is asked here, in the calling
//! process, before every command (DECISIONS.md #63).

use std::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

use ephcrypt_classify::ArtifactClass;

use super::real::real;

/// Decides in the calling process whether `command` must not run (and says
/// why in the server log). Runs in PostgreSQL's context, outside libc.
pub type SystemGuard = fn(&CStr) -> bool;

static GUARD: OnceLock<SystemGuard> = OnceLock::new();

/// Install the guard (postmaster, before any child exists; first call wins).
pub fn set_system_guard(guard: SystemGuard) -> bool {
    GUARD.set(guard).is_ok()
}

/// What a refused command returns: the wait status of a command that exited
/// with status 1, which PostgreSQL's archiver logs and retries later (a
/// status above 125 would make it exit).
pub const REFUSED_STATUS: c_int = 1 << 8;

/// # Safety
/// libc `system` contract.
pub(crate) unsafe extern "C" fn shim_system(command: *const c_char) -> c_int {
    if !command.is_null() && super::config::class_enabled(ArtifactClass::Wal) {
        if let Some(guard) = GUARD.get() {
            // SAFETY: system()'s contract: a NUL-terminated command.
            let c = unsafe { CStr::from_ptr(command) };
            // A guard that panics refuses (fail closed).
            if std::panic::catch_unwind(|| guard(c)).unwrap_or(true) {
                return REFUSED_STATUS;
            }
        }
    }
    // SAFETY: pass-through.
    unsafe { (real().system)(command) }
}
