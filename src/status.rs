//! `pg_ephcrypt_status()`: the key status of this server. Thin adapter.

use pgrx::prelude::*;

use ephcrypt_attest::to_hex;

use crate::epoch::{self, protection_name};
use crate::errors::EphError;
use crate::time::timestamptz_from_unix_us;

/// When the current epoch began (`None` without a live epoch).
pub fn epoch_created_at() -> Option<TimestampWithTimeZone> {
    let state = epoch::public_state();
    if state.generation % 2 == 1 {
        timestamptz_from_unix_us(state.created_at_us)
    } else {
        None
    }
}

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
        name!(interposed_symbols, Vec<String>),
        name!(classes, Vec<String>),
        name!(on_unsupported, &'static str),
        name!(postmaster_pid, i32),
        name!(attestation_public_key, Vec<u8>),
        name!(version, &'static str),
        name!(restarts, i64),
        name!(refused_configurations, i64),
        name!(server_version, String),
        name!(server_version_num, i32),
        name!(memory_hygiene, &'static str),
        name!(dsm_dontdump, bool),
        name!(core_dumps, &'static str),
    ),
> {
    epoch::require_preloaded();
    let state = epoch::public_state();
    if state.generation.is_multiple_of(2) {
        EphError::NoLiveEpoch.raise();
    }
    let created_at = timestamptz_from_unix_us(state.created_at_us)
        .unwrap_or_else(|| EphError::NoLiveEpoch.raise());
    // SAFETY: reading a PostgreSQL global of this backend.
    let postmaster_pid = unsafe { pg_sys::PostmasterPid };
    let memory = crate::memory::readback();
    TableIterator::once((
        to_hex(&state.epoch_id),
        created_at,
        "AES-256-GCM",
        to_hex(&state.fingerprint),
        protection_name(state.protection),
        crate::interpose::interposed_symbols(),
        crate::interpose::covered_classes(),
        crate::gucs::on_unsupported().name(),
        postmaster_pid,
        crate::attest::public_key().to_vec(),
        env!("CARGO_PKG_VERSION"),
        i64::from(state.restarts),
        i64::try_from(ephcrypt_interpose::stats::refused_configurations()).unwrap_or(i64::MAX),
        crate::server::version(),
        crate::server::version_num(),
        memory.hygiene,
        memory.dsm_dontdump,
        memory.core_dumps,
    ))
}

/// Run at the end of CREATE EXTENSION: refuse to install when the library
/// was not preloaded (ERROR 55000 with a hint).
#[pg_extern(volatile)]
fn pg_ephcrypt_assert_preloaded() -> bool {
    epoch::require_preloaded();
    true
}
