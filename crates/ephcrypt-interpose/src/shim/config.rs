//! What the shims need to know: the data directory and which classes are
//! sealed. Set once in the postmaster before any child exists.

use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use ephcrypt_classify::{classify_named, ArtifactClass, Classified};

/// Absolute data directory, no trailing slash.
static DATA_DIR: OnceLock<Vec<u8>> = OnceLock::new();

/// Bit set of enabled artifact classes ([`ArtifactClass::bit`]).
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Remember the data directory (first call wins).
pub(crate) fn set_data_dir(dir: Vec<u8>) -> bool {
    DATA_DIR.set(dir).is_ok()
}

/// Enable exactly these classes (the others pass through untouched).
pub fn set_enabled_classes(classes: &[ArtifactClass]) {
    let bits = classes.iter().fold(0u8, |acc, c| acc | c.bit());
    ENABLED.store(bits, Ordering::Relaxed);
}

/// The enabled classes.
pub fn enabled_classes() -> Vec<ArtifactClass> {
    let bits = ENABLED.load(Ordering::Relaxed);
    ArtifactClass::ALL
        .iter()
        .copied()
        .filter(|c| bits & c.bit() != 0)
        .collect()
}

/// Whether `class` is enabled (one relaxed load).
#[inline]
pub(crate) fn class_enabled(class: ArtifactClass) -> bool {
    ENABLED.load(Ordering::Relaxed) & class.bit() != 0
}

/// Whether any class is enabled (one relaxed load).
#[inline]
pub(crate) fn any_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed) != 0
}

/// The class and canonical name of `path` if it is covered and enabled.
#[inline]
pub(crate) fn covered_bytes(path: &[u8]) -> Option<Classified<'_>> {
    let bits = ENABLED.load(Ordering::Relaxed);
    if bits == 0 {
        return None;
    }
    let data_dir = DATA_DIR.get()?;
    let c = classify_named(path, data_dir)?;
    (bits & c.class.bit() != 0).then_some(c)
}

/// [`covered_bytes`] for a C path (null: not covered).
///
/// # Safety
/// `path` is null or a NUL-terminated string that outlives `'a`.
#[inline]
pub(crate) unsafe fn covered<'a>(path: *const c_char) -> Option<Classified<'a>> {
    if path.is_null() || !any_enabled() {
        return None;
    }
    // SAFETY: per the contract.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    covered_bytes(bytes)
}
