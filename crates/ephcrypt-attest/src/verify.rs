//! The verifier.

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use serde_json::{Map, Value};

use crate::canonical::{canonical_bytes, signed_message};
use crate::error::{AttestError, Result};
use crate::field;
use crate::hex::{decode_hex, parse_hex_arg};

/// What a successful verification reports, for display. Each is the field's
/// string value, or its canonical JSON if it is not a string, or `None` if the
/// field is absent. All of them are covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `epoch_id`.
    pub epoch_id: Option<String>,
    /// `challenge` (hex of the challenge bytes).
    pub challenge: Option<String>,
    /// `timestamp`.
    pub timestamp: Option<String>,
}

/// Verify an attestation document against `public_key` (32 raw bytes) and,
/// if given, an expected challenge (hex; a `\x` prefix is accepted).
///
/// See [`verify_with_epoch`] for the checks.
///
/// # Errors
/// As [`verify_with_epoch`].
pub fn verify(
    document: &Value,
    public_key: &[u8],
    expected_challenge: Option<&str>,
) -> Result<Verified> {
    verify_with_epoch(document, public_key, expected_challenge, None)
}

/// Verify an attestation document, and reject one from another epoch.
///
/// Checks, in this order:
/// 1. `public_key` is 32 bytes ([`AttestError::BadPublicKey`]);
///    `expected_challenge`, if given, is hex ([`AttestError::BadHex`]);
/// 2. the document is an object ([`AttestError::NotAnObject`]);
/// 3. `signature_algorithm` is present ([`AttestError::MissingField`]) and is
///    the string `"ed25519"` ([`AttestError::UnsupportedAlgorithm`]);
/// 4. `signature` is present ([`AttestError::MissingField`]), a string of 128
///    characters ([`AttestError::BadSignatureLength`]) of hex
///    ([`AttestError::BadHex`]);
/// 5. `public_key`, if present, is hex ([`AttestError::BadHex`]) of the given
///    key ([`AttestError::KeyMismatch`]);
/// 6. the document has a canonical form ([`AttestError::NonCanonicalValue`]);
/// 7. the Ed25519 signature verifies over
///    [`signed_message`](crate::signed_message) ([`AttestError::SignatureInvalid`]);
/// 8. if `expected_challenge` is given: `challenge` is present
///    ([`AttestError::MissingField`]), hex ([`AttestError::BadHex`]) and
///    decodes to the same bytes ([`AttestError::ChallengeMismatch`]);
/// 9. if `expected_epoch_id` is given: `epoch_id` is a string
///    ([`AttestError::MissingField`]) equal to it, ignoring ASCII case and an
///    optional `\x` prefix on the expected value ([`AttestError::WrongEpoch`]).
///
/// # Errors
/// The first failing check, as listed.
pub fn verify_with_epoch(
    document: &Value,
    public_key: &[u8],
    expected_challenge: Option<&str>,
    expected_epoch_id: Option<&str>,
) -> Result<Verified> {
    let public_key: &[u8; 32] = public_key
        .try_into()
        .map_err(|_| AttestError::BadPublicKey)?;
    let expected_challenge = expected_challenge
        .map(|c| parse_hex_arg(c, "expected challenge"))
        .transpose()?;

    let doc = document.as_object().ok_or(AttestError::NotAnObject)?;

    match doc.get(field::SIGNATURE_ALGORITHM) {
        None => return Err(AttestError::MissingField(field::SIGNATURE_ALGORITHM)),
        Some(Value::String(alg)) if alg == field::ALGORITHM_ED25519 => {}
        Some(_) => return Err(AttestError::UnsupportedAlgorithm),
    }

    let signature = match doc.get(field::SIGNATURE) {
        None => return Err(AttestError::MissingField(field::SIGNATURE)),
        Some(Value::String(s)) => s,
        Some(_) => return Err(AttestError::BadHex(field::SIGNATURE)),
    };
    if signature.len() != 128 {
        return Err(AttestError::BadSignatureLength);
    }
    let signature = decode_hex(signature).ok_or(AttestError::BadHex(field::SIGNATURE))?;

    if let Some(claimed) = doc.get(field::PUBLIC_KEY) {
        let claimed = claimed
            .as_str()
            .and_then(decode_hex)
            .ok_or(AttestError::BadHex(field::PUBLIC_KEY))?;
        if claimed != public_key {
            return Err(AttestError::KeyMismatch);
        }
    }

    let message = signed_message(doc)?;
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&message, &signature)
        .map_err(|_| AttestError::SignatureInvalid)?;

    // From here on every field is authentic.
    if let Some(expected) = expected_challenge {
        let got = doc
            .get(field::CHALLENGE)
            .ok_or(AttestError::MissingField(field::CHALLENGE))?
            .as_str()
            .and_then(decode_hex)
            .ok_or(AttestError::BadHex(field::CHALLENGE))?;
        if got != expected {
            return Err(AttestError::ChallengeMismatch);
        }
    }

    if let Some(expected) = expected_epoch_id {
        let expected = expected.trim();
        let expected = expected
            .strip_prefix("\\x")
            .or_else(|| expected.strip_prefix("\\X"))
            .unwrap_or(expected);
        let got = doc
            .get(field::EPOCH_ID)
            .and_then(Value::as_str)
            .ok_or(AttestError::MissingField(field::EPOCH_ID))?;
        if !got.eq_ignore_ascii_case(expected) {
            return Err(AttestError::WrongEpoch);
        }
    }

    Ok(Verified {
        epoch_id: display(doc, field::EPOCH_ID),
        challenge: display(doc, field::CHALLENGE),
        timestamp: display(doc, field::TIMESTAMP),
    })
}

fn display(doc: &Map<String, Value>, key: &str) -> Option<String> {
    match doc.get(key)? {
        Value::String(s) => Some(s.clone()),
        // Canonicalization of the whole document succeeded, so this does too.
        other => canonical_bytes(other)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    }
}
