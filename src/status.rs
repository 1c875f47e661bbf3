//! `pg_ephcrypt_status()`: the key status of this server. Thin adapter.

use pgrx::prelude::*;

use crate::epoch::{self, hex, protection_name};
use crate::errors::EphError;

/// PostgreSQL's timestamps count from 2000-01-01.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_status() -> TableIterator<
    'static,
    (
        name!(epoch_id, String),
        name!(created_at, TimestampWithTimeZone),
        name!(algorithm, &'static str),
        name!(fingerprint, String),
        name!(memory_protection, &'static str),
        name!(postmaster_pid, i32),
        name!(restarts, i64),
        name!(on_unsupported, &'static str),
        name!(interposed_symbols, Vec<String>),
        name!(classes, Vec<String>),
    ),
> {
    epoch::require_preloaded();
    let state = epoch::public_state();
    if state.generation.is_multiple_of(2) {
        EphError::NoLiveEpoch.raise();
    }
    let created_at = TimestampWithTimeZone::try_from(state.created_at_us - PG_EPOCH_OFFSET_US)
        .unwrap_or_else(|_| EphError::NoLiveEpoch.raise());
    // SAFETY: reading a PostgreSQL global of this backend.
    let postmaster_pid = unsafe { pg_sys::PostmasterPid };
    TableIterator::once((
        hex(&state.epoch_id),
        created_at,
        "AES-256-GCM",
        hex(&state.fingerprint),
        protection_name(state.protection),
        postmaster_pid,
        i64::from(state.restarts),
        crate::gucs::on_unsupported().name(),
        crate::interpose::interposed_symbols(),
        crate::interpose::covered_classes(),
    ))
}

/// Run at the end of CREATE EXTENSION: refuse to install when the library
/// was not preloaded (ERROR 55000 with a hint).
#[pg_extern(volatile)]
fn pg_ephcrypt_assert_preloaded() -> bool {
    epoch::require_preloaded();
    true
}

pgrx::extension_sql!(
    r#"
SELECT pg_ephcrypt_assert_preloaded();
REVOKE ALL ON FUNCTION pg_ephcrypt_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_status() TO pg_monitor;
REVOKE ALL ON FUNCTION pg_ephcrypt_assert_preloaded() FROM PUBLIC;
"#,
    name = "finalize_checks",
    finalize
);
