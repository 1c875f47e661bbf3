//! Signed attestation documents of pg_ephcrypt (normative description:
//! `crates/ephcrypt-attest/README.md`).
//!
//! A document is a JSON object signed with Ed25519 over
//! `"pg_ephcrypt attestation v1\n" || canonical_json(document minus "signature")`,
//! where the canonical form sorts object keys bytewise at every level, has no
//! whitespace and allows integers only. It equals Python's
//! `json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`,
//! so an auditor can check a document without this crate.
//!
//! Pure: no global state, no I/O except [`sha256_file_hex`]. The signing seed
//! is supplied by the caller (derived from the epoch key).
#![forbid(unsafe_code)]

pub mod anchor;
mod canonical;
mod digest;
mod error;
mod hex;
mod sign;
mod verify;

pub use anchor::{
    anchored_claim, parse_public_key, seed_from_pkcs8_pem, sign_certificate, verify_anchored,
    verify_certificate, AnchoredVerified, CertKind, KeyFileError,
};
pub use canonical::{
    canonical_bytes, parse_document, signed_message, signed_message_in, DOMAIN_SEPARATOR,
};
pub use digest::{sha256_file_hex, sha256_hex};
pub use error::{AttestError, Result};
pub use hex::{parse_hex_arg, to_hex};
pub use sign::{Seed, SigningKey};
pub use verify::{verify, verify_with_epoch, Verified};

/// Names of the fields this crate reads or writes.
pub mod field {
    /// Lowercase hex of the 64-byte Ed25519 signature; not covered by itself.
    pub const SIGNATURE: &str = "signature";
    /// Always [`ALGORITHM_ED25519`]; covered by the signature.
    pub const SIGNATURE_ALGORITHM: &str = "signature_algorithm";
    /// Lowercase hex of the 32-byte public key; covered by the signature.
    pub const PUBLIC_KEY: &str = "public_key";
    /// Hex of the verifier's challenge bytes.
    pub const CHALLENGE: &str = "challenge";
    /// Hex of the 16-byte epoch id.
    pub const EPOCH_ID: &str = "epoch_id";
    /// Signing time, a string for display.
    pub const TIMESTAMP: &str = "timestamp";
    /// The value of [`SIGNATURE_ALGORITHM`].
    pub const ALGORITHM_ED25519: &str = "ed25519";
}
