//! The one place where pg_ephcrypt's errors become PostgreSQL errors.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Every error the SQL surface can raise.
#[derive(Debug, thiserror::Error)]
pub enum EphError {
    #[error("pg_ephcrypt must be loaded via shared_preload_libraries")]
    NotPreloaded,
    #[error("pg_ephcrypt has no live key epoch in this server")]
    NoLiveEpoch,
    #[error("pg_ephcrypt cannot protect the epoch key: {0}")]
    KeyMemory(String),
    #[error("pg_ephcrypt cannot interpose file I/O: {0}")]
    Interpose(String),
    #[error("pg_ephcrypt does not support this server: {0}")]
    UnsupportedServer(&'static str),
    #[error("pg_ephcrypt cannot seal I/O submitted with io_method = io_uring")]
    IoUring,
    #[error("invalid value for pg_ephcrypt.classes: {0}")]
    BadClasses(String),
    #[error("{message}")]
    BadArgument {
        code: PgSqlErrorCode,
        message: String,
        hint: &'static str,
    },
    #[error("could not sign the attestation: {0}")]
    Attestation(String),
    /// The `wal` class cannot hold in this configuration.
    #[error("pg_ephcrypt cannot seal WAL here: {message}")]
    WalUnsupported {
        code: PgSqlErrorCode,
        message: String,
        hint: &'static str,
    },
    /// A primary whose pg_wal holds WAL sealed by an ended postmaster.
    #[error(
        "pg_wal holds {count} WAL file(s) sealed by a postmaster that has ended (first: {first}); \
         their key is gone, so this primary cannot recover from them"
    )]
    WalEnded { count: usize, first: String },
    /// The start-up pass over pg_wal failed.
    #[error("pg_ephcrypt could not prepare pg_wal: {0}")]
    WalStartup(String),
    #[error("pg_ephcrypt cannot keep shared memory out of core dumps: {0}")]
    MemoryDontDump(String),
    #[error("pg_ephcrypt cannot lock the main shared memory segment in RAM: {0}")]
    MemoryLock(String),
    #[error("pg_ephcrypt cannot disable core dumps: {0}")]
    CoreDumps(String),
    #[error("pg_ephcrypt cannot use the attestation anchor key file \"{path}\": {reason}")]
    AnchorKey { path: String, reason: String },
    #[error("pg_ephcrypt cannot protect the attestation instance key: {0}")]
    AnchorMemory(String),
    #[error("pg_ephcrypt cannot certify the new key epoch: {0}")]
    AnchorEpoch(String),
    /// A warning at start, not a refusal.
    #[error(
        "remove_temp_files_after_crash is off: after a crash-restart the sealed temporary files \
         and relations of the ended epoch stay on disk, and nothing can read them"
    )]
    StaleTempFilesKept,
    #[error(
        "pg_ephcrypt did not run the archive command: pg_wal is sealed (the wal class), so a shell \
         would archive ciphertext that nothing can read once this postmaster ends"
    )]
    ArchiveCommandRefused,
}

impl EphError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            EphError::NotPreloaded | EphError::NoLiveEpoch => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            EphError::KeyMemory(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            EphError::Interpose(_) | EphError::UnsupportedServer(_) | EphError::IoUring => {
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED
            }
            EphError::BadClasses(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            EphError::BadArgument { code, .. } => *code,
            EphError::WalUnsupported { code, .. } => *code,
            EphError::WalEnded { .. } => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            EphError::WalStartup(_) => PgSqlErrorCode::ERRCODE_IO_ERROR,
            EphError::MemoryDontDump(_) | EphError::CoreDumps(_) => {
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED
            }
            EphError::MemoryLock(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            EphError::Attestation(_) | EphError::AnchorEpoch(_) => {
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
            }
            EphError::AnchorKey { .. } => PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
            EphError::AnchorMemory(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            EphError::StaleTempFilesKept => PgSqlErrorCode::ERRCODE_WARNING,
            EphError::ArchiveCommandRefused => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            EphError::NotPreloaded => {
                "Add pg_ephcrypt to shared_preload_libraries in postgresql.conf and restart the server."
            }
            EphError::NoLiveEpoch => "Restart the server; check its log for pg_ephcrypt messages.",
            EphError::KeyMemory(_) => {
                "Allow memfd_secret(2) or raise the memlock limit (ulimit -l) of the postgres user; \
                 or set pg_ephcrypt.on_unsupported = warn to start without this protection."
            }
            EphError::Interpose(_) | EphError::UnsupportedServer(_) => {
                "Transient files would be written in plaintext. Use a supported PostgreSQL build \
                 (non-EXEC_BACKEND, Linux x86_64/aarch64), or set pg_ephcrypt.on_unsupported = warn \
                 to start without encryption."
            }
            EphError::IoUring => {
                "io_uring hands reads and writes to the kernel without a libc call pg_ephcrypt could \
                 seal: set io_method = worker (the default) or sync, or set \
                 pg_ephcrypt.on_unsupported = warn to start without encryption."
            }
            EphError::BadClasses(_) => {
                "Use a comma-separated list of temp_files, temp_relations, logical_spill, wal, or none."
            }
            EphError::BadArgument { hint, .. } => hint,
            EphError::Attestation(_) => "Check the server log; the key epoch may have been wiped.",
            EphError::WalUnsupported { hint, .. } => hint,
            EphError::WalEnded { .. } => {
                "WAL sealed by pg_ephcrypt is readable only by the postmaster that wrote it. Rebuild \
                 this server from a base backup of its synchronous standby, or promote that standby \
                 and point clients at it. Do not remove the files to make this server start: the \
                 data they hold would be lost."
            }
            EphError::WalStartup(_) => {
                "Check the permissions and free space of pg_wal; the server log names the file."
            }
            EphError::MemoryDontDump(_) => {
                "Use dynamic_shared_memory_type = posix or mmap and a server whose postgres executable \
                 imports mmap and shm_open; or set pg_ephcrypt.memory_hygiene = off, or \
                 pg_ephcrypt.on_unsupported = warn to start without this protection."
            }
            EphError::MemoryLock(_) => {
                "Raise the memlock limit of the postgres user to at least the size shown \
                 (ulimit -l, LimitMEMLOCK= in the systemd unit, or /etc/security/limits.conf), \
                 or grant CAP_IPC_LOCK; or set pg_ephcrypt.memory_hygiene = dontdump, or \
                 pg_ephcrypt.on_unsupported = warn to start without the lock."
            }
            EphError::CoreDumps(_) => {
                "Set pg_ephcrypt.core_dumps = on, or pg_ephcrypt.on_unsupported = warn to start \
                 with core dumps allowed."
            }
            EphError::AnchorKey { .. } => {
                "pg_ephcrypt.attestation_anchor_key_file must name an unencrypted Ed25519 private key in \
                 PKCS#8 PEM (openssl genpkey -algorithm ed25519), owned by the server user with mode 0600 \
                 (or by root with mode 0640); or set it to '' to run with unanchored attestations."
            }
            EphError::AnchorMemory(_) => {
                "Raise the memlock limit (ulimit -l) of the postgres user by one page, or set \
                 pg_ephcrypt.attestation_anchor_key_file to '' to run with unanchored attestations."
            }
            EphError::AnchorEpoch(_) => "Check the server log; restart the server.",
            EphError::StaleTempFilesKept => {
                "Their key died with the epoch, so they are no use for debugging, and statements that \
                 copy a database directory (CREATE DATABASE ... STRATEGY FILE_COPY, ALTER DATABASE \
                 ... SET TABLESPACE) fail with an I/O error on them until a clean restart removes \
                 them. Set remove_temp_files_after_crash = on (the default)."
            }
            EphError::ArchiveCommandRefused => {
                "Set archive_command = '' and archive with an archive_library module that reads WAL \
                 through PostgreSQL's file functions (basic_archive receives plaintext), or stream \
                 to pg_receivewal. The segments stay in pg_wal until archived."
            }
        }
    }

    /// Raise at `level` (ERROR unwinds to PostgreSQL; FATAL ends the process).
    pub fn report(self, level: PgLogLevel) {
        ErrorReport::new(self.code(), self.to_string(), "pg_ephcrypt")
            .set_hint(self.hint())
            .report(level);
    }

    /// Raise as ERROR; never returns.
    pub fn raise(self) -> ! {
        self.report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) does not return")
    }
}
