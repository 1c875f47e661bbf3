//! The one error type of the attestation crate.
//!
//! Messages name the field or check that failed; they never carry key bytes.

/// Everything that can go wrong when signing, parsing or verifying a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The document is not a JSON object.
    #[error("document is not a JSON object")]
    NotAnObject,
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field (or argument) that must be hex is not a string of hex digit pairs.
    #[error("`{0}` is not valid hex")]
    BadHex(&'static str),
    /// `signature` is not 128 hex characters (64 bytes).
    #[error("signature must be 64 bytes (128 hex characters)")]
    BadSignatureLength,
    /// `signature_algorithm` is not `"ed25519"`.
    #[error("unsupported signature_algorithm (only \"ed25519\" is accepted)")]
    UnsupportedAlgorithm,
    /// The document's `public_key` field names another key than the one given.
    #[error("document's public_key differs from the expected public key")]
    KeyMismatch,
    /// The public key given to the verifier is not 32 bytes.
    #[error("public key must be 32 bytes (64 hex characters)")]
    BadPublicKey,
    /// The Ed25519 signature does not verify over the canonical bytes.
    #[error("signature does not verify (document tampered with, or signed by another key)")]
    SignatureInvalid,
    /// The document's `challenge` differs from the expected challenge.
    #[error("challenge does not match the expected challenge")]
    ChallengeMismatch,
    /// The document's `epoch_id` differs from the expected epoch.
    #[error("document is from another epoch")]
    WrongEpoch,
    /// A non-integer number (float, exponent, or an integer outside
    /// i64/u64): not representable in the canonical form.
    #[error("document contains a non-integer number; only integers are allowed")]
    NonCanonicalValue,
    /// `sign_document` was given a field the signer sets itself.
    #[error("field `{0}` is reserved and set by the signer")]
    ReservedField(&'static str),
    /// The document text is not (strict) JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The document is not anchored (`"anchored"` is not `true`): it vouches
    /// only for the public key it is checked against.
    #[error("document is not anchored (\"anchored\" is not true): it vouches only for its own public key")]
    Unanchored,
    /// The instance certificate was signed by another anchor key.
    #[error("instance certificate is signed by another anchor key")]
    WrongAnchor,
    /// The epoch certificate was not signed by the certified instance key.
    #[error("epoch certificate is not signed by the instance key of the instance certificate")]
    ChainBroken,
    /// A certificate's signature does not verify.
    #[error("{0} certificate signature does not verify (tampered with, or signed by another key)")]
    CertificateInvalid(&'static str),
    /// A certificate is missing or malformed (not an object, wrong type or
    /// version, malformed key or signature).
    #[error("malformed {0} certificate")]
    BadCertificate(&'static str),
    /// The epoch certificate names another epoch than the document.
    #[error("epoch certificate is for another epoch than the document")]
    CertificateEpochMismatch,
    /// The document and a certificate disagree about the postmaster or epoch.
    #[error("document's `{0}` differs from its certificate")]
    ChainMismatch(&'static str),
    /// AWS-LC refused an operation (key construction, self-verification).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

/// `Result` with [`AttestError`].
pub type Result<T, E = AttestError> = std::result::Result<T, E>;
