//! Installs the libc interposition in the postmaster (before any fork).

use std::ffi::CStr;
use std::sync::OnceLock;

use ephcrypt_classify::ArtifactClass;
use ephcrypt_interpose::shim::{self, Config};
use pgrx::prelude::*;
use pgrx::PgLogLevel;

use crate::errors::EphError;
use crate::gucs::{self, OnUnsupported};

/// Names of the GOT symbols patched in this server (set in the postmaster,
/// inherited by children).
static INTERPOSED: OnceLock<Vec<String>> = OnceLock::new();

/// The interposed symbol names (empty when interposition is off).
pub fn interposed_symbols() -> Vec<String> {
    INTERPOSED.get().cloned().unwrap_or_default()
}

/// Names of the classes that are encrypted.
pub fn covered_classes() -> Vec<String> {
    shim::enabled_classes()
        .iter()
        .map(|c| c.name().to_string())
        .collect()
}

/// A `pg_ephcrypt.classes` value as a list (also its GUC check hook).
pub(crate) fn parse_classes(raw: &str) -> Result<Vec<ArtifactClass>, EphError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    ArtifactClass::parse_list(trimmed).map_err(|e| EphError::BadClasses(e.to_string()))
}

/// Refuse (FATAL) or warn, per `pg_ephcrypt.on_unsupported`. Returns
/// normally only under `warn`, with every class off and nothing patched.
fn unsupported(error: EphError) {
    match gucs::on_unsupported() {
        OnUnsupported::Refuse => error.report(PgLogLevel::FATAL),
        OnUnsupported::Warn => {
            shim::set_enabled_classes(&[]);
            ephcrypt_interpose::stats::count_refused_configuration();
            error.report(PgLogLevel::WARNING);
        }
    }
}

/// Patch the executable's GOT so that every covered file is sealed.
pub fn install_in_postmaster() {
    if let Err(e) = ephcrypt_interpose::stats::init_shared() {
        unsupported(EphError::Interpose(e.to_string()));
        return;
    }
    let classes = match parse_classes(&gucs::classes()) {
        Ok(c) => c,
        Err(e) => {
            e.report(PgLogLevel::FATAL);
            return;
        }
    };
    // EXEC_BACKEND builds re-exec their children: a patched GOT and the key
    // page would not be inherited.
    if ephcrypt_got::process_defines_symbol(c"SubPostmasterMain") {
        unsupported(EphError::UnsupportedServer("EXEC_BACKEND build"));
        return;
    }
    // PostgreSQL 18's io_uring submits reads and writes without any libc
    // call we could interpose (the import audit refuses liburing then too).
    let io_uring_in_use = crate::server::setting(c"io_method").is_some_and(|m| m == "io_uring");
    if io_uring_in_use {
        unsupported(EphError::IoUring);
        return;
    }
    // SAFETY: DataDir is an absolute path set before shared_preload_libraries load.
    let data_dir = unsafe { CStr::from_ptr(pg_sys::DataDir) }
        .to_bytes()
        .to_vec();
    let data_dir = trim_trailing_slashes(data_dir);
    // The wal class's guards, its key and the start-up pass over pg_wal
    // (before any child, so before recovery): src/wal.rs.
    let classes = crate::wal::prepare_at_start(classes);
    shim::set_enabled_classes(&classes);
    let keeps_stale =
        crate::server::setting(c"remove_temp_files_after_crash").is_some_and(|v| v == "off");
    if keeps_stale
        && classes
            .iter()
            .any(|c| matches!(c, ArtifactClass::TempFiles | ArtifactClass::TempRelations))
    {
        EphError::StaleTempFilesKept.report(PgLogLevel::WARNING);
    }
    match shim::install(Config {
        data_dir,
        io_uring_in_use,
        allow_extra: Vec::new(),
    }) {
        Ok(report) => {
            let names: Vec<String> = report
                .patch
                .patched
                .iter()
                .map(|p| p.name.clone())
                .collect();
            pgrx::log!(
                "pg_ephcrypt: interposed {} ({} GOT slots); classes: {}",
                names.join(", "),
                report.patch.slot_count(),
                covered_classes().join(", ")
            );
            let _ = INTERPOSED.set(names);
        }
        Err(e) => unsupported(EphError::Interpose(e.to_string())),
    }
}

fn trim_trailing_slashes(mut p: Vec<u8>) -> Vec<u8> {
    while p.len() > 1 && p.last() == Some(&b'/') {
        p.pop();
    }
    p
}
