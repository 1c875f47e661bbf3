//! Resolving the real libc functions by name, from libc itself.
//!
//! The real function is never taken from a GOT slot: in a lazily bound
//! executable the slot may still hold the PLT stub, and calling it makes the
//! dynamic linker resolve the symbol and overwrite the slot — i.e. undo a
//! patch. We ask libc (`dlopen("libc.so.6", RTLD_NOLOAD)` + `dlsym`) and
//! refuse any answer that lies inside the main executable.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::elf;
use crate::error::GotError;

// ---------------------------------------------------------------------------
// Resolving the real functions.

static LIBC_HANDLE: AtomicUsize = AtomicUsize::new(0);

fn dlerror_string() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string valid until the
    // next dl* call on this thread; we copy it at once.
    unsafe {
        let msg = libc::dlerror();
        if msg.is_null() {
            "unknown error".to_owned()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}

fn libc_handle(name: &CStr) -> Result<*mut libc::c_void, GotError> {
    let cached = LIBC_HANDLE.load(Ordering::Acquire);
    if cached != 0 {
        return Ok(cached as *mut libc::c_void);
    }
    // SAFETY: RTLD_NOLOAD only returns a handle to the already loaded libc
    // (no constructor runs); the string is a valid C string.
    let handle = unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_NOW) };
    if handle.is_null() {
        return Err(GotError::Resolve {
            name: name.to_string_lossy().into_owned(),
            reason: format!("dlopen(libc.so.6, RTLD_NOLOAD): {}", dlerror_string()),
        });
    }
    // A race only costs one more reference on libc, which is never unloaded.
    LIBC_HANDLE.store(handle as usize, Ordering::Release);
    Ok(handle)
}

fn check_resolved(name: &CStr, addr: *mut libc::c_void) -> Result<usize, GotError> {
    let err = |reason: String| GotError::Resolve {
        name: name.to_string_lossy().into_owned(),
        reason,
    };
    if addr.is_null() {
        return Err(err(dlerror_string()));
    }
    let addr = addr as usize;
    // Never hand out an address inside the executable (a PLT stub or a shim).
    if elf::main_image_contains(addr)? {
        return Err(err(format!(
            "resolved to {addr:#x}, inside the main executable"
        )));
    }
    Ok(addr)
}

/// The address of libc's own `name` (default version), resolved with
/// `dlopen("libc.so.6", RTLD_NOLOAD)` + `dlsym` — never read from a GOT slot.
pub fn resolve_libc(name: &CStr) -> Result<usize, GotError> {
    let handle = libc_handle(name)?;
    // SAFETY: valid handle and C string; dlerror is cleared first so a null
    // result is reported with its own message.
    let addr = unsafe {
        libc::dlerror();
        libc::dlsym(handle, name.as_ptr())
    };
    check_resolved(name, addr)
}

/// Like [`resolve_libc`], for a specific symbol version (`GLIBC_2.33`), as
/// found in [`Import::version`]; uses `dlvsym`.
pub fn resolve_libc_versioned(name: &CStr, version: &CStr) -> Result<usize, GotError> {
    let handle = libc_handle(name)?;
    // SAFETY: valid handle and C strings.
    let addr = unsafe {
        libc::dlerror();
        libc::dlvsym(handle, name.as_ptr(), version.as_ptr())
    };
    check_resolved(name, addr)
}

/// Converts a symbol name for [`resolve_libc`].
pub fn c_name(name: &str) -> Result<CString, GotError> {
    CString::new(name).map_err(|_| GotError::InvalidRequest {
        symbol: name.to_owned(),
        reason: "symbol name contains NUL".into(),
    })
}

/// Whether this process's global symbol scope defines `name` (e.g.
/// PostgreSQL's `SubPostmasterMain`, which only EXEC_BACKEND builds have).
pub fn process_defines_symbol(name: &CStr) -> bool {
    // SAFETY: dlsym on the global namespace with a NUL-terminated name.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }.is_null()
}

/// Path of the shared object that contains `addr` (e.g. the loaded library
/// file, for attestation), via `dladdr`.
pub fn object_path_of(addr: usize) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads its address argument and fills `info`.
    let rc = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) };
    if rc == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded and filled the struct.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(
        name.to_bytes(),
    )))
}
