//! Attestations anchored in an operator key (README "Anchored documents").
//!
//! Chain: the operator's long-term **anchor key** signs an *instance
//! certificate* once, when the postmaster starts, for a fresh per-postmaster
//! **instance key**; the instance key signs an *epoch certificate* for every
//! key epoch (start and each crash-restart) naming the epoch's attestation
//! public key; the epoch key signs the document, which carries both
//! certificates. A verifier that knows only the anchor's public key checks
//! the whole chain ([`verify_anchored`]).
//!
//! Also here: the anchor key's file format (PKCS#8 PEM, parsed into
//! caller-provided memory, [`seed_from_pkcs8_pem`]) and the public key's
//! (hex or SPKI PEM, [`parse_public_key`]).

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use serde_json::{Map, Value};

use crate::canonical::signed_message_in;
use crate::error::{AttestError, Result};
use crate::field;
use crate::hex::{decode_hex, parse_hex_arg, to_hex};
use crate::sign::SigningKey;
use crate::verify::{verify_with_epoch, Verified};

/// Field names of anchored documents and certificates.
pub mod anchor_field {
    /// Document: `true` iff the document carries both certificates.
    pub const ANCHORED: &str = "anchored";
    /// Document: the instance certificate (an object).
    pub const INSTANCE_CERTIFICATE: &str = "instance_certificate";
    /// Document: the epoch certificate (an object).
    pub const EPOCH_CERTIFICATE: &str = "epoch_certificate";
    /// Certificate: `"instance"` or `"epoch"`.
    pub const TYPE: &str = "type";
    /// Certificate: `1`.
    pub const CERTIFICATE_VERSION: &str = "certificate_version";
    /// Certificate: hex of the signer's public key (the anchor for an
    /// instance certificate, the instance key for an epoch certificate).
    pub const SIGNED_BY: &str = "signed_by";
    /// Instance certificate: hex of the instance public key.
    pub const INSTANCE_PUBLIC_KEY: &str = "instance_public_key";
    /// Epoch certificate: hex of the epoch's attestation public key.
    pub const EPOCH_PUBLIC_KEY: &str = "epoch_public_key";
    /// Epoch certificate: when the epoch began (RFC 3339, UTC).
    pub const EPOCH_CREATED_AT: &str = "epoch_created_at";
}

use anchor_field as af;

/// Fields of the instance certificate that the document must repeat
/// exactly (they name the postmaster the instance key belongs to).
pub const INSTANCE_IDENTITY_FIELDS: [&str; 3] = ["system_identifier", "boot_id", "postmaster_pid"];

/// The two kinds of certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// Signed by the anchor key: the instance key of one postmaster.
    Instance,
    /// Signed by the instance key: the attestation key of one epoch.
    Epoch,
}

impl CertKind {
    /// The certificate's `type`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            CertKind::Instance => "instance",
            CertKind::Epoch => "epoch",
        }
    }

    /// Domain-separation prefix of the signed bytes.
    #[must_use]
    pub const fn domain(self) -> &'static [u8] {
        match self {
            CertKind::Instance => b"pg_ephcrypt instance certificate v1\n",
            CertKind::Epoch => b"pg_ephcrypt epoch certificate v1\n",
        }
    }
}

/// Sign a certificate of `kind` over `fields` with `signer`: adds `type`,
/// `certificate_version` (1), `signed_by`, `signature_algorithm` and
/// `signature` (Ed25519 over [`CertKind::domain`] || canonical JSON of
/// everything but `signature`).
///
/// # Errors
/// [`AttestError::ReservedField`] if `fields` has one of the added names;
/// [`AttestError::NonCanonicalValue`]; [`AttestError::Crypto`].
pub fn sign_certificate(
    signer: &SigningKey,
    kind: CertKind,
    mut fields: Map<String, Value>,
) -> Result<Value> {
    for reserved in [
        af::TYPE,
        af::CERTIFICATE_VERSION,
        af::SIGNED_BY,
        field::SIGNATURE_ALGORITHM,
        field::SIGNATURE,
    ] {
        if fields.contains_key(reserved) {
            return Err(AttestError::ReservedField(reserved));
        }
    }
    fields.insert(af::TYPE.into(), Value::from(kind.name()));
    fields.insert(af::CERTIFICATE_VERSION.into(), Value::from(1));
    fields.insert(
        af::SIGNED_BY.into(),
        Value::from(to_hex(&signer.public_key())),
    );
    fields.insert(
        field::SIGNATURE_ALGORITHM.into(),
        Value::from(field::ALGORITHM_ED25519),
    );
    let message = signed_message_in(kind.domain(), &fields)?;
    let signature = signer.sign_checked(&message)?;
    fields.insert(field::SIGNATURE.into(), Value::from(to_hex(&signature)));
    Ok(Value::Object(fields))
}

fn hex32(obj: &Map<String, Value>, name: &'static str, what: &'static str) -> Result<[u8; 32]> {
    obj.get(name)
        .and_then(Value::as_str)
        .and_then(decode_hex)
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or(AttestError::BadCertificate(what))
}

/// Check a certificate of `kind` signed by `signer` (32 raw bytes) and
/// return its fields.
///
/// # Errors
/// [`AttestError::BadCertificate`] (not an object, wrong `type` or version,
/// malformed fields); [`AttestError::WrongAnchor`] (an instance certificate
/// whose `signed_by` is another key); [`AttestError::ChainBroken`] (an epoch
/// certificate whose `signed_by` is not the instance key);
/// [`AttestError::UnsupportedAlgorithm`]; [`AttestError::NonCanonicalValue`];
/// [`AttestError::CertificateInvalid`] (the signature does not verify).
pub fn verify_certificate<'a>(
    cert: &'a Value,
    kind: CertKind,
    signer: &[u8; 32],
) -> Result<&'a Map<String, Value>> {
    let what = kind.name();
    let obj = cert.as_object().ok_or(AttestError::BadCertificate(what))?;
    if obj.get(af::TYPE).and_then(Value::as_str) != Some(what)
        || obj.get(af::CERTIFICATE_VERSION).and_then(Value::as_i64) != Some(1)
    {
        return Err(AttestError::BadCertificate(what));
    }
    match obj.get(field::SIGNATURE_ALGORITHM) {
        Some(Value::String(a)) if a == field::ALGORITHM_ED25519 => {}
        Some(_) => return Err(AttestError::UnsupportedAlgorithm),
        None => return Err(AttestError::BadCertificate(what)),
    }
    if hex32(obj, af::SIGNED_BY, what)? != *signer {
        return Err(match kind {
            CertKind::Instance => AttestError::WrongAnchor,
            CertKind::Epoch => AttestError::ChainBroken,
        });
    }
    let signature = obj
        .get(field::SIGNATURE)
        .and_then(Value::as_str)
        .filter(|s| s.len() == 128)
        .and_then(decode_hex)
        .ok_or(AttestError::BadCertificate(what))?;
    let message = signed_message_in(kind.domain(), obj)?;
    UnparsedPublicKey::new(&ED25519, signer)
        .verify(&message, &signature)
        .map_err(|_| AttestError::CertificateInvalid(what))?;
    Ok(obj)
}

/// What [`verify_anchored`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredVerified {
    /// The document's own verification.
    pub document: Verified,
    /// The instance key the anchor certified.
    pub instance_public_key: [u8; 32],
    /// The epoch key the instance key certified (and that signed the
    /// document).
    pub epoch_public_key: [u8; 32],
}

/// Whether a document claims to be anchored: `Some(true)` / `Some(false)`
/// for a boolean `anchored` field, `None` without one (documents of 0.1.0).
#[must_use]
pub fn anchored_claim(document: &Value) -> Option<bool> {
    document.get(af::ANCHORED).and_then(Value::as_bool)
}

/// Verify an anchored document against the operator's anchor public key
/// (32 raw bytes), and optionally a challenge and an epoch.
///
/// Checks, in order (the first failure is returned):
/// 1. the anchor key is 32 bytes ([`AttestError::BadPublicKey`]); the
///    document is an object ([`AttestError::NotAnObject`]);
/// 2. `anchored` is `true` ([`AttestError::Unanchored`] otherwise, also when
///    absent);
/// 3. `instance_certificate` verifies under the anchor
///    ([`verify_certificate`]: [`AttestError::WrongAnchor`],
///    [`AttestError::CertificateInvalid`], ...);
/// 4. `epoch_certificate` verifies under the certified instance key
///    ([`AttestError::ChainBroken`], [`AttestError::CertificateInvalid`], ...);
/// 5. the document verifies under the certified epoch key, with the
///    challenge and epoch if given ([`verify_with_epoch`]: a document signed
///    by any other key is [`AttestError::KeyMismatch`] or
///    [`AttestError::SignatureInvalid`]);
/// 6. the document's `epoch_id` is the epoch certificate's
///    ([`AttestError::CertificateEpochMismatch`]), and its
///    [`INSTANCE_IDENTITY_FIELDS`] equal the instance certificate's
///    ([`AttestError::ChainMismatch`]). (Times are not compared: the
///    document writes them in the session's time zone, the certificates in
///    UTC.)
///
/// # Errors
/// As listed.
pub fn verify_anchored(
    document: &Value,
    anchor_public_key: &[u8],
    expected_challenge: Option<&str>,
    expected_epoch_id: Option<&str>,
) -> Result<AnchoredVerified> {
    let anchor: &[u8; 32] = anchor_public_key
        .try_into()
        .map_err(|_| AttestError::BadPublicKey)?;
    let doc = document.as_object().ok_or(AttestError::NotAnObject)?;
    if doc.get(af::ANCHORED) != Some(&Value::Bool(true)) {
        return Err(AttestError::Unanchored);
    }
    let instance_cert = doc
        .get(af::INSTANCE_CERTIFICATE)
        .ok_or(AttestError::MissingField(af::INSTANCE_CERTIFICATE))?;
    let instance = verify_certificate(instance_cert, CertKind::Instance, anchor)?;
    let instance_key = hex32(instance, af::INSTANCE_PUBLIC_KEY, "instance")?;
    let epoch_cert = doc
        .get(af::EPOCH_CERTIFICATE)
        .ok_or(AttestError::MissingField(af::EPOCH_CERTIFICATE))?;
    let epoch = verify_certificate(epoch_cert, CertKind::Epoch, &instance_key)?;
    let epoch_key = hex32(epoch, af::EPOCH_PUBLIC_KEY, "epoch")?;

    let verified = verify_with_epoch(document, &epoch_key, expected_challenge, expected_epoch_id)?;

    // From here on the document and both certificates are authentic; they
    // must describe the same epoch and the same postmaster.
    let text = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    if text(doc, field::EPOCH_ID).is_none()
        || text(doc, field::EPOCH_ID) != text(epoch, field::EPOCH_ID)
    {
        return Err(AttestError::CertificateEpochMismatch);
    }
    for name in INSTANCE_IDENTITY_FIELDS {
        if doc.get(name).is_none() || doc.get(name) != instance.get(name) {
            return Err(AttestError::ChainMismatch(name));
        }
    }
    Ok(AnchoredVerified {
        document: verified,
        instance_public_key: instance_key,
        epoch_public_key: epoch_key,
    })
}

// ---------------------------------------------------------------------------
// Key files.

/// Why an anchor private key file cannot be used. Messages never contain
/// any byte of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// Not `-----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----`.
    #[error("not a PEM file with one \"PRIVATE KEY\" block (PKCS#8, as written by `openssl genpkey -algorithm ed25519`)")]
    NotPem,
    /// An encrypted PKCS#8 key (needs a passphrase nobody can type at start).
    #[error("an encrypted private key; the postmaster cannot ask for a passphrase (write it unencrypted, readable only by the server user)")]
    Encrypted,
    /// An OpenSSH key.
    #[error("an OpenSSH private key; convert it to PKCS#8 PEM")]
    OpenSsh,
    /// The body is not base64.
    #[error("the PEM body is not valid base64")]
    BadBase64,
    /// PKCS#8, but not an Ed25519 key in one of the two layouts of RFC 8410.
    #[error("not an Ed25519 private key in PKCS#8 (RFC 8410)")]
    NotEd25519,
    /// A PKCS#8 v2 key whose embedded public key does not match its seed.
    #[error("the embedded public key does not belong to the private key")]
    PublicKeyMismatch,
    /// Larger than any Ed25519 PEM key.
    #[error("the file is larger than {0} bytes")]
    TooLarge(usize),
}

/// Largest accepted key file (an Ed25519 PKCS#8 PEM is about 120 bytes).
pub const MAX_KEY_FILE_LEN: usize = 2048;

/// DER of an Ed25519 PKCS#8 v1 key up to the seed (RFC 8410 §7).
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// The same for v2 (OneAsymmetricKey with the public key).
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// Between the seed and the public key in v2: `[1] BIT STRING (33)`, 0 unused bits.
const PKCS8_V2_MIDDLE: [u8; 3] = [0x81, 0x21, 0x00];
/// DER of an Ed25519 SubjectPublicKeyInfo up to the key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Strict base64 (standard alphabet, `=` padding, ASCII whitespace ignored)
/// into `out`; returns the decoded length. Non-canonical encodings (unused
/// bits set, padding that does not match the length) are refused.
fn base64_decode(text: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut n = 0usize;
    let mut pad = 0u32;
    let mut chars = 0usize;
    for &c in text {
        if c.is_ascii_whitespace() {
            continue;
        }
        chars += 1;
        if c == b'=' {
            pad += 1;
            continue;
        }
        if pad > 0 {
            return None; // data after padding
        }
        acc = (acc << 6) | u32::from(b64_value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
        acc &= (1 << bits) - 1;
    }
    let padding_matches = matches!((pad, bits), (0, 0) | (1, 2) | (2, 4));
    (chars.is_multiple_of(4) && acc == 0 && padding_matches).then_some(n)
}

/// The body between `-----BEGIN <label>-----` and `-----END <label>-----`,
/// which must be the whole text (ASCII whitespace around it allowed).
fn pem_body<'a>(text: &'a [u8], label: &str) -> Option<&'a [u8]> {
    let text = text.trim_ascii();
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let rest = text.strip_prefix(begin.as_bytes())?;
    let body = rest.strip_suffix(end.as_bytes())?;
    // A header line ("Proc-Type: ...") or a second block is not base64.
    (!body.contains(&b'-') && !body.contains(&b':')).then_some(body)
}

/// Parse an anchor private key file (PKCS#8 PEM of an Ed25519 key, v1 or
/// v2 layout of RFC 8410) into `seed`. `scratch` receives the DER and is
/// wiped before returning, whatever the outcome; it must hold at least 128
/// bytes. Nothing of the file is copied anywhere else.
///
/// # Errors
/// [`KeyFileError`]; its messages never contain file bytes.
pub fn seed_from_pkcs8_pem(
    pem: &[u8],
    scratch: &mut [u8],
    seed: &mut [u8; 32],
) -> std::result::Result<(), KeyFileError> {
    let result = parse_pkcs8(pem, scratch, seed);
    scratch.iter_mut().for_each(|b| *b = 0);
    if result.is_err() {
        seed.iter_mut().for_each(|b| *b = 0);
    }
    result
}

fn parse_pkcs8(
    pem: &[u8],
    scratch: &mut [u8],
    seed: &mut [u8; 32],
) -> std::result::Result<(), KeyFileError> {
    if pem.len() > MAX_KEY_FILE_LEN {
        return Err(KeyFileError::TooLarge(MAX_KEY_FILE_LEN));
    }
    let trimmed = pem.trim_ascii();
    if trimmed.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(KeyFileError::Encrypted);
    }
    if trimmed.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----") {
        return Err(KeyFileError::OpenSsh);
    }
    let body = pem_body(pem, "PRIVATE KEY").ok_or(KeyFileError::NotPem)?;
    // An Ed25519 PKCS#8 key is at most 83 bytes (112 base64 characters):
    // anything longer (an RSA or EC key) is another kind of key.
    if body.iter().filter(|c| !c.is_ascii_whitespace()).count() > 112 {
        return Err(KeyFileError::NotEd25519);
    }
    let n = base64_decode(body, scratch).ok_or(KeyFileError::BadBase64)?;
    let der = &scratch[..n];
    if n == 48 && der[..16] == PKCS8_V1_PREFIX {
        seed.copy_from_slice(&der[16..48]);
        return Ok(());
    }
    if n == 83 && der[..16] == PKCS8_V2_PREFIX && der[48..51] == PKCS8_V2_MIDDLE {
        seed.copy_from_slice(&der[16..48]);
        let key = SigningKey::from_seed_ref(seed).map_err(|_| KeyFileError::NotEd25519)?;
        if key.public_key()[..] != der[51..83] {
            return Err(KeyFileError::PublicKeyMismatch);
        }
        return Ok(());
    }
    Err(KeyFileError::NotEd25519)
}

/// An Ed25519 public key given to a verifier: 64 hex digits (a `\x` prefix
/// allowed) or the text of a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, as
/// written by `openssl pkey -pubout`).
///
/// # Errors
/// [`AttestError::BadPublicKey`].
pub fn parse_public_key(text: &str) -> Result<[u8; 32]> {
    if let Some(body) = pem_body(text.as_bytes(), "PUBLIC KEY") {
        let mut der = [0u8; 64];
        let n = base64_decode(body, &mut der).ok_or(AttestError::BadPublicKey)?;
        if n != 44 || der[..12] != SPKI_PREFIX {
            return Err(AttestError::BadPublicKey);
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&der[12..44]);
        return Ok(pk);
    }
    parse_hex_arg(text, "public key")
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or(AttestError::BadPublicKey)
}

fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// PEM `PUBLIC KEY` text of an Ed25519 public key (what `openssl pkey
/// -pubout` writes).
#[must_use]
pub fn public_key_pem(public_key: &[u8; 32]) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(public_key);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64_encode(&der)
    )
}

/// PEM `PRIVATE KEY` text (PKCS#8 v1) of an Ed25519 seed, as `openssl
/// genpkey -algorithm ed25519` writes it. For tests and tools; the returned
/// string is not wiped.
#[must_use]
pub fn private_key_pem(seed: &[u8; 32]) -> String {
    let mut der = PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(seed);
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64_encode(&der)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_strictness() {
        let mut out = [0u8; 64];
        for len in 0..40usize {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let enc = base64_encode(&data);
            let n = base64_decode(enc.as_bytes(), &mut out).unwrap();
            assert_eq!(&out[..n], &data[..], "{enc}");
        }
        assert_eq!(base64_decode(b"TWFu", &mut out), Some(3));
        assert_eq!(
            base64_decode(b"TW\nFu", &mut out),
            Some(3),
            "whitespace ignored"
        );
        assert_eq!(base64_decode(b"TWF", &mut out), None, "not a multiple of 4");
        assert_eq!(base64_decode(b"TW=u", &mut out), None, "data after padding");
        assert_eq!(base64_decode(b"T===", &mut out), None);
        assert_eq!(base64_decode(b"TW!u", &mut out), None);
        assert_eq!(
            base64_decode(b"TWFu", &mut [0u8; 2]),
            None,
            "output too small"
        );
    }

    #[test]
    fn openssl_generated_key_parses() {
        // A throwaway key from `openssl genpkey -algorithm ed25519` (OpenSSL
        // 3.0.19), and what `openssl pkey -pubout` printed for it.
        let pem = b"-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIHNliJOn3BYWKTI8Fd4Se7Z6Xytsubur3+nK8hLbPuMf\n\
-----END PRIVATE KEY-----\n";
        let pub_pem = "-----BEGIN PUBLIC KEY-----\n\
MCowBQYDK2VwAyEALQcSzPhqcaMeE/Alc/lF8FURz+I86XzEmn0nE6eJZ88=\n\
-----END PUBLIC KEY-----\n";
        let pk_hex = "2d0712ccf86a71a31e13f02573f945f05511cfe23ce97cc49a7d2713a78967cf";
        let mut seed = [0u8; 32];
        let mut scratch = [0xffu8; 128];
        seed_from_pkcs8_pem(pem, &mut scratch, &mut seed).unwrap();
        assert!(scratch.iter().all(|&b| b == 0), "scratch wiped");
        let key = SigningKey::from_seed_ref(&seed).unwrap();
        assert_eq!(to_hex(&key.public_key()), pk_hex);
        assert_eq!(private_key_pem(&seed).as_bytes(), &pem[..]);
        assert_eq!(public_key_pem(&key.public_key()), pub_pem);
        assert_eq!(parse_public_key(pub_pem).unwrap(), key.public_key());
        assert_eq!(parse_public_key(pk_hex).unwrap(), key.public_key());
        assert_eq!(
            parse_public_key(&format!("\\x{}", to_hex(&key.public_key()))).unwrap(),
            key.public_key()
        );
    }
}
