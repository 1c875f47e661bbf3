//! The opt-in `wal` class in the postmaster: the role guard and the
//! refusals, the WAL key, the start-up pass over pg_wal; and
//! `pg_ephcrypt_wal_status()`. docs/DECISIONS.md ("Ephemeral WAL") gives
//! the reasons, docs/OPERATIONS.md the operator's view.
//!
//! At postmaster start (from `_PG_init`, before any child, so before
//! recovery):
//! 1. the role: a standby (`standby.signal` in the data directory) or a
//!    primary;
//! 2. with the class on, the refusals (FATAL with a hint; WARNING and the
//!    class off under `pg_ephcrypt.on_unsupported = warn`): a primary
//!    without `pg_ephcrypt.wal_durability = external`; a non-empty
//!    `archive_command` (a shell would archive ciphertext); O_DIRECT on WAL
//!    (15: `wal_level = minimal` with an `open_*sync` method; 16+:
//!    `debug_io_direct` naming WAL);
//! 3. the WAL key (a protected page for the postmaster's whole life);
//! 4. the start-up pass, class on or off: WAL sealed by an ended postmaster
//!    is removed on a standby (it streams it again) and refuses a primary
//!    (FATAL, nothing deleted); with the class on, plaintext segments (a
//!    base backup's) are sealed under the new key.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

use ephcrypt_attest::to_hex;
use ephcrypt_classify::ArtifactClass;
use ephcrypt_interpose::secmem::AllocMode;
use ephcrypt_interpose::shim::wal::{startup_pass, StartupPolicy};
use ephcrypt_interpose::walkey;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use serde_json::{json, Value};

use crate::errors::EphError;
use crate::gucs::{self, OnUnsupported, WalDurability};
use crate::server::setting;

/// The server's role at postmaster start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `standby.signal` present: WAL comes from a primary.
    Standby,
    /// Anything else (including archive recovery, which ends as a primary).
    Primary,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Standby => "standby",
            Role::Primary => "primary",
        }
    }
}

/// Role at start: 0 = not determined (not preloaded), 1 standby, 2 primary.
static ROLE: AtomicU8 = AtomicU8::new(0);
/// Files the start-up pass removed / sealed (set in the postmaster,
/// inherited by every child).
static REMOVED: AtomicU64 = AtomicU64::new(0);
static CONVERTED: AtomicU64 = AtomicU64::new(0);
/// Why the class was turned off under `on_unsupported = warn`.
static REFUSED: OnceLock<String> = OnceLock::new();

/// The settings the refusals depend on (read at postmaster start).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub standby: bool,
    pub durability_external: bool,
    pub archive_command: String,
    pub wal_level: String,
    pub wal_sync_method: String,
    pub fsync: bool,
    /// `debug_io_direct` (16+; `None` where the server has no such setting).
    pub debug_io_direct: Option<String>,
}

impl Settings {
    fn current(standby: bool) -> Settings {
        Settings {
            standby,
            durability_external: gucs::wal_durability() == WalDurability::External,
            archive_command: setting(c"archive_command").unwrap_or_default(),
            wal_level: setting(c"wal_level").unwrap_or_default(),
            wal_sync_method: setting(c"wal_sync_method").unwrap_or_default(),
            fsync: setting(c"fsync").is_none_or(|v| v == "on"),
            debug_io_direct: setting(c"debug_io_direct"),
        }
    }
}

/// The refusal that applies to the `wal` class under `s`, if any.
pub fn refusal(s: &Settings) -> Option<EphError> {
    if !s.standby && !s.durability_external {
        return Some(EphError::WalUnsupported {
            code: PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            message: "this server is a primary (no standby.signal) and \
                      pg_ephcrypt.wal_durability is local: its WAL must survive a restart"
                .into(),
            hint: "Seal WAL only where durability lives elsewhere: on a standby, or on a primary \
                   with a synchronous standby or WAL receiver, where you set \
                   pg_ephcrypt.wal_durability = 'external'. Otherwise remove wal from \
                   pg_ephcrypt.classes.",
        });
    }
    if !s.archive_command.trim().is_empty() {
        return Some(EphError::WalUnsupported {
            code: PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            message: "archive_command is set: a shell command would archive ciphertext that \
                      nothing can read once this postmaster ends"
                .into(),
            hint: "Archive with an archive_library module that reads WAL through PostgreSQL's \
                   file functions (basic_archive receives plaintext), stream to pg_receivewal, \
                   or remove wal from pg_ephcrypt.classes.",
        });
    }
    let o_direct_15 = s.fsync
        && s.wal_level.eq_ignore_ascii_case("minimal")
        && matches!(
            s.wal_sync_method.to_ascii_lowercase().as_str(),
            "open_sync" | "open_datasync"
        );
    let o_direct_16 = s.debug_io_direct.as_deref().is_some_and(|v| {
        v.split(',')
            .map(|i| i.trim().to_ascii_lowercase())
            .any(|i| i == "wal" || i == "wal_init")
    });
    if o_direct_15 || o_direct_16 {
        return Some(EphError::WalUnsupported {
            code: PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            message: if o_direct_16 {
                "debug_io_direct opens WAL with O_DIRECT".into()
            } else {
                "wal_level = minimal with an open_*sync wal_sync_method opens WAL with O_DIRECT"
                    .into()
            },
            hint: "Sealed WAL is read and written in its own layout through the page cache. Use \
                   wal_sync_method = fdatasync (or wal_level = replica), remove wal from \
                   debug_io_direct, or remove wal from pg_ephcrypt.classes.",
        });
    }
    None
}

fn data_dir() -> PathBuf {
    crate::scan::data_dir()
}

/// The role recorded at postmaster start (`None`: not preloaded).
pub fn role() -> Option<Role> {
    match ROLE.load(Ordering::Relaxed) {
        1 => Some(Role::Standby),
        2 => Some(Role::Primary),
        _ => None,
    }
}

/// Whether the class is sealing WAL in this server.
pub fn enabled() -> bool {
    ephcrypt_interpose::shim::enabled_classes().contains(&ArtifactClass::Wal)
}

unsafe extern "C-unwind" fn wipe_at_postmaster_exit(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: reading a PostgreSQL global of this process.
    if unsafe { pg_sys::IsUnderPostmaster } {
        return; // only the postmaster (or a standalone backend) wipes it
    }
    walkey::wipe();
}

/// The class turned off under `warn` (the caller's `classes` lose `wal`),
/// or FATAL under `refuse`.
fn refuse(classes: &mut Vec<ArtifactClass>, error: EphError) {
    match gucs::on_unsupported() {
        OnUnsupported::Refuse => error.report(PgLogLevel::FATAL),
        OnUnsupported::Warn => {
            classes.retain(|c| *c != ArtifactClass::Wal);
            let _ = REFUSED.set(error.to_string());
            ephcrypt_interpose::stats::count_refused_configuration();
            error.report(PgLogLevel::WARNING);
        }
    }
}

/// Postmaster start, from the interposition install (before the shims are
/// patched and before any child exists). Returns `classes`, without `wal`
/// if the class was refused under `warn`.
pub fn prepare_at_start(mut classes: Vec<ArtifactClass>) -> Vec<ArtifactClass> {
    let dir = data_dir();
    let role = if dir.join("standby.signal").exists() {
        Role::Standby
    } else {
        Role::Primary
    };
    ROLE.store(if role == Role::Standby { 1 } else { 2 }, Ordering::Relaxed);
    if classes.contains(&ArtifactClass::Wal) {
        if let Some(error) = refusal(&Settings::current(role == Role::Standby)) {
            refuse(&mut classes, error);
        }
    }
    let wal_on = classes.contains(&ArtifactClass::Wal);
    if wal_on {
        match walkey::start(AllocMode::Auto, crate::time::now_unix_us()) {
            Ok(page) => {
                // SAFETY: registering a plain C callback in the postmaster's
                // single thread; children forget it (on_exit_reset).
                unsafe {
                    pg_sys::on_proc_exit(Some(wipe_at_postmaster_exit), pg_sys::Datum::from(0usize))
                };
                pgrx::log!(
                    "pg_ephcrypt: WAL key {} created for this postmaster's life (memory \
                     protection: {}, fingerprint {}); role {}",
                    to_hex(&page.epoch_id()),
                    page.protection().name(),
                    to_hex(&crate::epoch::fingerprint_of(page).unwrap_or_default()),
                    role.name()
                );
            }
            Err(e) => refuse(&mut classes, EphError::KeyMemory(e.to_string())),
        }
    }
    let wal_on = classes.contains(&ArtifactClass::Wal);
    if wal_on {
        // An archive_command set by a later reload: refused when the
        // archiver runs it (the start-up check above cannot see it).
        ephcrypt_interpose::shim::set_system_guard(refuse_in_archiver);
    }
    let policy = StartupPolicy {
        remove_ended: role == Role::Standby,
        seal_plaintext: wal_on,
    };
    let report = match startup_pass(&dir, policy) {
        Ok(r) => r,
        Err(e) => {
            let error = EphError::WalStartup(e.to_string());
            if wal_on {
                refuse(&mut classes, error);
            } else {
                error.report(PgLogLevel::WARNING);
            }
            return classes;
        }
    };
    if let Some(first) = report.ended.first() {
        // Whatever on_unsupported says: this primary cannot recover.
        EphError::WalEnded {
            count: report.ended.len(),
            first: first.clone(),
        }
        .report(PgLogLevel::FATAL);
        return classes;
    }
    if !report.removed.is_empty() {
        pgrx::log!(
            "pg_ephcrypt: removed {} WAL segment(s) sealed by an ended postmaster ({} to {}) and \
             {} archive status file(s); this standby streams them again from its primary",
            report.removed.len(),
            report.removed[0],
            report.removed[report.removed.len() - 1],
            report.status_removed
        );
    }
    if !report.converted.is_empty() {
        pgrx::log!(
            "pg_ephcrypt: sealed {} plaintext WAL segment(s) under the WAL key",
            report.converted.len()
        );
    }
    REMOVED.store(report.removed.len() as u64, Ordering::Relaxed);
    CONVERTED.store(report.converted.len() as u64, Ordering::Relaxed);
    classes
}

/// The `system()` guard while pg_wal is sealed: in the archiver every
/// command PostgreSQL runs through the executable's `system()` (that is,
/// `archive_command`; an archive module's own calls are not seen) is
/// refused with a WARNING, since its shell would read sealed segments by
/// name; elsewhere (`restore_command`, `archive_cleanup_command`,
/// `recovery_end_command`) commands run.
fn refuse_in_archiver(_command: &std::ffi::CStr) -> bool {
    // SAFETY: reading a PostgreSQL global of this process.
    let archiver = unsafe { pg_sys::MyBackendType } == pg_sys::BackendType::B_ARCHIVER;
    if archiver {
        ephcrypt_interpose::stats::count_refused_configuration();
        EphError::ArchiveCommandRefused.report(PgLogLevel::WARNING);
    }
    archiver
}

/// `synchronous_standby_names` is set (now: it can be reloaded).
fn synchronous_names() -> String {
    setting(c"synchronous_standby_names").unwrap_or_default()
}

/// How WAL leaves this server for an archive.
fn archive() -> String {
    let mode = setting(c"archive_mode").unwrap_or_default();
    if mode == "off" || mode.is_empty() {
        return "off".into();
    }
    let library = setting(c"archive_library").unwrap_or_default();
    if !library.is_empty() {
        return format!("{mode}: archive_library {library}");
    }
    let command = setting(c"archive_command").unwrap_or_default();
    if !command.is_empty() {
        return format!("{mode}: archive_command");
    }
    format!("{mode}: nothing configured")
}

/// The WAL key's public fields: (epoch id, fingerprint, created at µs,
/// protection), if this postmaster has a live WAL key.
fn key_state() -> Option<(String, String, i64, &'static str)> {
    let page = walkey::page()?;
    let fp = crate::epoch::fingerprint_of(page)?;
    Some((
        to_hex(&page.epoch_id()),
        to_hex(&fp),
        page.created_at_us(),
        page.protection().name(),
    ))
}

/// The `wal` object of an attestation document.
pub fn attestation_json() -> Value {
    let key = key_state();
    let sync = synchronous_names();
    json!({
        "enabled": enabled(),
        "role": role().map(Role::name),
        "durability": gucs::wal_durability().name(),
        "synchronous_replication": !sync.trim().is_empty(),
        "key_epoch_id": key.as_ref().map(|k| k.0.clone()),
        "key_fingerprint": key.as_ref().map(|k| k.1.clone()),
    })
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_wal_status() -> TableIterator<
    'static,
    (
        name!(enabled, bool),
        name!(role, Option<&'static str>),
        name!(in_recovery, bool),
        name!(wal_durability, &'static str),
        name!(synchronous_replication, bool),
        name!(synchronous_standby_names, String),
        name!(archive, String),
        name!(key_epoch_id, Option<String>),
        name!(key_fingerprint, Option<String>),
        name!(key_created_at, Option<TimestampWithTimeZone>),
        name!(memory_protection, Option<&'static str>),
        name!(removed_at_start, i64),
        name!(sealed_at_start, i64),
        name!(refused, Option<String>),
    ),
> {
    crate::epoch::require_preloaded();
    let key = key_state();
    let sync = synchronous_names();
    // SAFETY: a plain PostgreSQL function of this backend.
    let in_recovery = unsafe { pg_sys::RecoveryInProgress() };
    TableIterator::once((
        enabled(),
        role().map(Role::name),
        in_recovery,
        gucs::wal_durability().name(),
        !sync.trim().is_empty(),
        sync,
        archive(),
        key.as_ref().map(|k| k.0.clone()),
        key.as_ref().map(|k| k.1.clone()),
        key.as_ref()
            .and_then(|k| crate::time::timestamptz_from_unix_us(k.2)),
        key.as_ref().map(|k| k.3),
        i64::try_from(REMOVED.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        i64::try_from(CONVERTED.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        REFUSED.get().cloned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby() -> Settings {
        Settings {
            standby: true,
            wal_level: "replica".into(),
            wal_sync_method: "fdatasync".into(),
            fsync: true,
            ..Default::default()
        }
    }

    fn refused(s: &Settings) -> Option<String> {
        refusal(s).map(|e| e.to_string())
    }

    #[test]
    fn refusals_follow_the_issue() {
        assert_eq!(refused(&standby()), None, "a plain standby");
        let primary = Settings {
            standby: false,
            ..standby()
        };
        assert!(refused(&primary).unwrap().contains("primary"));
        let external = Settings {
            durability_external: true,
            ..primary.clone()
        };
        assert_eq!(
            refused(&external),
            None,
            "a primary with external durability"
        );
        let archiving = Settings {
            archive_command: "cp %p /archive/%f".into(),
            ..standby()
        };
        assert!(refused(&archiving).unwrap().contains("archive_command"));
        assert_eq!(
            refused(&Settings {
                archive_command: "  ".into(),
                ..standby()
            }),
            None
        );
        // 15: O_DIRECT only with wal_level = minimal, an open_*sync method
        // and fsync on (get_sync_bit()).
        let minimal = Settings {
            wal_level: "minimal".into(),
            wal_sync_method: "open_datasync".into(),
            ..external.clone()
        };
        assert!(refused(&minimal).unwrap().contains("O_DIRECT"));
        assert_eq!(
            refused(&Settings {
                fsync: false,
                ..minimal.clone()
            }),
            None
        );
        assert_eq!(
            refused(&Settings {
                wal_sync_method: "fdatasync".into(),
                ..minimal.clone()
            }),
            None
        );
        // 16+: debug_io_direct.
        for v in ["wal", "data, WAL", "wal_init"] {
            let s = Settings {
                debug_io_direct: Some(v.into()),
                ..standby()
            };
            assert!(refused(&s).unwrap().contains("debug_io_direct"), "{v}");
        }
        assert_eq!(
            refused(&Settings {
                debug_io_direct: Some("".into()),
                ..standby()
            }),
            None
        );
    }
}
