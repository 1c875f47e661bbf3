//! `pg_ephcrypt_attest(challenge)` and `pg_ephcrypt_verify_attestation(...)`.
//!
//! The document is signed with an Ed25519 key derived from the epoch key
//! (HKDF under its own label), so it proves possession of the live epoch
//! key without revealing it; the public key is in `pg_ephcrypt_status()`.

use std::collections::BTreeMap;

use ephcrypt_attest::{to_hex, verify_with_epoch, AttestError, SigningKey};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::epoch::{self, protection_name};
use crate::errors::EphError;
use crate::scan;
use crate::time::{iso_json as iso, now_unix_us, unix_us_from_pg};

/// HKDF label of the attestation signing seed.
const SIGNING_LABEL: &str = "pg_ephcrypt v1 attestation ed25519";
/// Version of the document layout.
const DOCUMENT_VERSION: i64 = 1;
/// Challenge length bounds (bytes): enough for freshness, small enough to
/// keep documents small.
pub const CHALLENGE_MIN: usize = 8;
pub const CHALLENGE_MAX: usize = 1024;

fn signing_key() -> Option<SigningKey> {
    let seed = epoch::key_page()?.epoch_key()?.derive(SIGNING_LABEL).ok()?;
    SigningKey::from_seed(*seed.expose_secret()).ok()
}

/// The raw 32-byte public key of this epoch (empty without a live key).
pub fn public_key() -> Vec<u8> {
    signing_key()
        .map(|k| k.public_key().to_vec())
        .unwrap_or_default()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Path and SHA-256 of the library file, computed once in the postmaster
/// when the library was loaded (and inherited by every child), so that a
/// later reinstall on disk cannot make the document describe a file other
/// than the code that is running.
static LIBRARY: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// Hash the loaded library file. Called from `_PG_init` in the postmaster.
pub fn record_loaded_library() {
    let Some(path) = ephcrypt_got::object_path_of(public_key as *const () as usize) else {
        return;
    };
    let digest = ephcrypt_attest::sha256_file_hex(&path).unwrap_or_default();
    let _ = LIBRARY.set((path.display().to_string(), digest));
}

fn library_sha256() -> (String, String) {
    LIBRARY.get().cloned().unwrap_or_default()
}

/// Check a challenge argument; ERROR with SQLSTATE and hint when unusable.
fn check_challenge(challenge: Option<&[u8]>) -> &[u8] {
    let Some(c) = challenge else {
        EphError::BadArgument {
            code: pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            message: "challenge must not be NULL".into(),
            hint: "Pass fresh random bytes, e.g. pg_ephcrypt_attest(gen_random_bytes(32)) or decode(md5(random()::text), 'hex').",
        }
        .raise()
    };
    if c.len() < CHALLENGE_MIN || c.len() > CHALLENGE_MAX {
        EphError::BadArgument {
            code: pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message: format!(
                "challenge must be between {CHALLENGE_MIN} and {CHALLENGE_MAX} bytes, got {}",
                c.len()
            ),
            hint: "Use 16 to 64 fresh random bytes chosen by the verifier.",
        }
        .raise()
    }
    c
}

/// Build (unsigned) and sign the attestation document.
fn attest(challenge: &[u8]) -> Value {
    let state = epoch::public_state();
    let Some(signer) = signing_key() else {
        EphError::NoLiveEpoch.raise()
    };
    if state.generation.is_multiple_of(2) {
        EphError::NoLiveEpoch.raise();
    }
    let files = scan::scan(&scan::data_dir());
    let mut summary: BTreeMap<&str, i64> = BTreeMap::new();
    for s in scan::FileStatus::ALL {
        summary.insert(s.name(), 0);
    }
    for f in &files {
        *summary.entry(f.status.name()).or_default() += 1;
    }
    let (library_path, library_sha256) = library_sha256();
    // SAFETY: plain PostgreSQL globals and a side-effect-free call.
    let (system_identifier, pm_pid, pg_start) = unsafe {
        (
            pg_sys::GetSystemIdentifier(),
            pg_sys::PostmasterPid,
            pg_sys::PgStartTime,
        )
    };
    let memory = crate::memory::readback();
    let now_us = now_unix_us();
    let doc = json!({
        "document_version": DOCUMENT_VERSION,
        "system_identifier": system_identifier.to_string(),
        "hostname": read_trimmed("/proc/sys/kernel/hostname"),
        "boot_id": read_trimmed("/proc/sys/kernel/random/boot_id"),
        "postmaster_pid": pm_pid,
        "postmaster_start_time": iso(unix_us_from_pg(pg_start)),
        "epoch_id": to_hex(&state.epoch_id),
        "epoch_created_at": iso(state.created_at_us),
        "fingerprint": to_hex(&state.fingerprint),
        "algorithm": "AES-256-GCM",
        "memory_protection": protection_name(state.protection),
        "extension_version": env!("CARGO_PKG_VERSION"),
        "server_version": crate::server::version(),
        "server_version_num": crate::server::version_num(),
        "library_path": library_path,
        "library_sha256": library_sha256,
        "classes": crate::interpose::covered_classes(),
        "interposed_symbols": crate::interpose::interposed_symbols(),
        "on_unsupported": crate::gucs::on_unsupported().name(),
        "wal": crate::wal::attestation_json(),
        "memory_hygiene": memory.hygiene,
        "dsm_dontdump": memory.dsm_dontdump,
        "core_dumps": memory.core_dumps,
        "scan_summary": summary,
        "plaintext_files": summary.get("plaintext").copied().unwrap_or(0),
        "unexpected_files": summary.get("unexpected").copied().unwrap_or(0),
        "challenge": to_hex(challenge),
        "timestamp": iso(now_us),
    });
    let Value::Object(mut fields) = doc else {
        EphError::Attestation("document is not an object".into()).raise()
    };
    fields.extend(crate::anchor::document_fields(&to_hex(&state.epoch_id)));
    signer
        .sign_document(fields)
        .unwrap_or_else(|e| EphError::Attestation(e.to_string()).raise())
}

#[pg_extern(volatile, parallel_restricted)]
fn pg_ephcrypt_attest(challenge: Option<&[u8]>) -> JsonB {
    epoch::require_preloaded();
    let challenge = check_challenge(challenge);
    JsonB(attest(challenge))
}

/// The argument checks both verify functions share: neither argument NULL,
/// the key exactly 32 raw Ed25519 bytes. Raises a PostgreSQL error otherwise.
pub(crate) fn verify_arguments<'k>(
    document: Option<JsonB>,
    key: Option<&'k [u8]>,
    key_name: &str,
    null_hint: &'static str,
    length_hint: &'static str,
) -> (serde_json::Value, &'k [u8]) {
    let null = |what: &str| -> ! {
        EphError::BadArgument {
            code: pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            message: format!("{what} must not be NULL"),
            hint: null_hint,
        }
        .raise()
    };
    let Some(JsonB(document)) = document else {
        null("document")
    };
    let Some(key) = key else { null(key_name) };
    if key.len() != 32 {
        EphError::BadArgument {
            code: pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message: format!(
                "{key_name} must be 32 bytes (raw Ed25519), got {}",
                key.len()
            ),
            hint: length_hint,
        }
        .raise()
    }
    (document, key)
}

#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_verify_attestation(
    document: Option<JsonB>,
    public_key: Option<&[u8]>,
    challenge: default!(Option<&[u8]>, "NULL"),
) -> bool {
    epoch::require_preloaded();
    let (document, public_key) = verify_arguments(
        document,
        public_key,
        "public_key",
        "Pass the document returned by pg_ephcrypt_attest() and the attestation_public_key of pg_ephcrypt_status().",
        "Use attestation_public_key from pg_ephcrypt_status().",
    );
    let challenge_hex = challenge.map(to_hex);
    let state = epoch::public_state();
    let current_epoch = to_hex(&state.epoch_id);
    match verify_with_epoch(
        &document,
        public_key,
        challenge_hex.as_deref(),
        Some(&current_epoch),
    ) {
        Ok(_) => true,
        // A well-formed document that does not verify: false.
        Err(
            AttestError::SignatureInvalid
            | AttestError::KeyMismatch
            | AttestError::ChallengeMismatch
            | AttestError::WrongEpoch
            | AttestError::UnsupportedAlgorithm,
        ) => false,
        // Not an attestation document at all: a clear error.
        Err(e) => EphError::BadArgument {
            code: pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message: format!("not a pg_ephcrypt attestation document: {e}"),
            hint: "Pass the jsonb returned by pg_ephcrypt_attest() unchanged.",
        }
        .raise(),
    }
}
