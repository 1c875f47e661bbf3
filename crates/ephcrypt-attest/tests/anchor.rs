//! Anchored documents: the chain anchor -> instance certificate -> epoch
//! certificate -> document, every way it can be broken (each with the
//! genuine chain as control), and the key file formats.

use ephcrypt_attest::anchor::{private_key_pem, public_key_pem};
use ephcrypt_attest::{
    parse_public_key, seed_from_pkcs8_pem, sign_certificate, to_hex, verify_anchored, AttestError,
    CertKind, KeyFileError, SigningKey,
};
use serde_json::{json, Map, Value};

const ANCHOR: [u8; 32] = [0xa1; 32];
const OTHER_ANCHOR: [u8; 32] = [0xa2; 32];
const INSTANCE: [u8; 32] = [0xb1; 32];
const EPOCH_1: [u8; 32] = [0xc1; 32];
const EPOCH_2: [u8; 32] = [0xc2; 32];
const EPOCH_ID_1: &str = "11111111111111111111111111111111";
const EPOCH_ID_2: &str = "22222222222222222222222222222222";
const CHALLENGE: &str = "00112233445566778899";

fn key(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_seed(seed).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn identity() -> Map<String, Value> {
    obj(json!({
        "system_identifier": "7312345678901234567",
        "boot_id": "3f1c2a9e-7b44-4c1e-9d0a-1234567890ab",
        "hostname": "db-1",
        "postmaster_pid": 4242,
    }))
}

fn instance_cert(anchor: [u8; 32], instance: [u8; 32]) -> Value {
    let mut f = identity();
    f.insert(
        "instance_public_key".into(),
        json!(to_hex(&key(instance).public_key())),
    );
    f.insert("issued_at".into(), json!("2026-01-01 00:00:00+00"));
    sign_certificate(&key(anchor), CertKind::Instance, f).unwrap()
}

fn epoch_cert(instance: [u8; 32], epoch: [u8; 32], epoch_id: &str) -> Value {
    let f = obj(json!({
        "epoch_id": epoch_id,
        "epoch_public_key": to_hex(&key(epoch).public_key()),
        "epoch_created_at": format!("created {epoch_id}"),
        "restarts": 0,
    }));
    sign_certificate(&key(instance), CertKind::Epoch, f).unwrap()
}

/// A document of `epoch_id` signed by `signer`, carrying the given
/// certificates.
fn document(signer: [u8; 32], epoch_id: &str, instance: Value, epoch: Value) -> Value {
    let mut f = identity();
    f.insert("epoch_id".into(), json!(epoch_id));
    f.insert(
        "epoch_created_at".into(),
        json!(format!("created {epoch_id}")),
    );
    f.insert("challenge".into(), json!(CHALLENGE));
    f.insert("plaintext_files".into(), json!(0));
    f.insert("anchored".into(), json!(true));
    f.insert("instance_certificate".into(), instance);
    f.insert("epoch_certificate".into(), epoch);
    key(signer).sign_document(f).unwrap()
}

fn genuine() -> Value {
    document(
        EPOCH_1,
        EPOCH_ID_1,
        instance_cert(ANCHOR, INSTANCE),
        epoch_cert(INSTANCE, EPOCH_1, EPOCH_ID_1),
    )
}

fn anchor_pk() -> [u8; 32] {
    key(ANCHOR).public_key()
}

#[test]
fn valid_chain_verifies_with_challenge_and_epoch() {
    let v = verify_anchored(&genuine(), &anchor_pk(), Some(CHALLENGE), Some(EPOCH_ID_1)).unwrap();
    assert_eq!(v.instance_public_key, key(INSTANCE).public_key());
    assert_eq!(v.epoch_public_key, key(EPOCH_1).public_key());
    assert_eq!(v.document.epoch_id.as_deref(), Some(EPOCH_ID_1));
    // A later epoch of the same postmaster (crash-restart): a new epoch
    // certificate from the same instance key.
    let later = document(
        EPOCH_2,
        EPOCH_ID_2,
        instance_cert(ANCHOR, INSTANCE),
        epoch_cert(INSTANCE, EPOCH_2, EPOCH_ID_2),
    );
    verify_anchored(&later, &anchor_pk(), Some(CHALLENGE), Some(EPOCH_ID_2)).unwrap();
}

#[test]
fn wrong_anchor() {
    let pk = key(OTHER_ANCHOR).public_key();
    assert_eq!(
        verify_anchored(&genuine(), &pk, None, None),
        Err(AttestError::WrongAnchor)
    );
    // A chain made under another anchor, whose cert claims our anchor.
    let mut cert = instance_cert(OTHER_ANCHOR, INSTANCE);
    cert["signed_by"] = json!(to_hex(&anchor_pk()));
    let doc = document(
        EPOCH_1,
        EPOCH_ID_1,
        cert,
        epoch_cert(INSTANCE, EPOCH_1, EPOCH_ID_1),
    );
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::CertificateInvalid("instance"))
    );
    assert!(
        verify_anchored(&genuine(), &anchor_pk(), None, None).is_ok(),
        "control"
    );
}

#[test]
fn certificate_from_another_epoch() {
    // The holder of epoch 1's key (say, a process that outlived a
    // crash-restart) signs a document claiming epoch 2 with epoch 1's
    // genuine certificate.
    let doc = document(
        EPOCH_1,
        EPOCH_ID_2,
        instance_cert(ANCHOR, INSTANCE),
        epoch_cert(INSTANCE, EPOCH_1, EPOCH_ID_1),
    );
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::CertificateEpochMismatch)
    );
    // Epoch 2's genuine certificate on a document signed with epoch 1's key.
    let doc = document(
        EPOCH_1,
        EPOCH_ID_2,
        instance_cert(ANCHOR, INSTANCE),
        epoch_cert(INSTANCE, EPOCH_2, EPOCH_ID_2),
    );
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::KeyMismatch)
    );
    // A genuine epoch-1 document checked for epoch 2.
    assert_eq!(
        verify_anchored(&genuine(), &anchor_pk(), None, Some(EPOCH_ID_2)),
        Err(AttestError::WrongEpoch)
    );
}

#[test]
fn forged_epoch_key() {
    // An epoch certificate made by a key that is not the instance key.
    let forged_instance = [0xee; 32];
    let doc = document(
        EPOCH_2,
        EPOCH_ID_1,
        instance_cert(ANCHOR, INSTANCE),
        epoch_cert(forged_instance, EPOCH_2, EPOCH_ID_1),
    );
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::ChainBroken)
    );
    // ... and one that claims to be signed by the instance key.
    let mut cert = epoch_cert(forged_instance, EPOCH_2, EPOCH_ID_1);
    cert["signed_by"] = json!(to_hex(&key(INSTANCE).public_key()));
    let doc = document(EPOCH_2, EPOCH_ID_1, instance_cert(ANCHOR, INSTANCE), cert);
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::CertificateInvalid("epoch"))
    );
    // A genuine certificate whose epoch key was swapped: the document's
    // signature covers the certificate, and the certificate's signature
    // covers the key.
    let mut doc = genuine();
    doc["epoch_certificate"]["epoch_public_key"] = json!(to_hex(&key(EPOCH_2).public_key()));
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::CertificateInvalid("epoch"))
    );
}

#[test]
fn unanchored_document() {
    let mut f = identity();
    f.insert("epoch_id".into(), json!(EPOCH_ID_1));
    f.insert("anchored".into(), json!(false));
    let doc = key(EPOCH_1).sign_document(f.clone()).unwrap();
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::Unanchored)
    );
    assert_eq!(ephcrypt_attest::anchored_claim(&doc), Some(false));
    // Documents of 0.1.0 have no "anchored" field at all.
    f.remove("anchored");
    let old = key(EPOCH_1).sign_document(f).unwrap();
    assert_eq!(
        verify_anchored(&old, &anchor_pk(), None, None),
        Err(AttestError::Unanchored)
    );
    assert_eq!(ephcrypt_attest::anchored_claim(&old), None);
    // The unanchored document still verifies against its own key.
    ephcrypt_attest::verify(&doc, &key(EPOCH_1).public_key(), None).unwrap();
    assert_eq!(ephcrypt_attest::anchored_claim(&genuine()), Some(true));
}

#[test]
fn identity_must_match_the_instance_certificate() {
    for (field, value) in [
        ("system_identifier", json!("1")),
        ("boot_id", json!("another boot")),
        ("postmaster_pid", json!(1)),
    ] {
        let mut f = identity();
        f.insert(field.into(), value);
        f.insert(
            "instance_public_key".into(),
            json!(to_hex(&key(INSTANCE).public_key())),
        );
        let cert = sign_certificate(&key(ANCHOR), CertKind::Instance, f).unwrap();
        let doc = document(
            EPOCH_1,
            EPOCH_ID_1,
            cert,
            epoch_cert(INSTANCE, EPOCH_1, EPOCH_ID_1),
        );
        assert_eq!(
            verify_anchored(&doc, &anchor_pk(), None, None),
            Err(AttestError::ChainMismatch(field)),
            "{field}"
        );
    }
}

#[test]
fn malformed_certificates_and_keys() {
    let mut doc = genuine();
    doc.as_object_mut().unwrap().remove("epoch_certificate");
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::MissingField("epoch_certificate"))
    );
    let mut cert = instance_cert(ANCHOR, INSTANCE);
    cert["type"] = json!("epoch");
    let doc = document(
        EPOCH_1,
        EPOCH_ID_1,
        cert,
        epoch_cert(INSTANCE, EPOCH_1, EPOCH_ID_1),
    );
    assert_eq!(
        verify_anchored(&doc, &anchor_pk(), None, None),
        Err(AttestError::BadCertificate("instance"))
    );
    assert_eq!(
        verify_anchored(&genuine(), &[0; 31], None, None),
        Err(AttestError::BadPublicKey)
    );
    let f = obj(json!({"signature": "x"}));
    assert_eq!(
        sign_certificate(&key(ANCHOR), CertKind::Epoch, f),
        Err(AttestError::ReservedField("signature"))
    );
    // Domain separation: an instance certificate's signature is not an
    // epoch certificate's, even over the same fields.
    let mut cert = instance_cert(ANCHOR, INSTANCE);
    cert["type"] = json!("epoch");
    assert_eq!(
        ephcrypt_attest::verify_certificate(&cert, CertKind::Epoch, &anchor_pk()),
        Err(AttestError::CertificateInvalid("epoch"))
    );
}

fn parse(pem: &[u8]) -> Result<[u8; 32], KeyFileError> {
    let mut seed = [0u8; 32];
    let mut scratch = [0u8; 128];
    seed_from_pkcs8_pem(pem, &mut scratch, &mut seed).map(|()| seed)
}

/// Plain base64, written independently of the crate's encoder.
fn b64(bytes: &[u8]) -> String {
    let a = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= c.len() {
                char::from(a[((v >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        b64(der)
    )
    .into_bytes()
}

#[test]
fn key_files() {
    let seed = [0x42; 32];
    assert_eq!(
        parse(private_key_pem(&seed).as_bytes()),
        Ok(seed),
        "PKCS#8 v1"
    );
    // v2 (RFC 8410 OneAsymmetricKey with the public key).
    let pk = key(seed).public_key();
    let mut v2 = vec![
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v2.extend_from_slice(&seed);
    v2.extend_from_slice(&[0x81, 0x21, 0x00]);
    v2.extend_from_slice(&pk);
    assert_eq!(parse(&pem("PRIVATE KEY", &v2)), Ok(seed), "PKCS#8 v2");
    let mut bad = v2.clone();
    bad[82] ^= 1;
    assert_eq!(
        parse(&pem("PRIVATE KEY", &bad)),
        Err(KeyFileError::PublicKeyMismatch)
    );
    // An X25519 key (OID 1.3.101.110) in the same layout is not Ed25519.
    let der_x = {
        let mut d = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22,
            0x04, 0x20,
        ];
        d.extend_from_slice(&seed);
        d
    };
    assert_eq!(
        parse(&pem("PRIVATE KEY", &der_x)),
        Err(KeyFileError::NotEd25519)
    );
    // A longer key (RSA, EC) is not Ed25519 either, whatever its body.
    assert_eq!(
        parse(&pem("PRIVATE KEY", &[0x30; 600])),
        Err(KeyFileError::NotEd25519)
    );
    assert_eq!(
        parse(&pem("ENCRYPTED PRIVATE KEY", &der_x)),
        Err(KeyFileError::Encrypted)
    );
    assert_eq!(
        parse(&pem("OPENSSH PRIVATE KEY", &der_x)),
        Err(KeyFileError::OpenSsh)
    );
    assert_eq!(parse(b""), Err(KeyFileError::NotPem));
    assert_eq!(
        parse(b"42424242"),
        Err(KeyFileError::NotPem),
        "hex is not accepted"
    );
    assert_eq!(parse(&pem("PUBLIC KEY", &der_x)), Err(KeyFileError::NotPem));
    let mut two = private_key_pem(&seed).into_bytes();
    two.extend(private_key_pem(&seed).into_bytes());
    assert_eq!(parse(&two), Err(KeyFileError::NotPem), "two blocks");
    let headers =
        b"-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nMC4C\n-----END PRIVATE KEY-----\n";
    assert_eq!(parse(headers), Err(KeyFileError::NotPem));
    let body = b"-----BEGIN PRIVATE KEY-----\nMC4C!AAw\n-----END PRIVATE KEY-----\n";
    assert_eq!(parse(body), Err(KeyFileError::BadBase64));
    assert_eq!(parse(&vec![b' '; 4096]), Err(KeyFileError::TooLarge(2048)));
    // Error messages never contain key bytes.
    for e in [
        KeyFileError::NotPem,
        KeyFileError::Encrypted,
        KeyFileError::BadBase64,
        KeyFileError::NotEd25519,
        KeyFileError::PublicKeyMismatch,
    ] {
        assert!(!e.to_string().contains("4242"), "{e}");
    }
}

#[test]
fn public_key_arguments() {
    let pk = key(ANCHOR).public_key();
    assert_eq!(parse_public_key(&public_key_pem(&pk)), Ok(pk));
    assert_eq!(parse_public_key(&to_hex(&pk)), Ok(pk));
    assert_eq!(
        parse_public_key(&format!(" \\x{}\n", to_hex(&pk).to_uppercase())),
        Ok(pk)
    );
    assert_eq!(
        parse_public_key(&to_hex(&pk[..31])),
        Err(AttestError::BadPublicKey)
    );
    assert_eq!(
        parse_public_key(&String::from_utf8(private_key_pem(&ANCHOR).into_bytes()).unwrap()),
        Err(AttestError::BadPublicKey),
        "a private key is not a public key"
    );
}
