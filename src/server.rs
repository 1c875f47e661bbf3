//! Facts about the running server (its version, its settings).

use std::ffi::CStr;

use pgrx::pg_sys;

/// A server setting as text (`None` if this server has no such setting).
pub fn setting(name: &CStr) -> Option<String> {
    // SAFETY: GetConfigOption with missing_ok = true returns NULL for an
    // unknown name, else a string owned by the GUC machinery that we copy
    // at once; PostgreSQL processes are single-threaded.
    unsafe {
        let v = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

/// `server_version` (e.g. `15.18 (Debian 15.18-0+deb12u1)`).
pub fn version() -> String {
    setting(c"server_version").unwrap_or_default()
}

/// `server_version_num` (e.g. 150018).
pub fn version_num() -> i32 {
    setting(c"server_version_num")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
