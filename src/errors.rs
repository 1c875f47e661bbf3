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
}

impl EphError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            EphError::NotPreloaded | EphError::NoLiveEpoch => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            EphError::KeyMemory(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
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
