//! Round trip and every way a document can fail verification.

mod common;

use common::{all_pointers, key, mutate, obj, other_key, signed, CHALLENGE, EPOCH};
use ephcrypt_attest::{
    parse_document, to_hex, verify, verify_with_epoch, AttestError, SigningKey, Verified,
};
use serde_json::{json, Value};

fn pk() -> [u8; 32] {
    key().public_key()
}

fn check(doc: &Value) -> Result<Verified, AttestError> {
    verify(doc, &pk(), Some(CHALLENGE))
}

#[test]
fn round_trip() {
    let doc = signed();
    let v = check(&doc).unwrap();
    assert_eq!(
        v,
        Verified {
            epoch_id: Some(EPOCH.into()),
            challenge: Some(CHALLENGE.into()),
            timestamp: Some("2025-06-01 12:00:00.123456+00".into()),
        }
    );
    assert_eq!(verify(&doc, &pk(), None).unwrap(), v);
    assert_eq!(
        verify_with_epoch(&doc, &pk(), Some(CHALLENGE), Some(EPOCH)).unwrap(),
        v
    );
    // Through text, as the CLI does.
    let text = format!("\n  {}  \n\n", serde_json::to_string(&doc).unwrap());
    assert_eq!(check(&parse_document(&text).unwrap()).unwrap(), v);
}

#[test]
fn signer_adds_exactly_three_fields() {
    let doc = signed();
    let mut m = doc.as_object().unwrap().clone();
    let sig = m.remove("signature").unwrap();
    assert_eq!(m.remove("signature_algorithm").unwrap(), "ed25519");
    assert_eq!(m.remove("public_key").unwrap(), to_hex(&pk()).as_str());
    assert_eq!(m, common::fields());
    let sig = sig.as_str().unwrap();
    assert_eq!(sig.len(), 128);
    assert!(sig
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn minimal_document() {
    let doc = key().sign_document(serde_json::Map::new()).unwrap();
    let v = verify(&doc, &pk(), None).unwrap();
    assert_eq!(
        v,
        Verified {
            epoch_id: None,
            challenge: None,
            timestamp: None
        }
    );
    assert_eq!(
        verify(&doc, &pk(), Some("00")),
        Err(AttestError::MissingField("challenge"))
    );
    assert_eq!(
        verify_with_epoch(&doc, &pk(), None, Some(EPOCH)),
        Err(AttestError::MissingField("epoch_id"))
    );
}

#[test]
fn non_string_display_fields_are_rendered_as_json() {
    let mut f = common::fields();
    f.insert("timestamp".into(), json!(1_717_243_200));
    f.insert("epoch_id".into(), json!({"b": 1, "a": [true]}));
    let doc = key().sign_document(f).unwrap();
    let v = verify(&doc, &pk(), None).unwrap();
    assert_eq!(v.timestamp.as_deref(), Some("1717243200"));
    assert_eq!(v.epoch_id.as_deref(), Some(r#"{"a":[true],"b":1}"#));
    // A non-string epoch never matches an expected epoch.
    assert_eq!(
        verify_with_epoch(&doc, &pk(), None, Some(EPOCH)),
        Err(AttestError::MissingField("epoch_id"))
    );
}

#[test]
fn tampered_top_level_values() {
    let doc = signed();
    for key_name in doc.as_object().unwrap().keys() {
        let mut t = doc.clone();
        mutate(obj(&mut t).get_mut(key_name).unwrap());
        let expected = match key_name.as_str() {
            "signature" => AttestError::SignatureInvalid,
            "signature_algorithm" => AttestError::UnsupportedAlgorithm,
            "public_key" => AttestError::KeyMismatch,
            _ => AttestError::SignatureInvalid,
        };
        assert_eq!(check(&t).unwrap_err(), expected, "tampered {key_name}");
        // Also without the challenge check, so the signature alone catches it.
        assert_eq!(
            verify(&t, &pk(), None).unwrap_err(),
            expected,
            "tampered {key_name}"
        );
    }
}

#[test]
fn tampered_nested_values_anywhere() {
    let doc = signed();
    let pointers = all_pointers(&doc);
    assert!(pointers.len() > 25, "{pointers:?}");
    let mut nested = 0;
    for p in &pointers {
        let mut t = doc.clone();
        mutate(t.pointer_mut(p).unwrap());
        assert_ne!(t, doc);
        let err = verify(&t, &pk(), None).unwrap_err();
        if p.matches('/').count() > 1 {
            nested += 1;
            assert_eq!(err, AttestError::SignatureInvalid, "tampered {p}");
        }
    }
    assert!(nested >= 16, "{nested}");
}

#[test]
fn renamed_nested_key() {
    let mut t = signed();
    let inst = obj(&mut t)
        .get_mut("instance")
        .unwrap()
        .as_object_mut()
        .unwrap();
    let port = inst.remove("port").unwrap();
    inst.insert("Port".into(), port);
    assert_eq!(check(&t), Err(AttestError::SignatureInvalid));
}

#[test]
fn added_field() {
    for (k, v) in [
        ("extra", json!("x")),
        ("a", json!(null)),
        ("zzz", json!([])),
        ("", json!(0)),
    ] {
        let mut t = signed();
        obj(&mut t).insert(k.into(), v);
        assert_eq!(check(&t), Err(AttestError::SignatureInvalid), "added {k:?}");
    }
    // Nested addition.
    let mut t = signed();
    t["verification"]
        .as_object_mut()
        .unwrap()
        .insert("plaintext_files".into(), json!(3));
    assert_eq!(check(&t), Err(AttestError::SignatureInvalid));
    let mut t = signed();
    t["covered_classes"]
        .as_array_mut()
        .unwrap()
        .push(json!("sort"));
    assert_eq!(check(&t), Err(AttestError::SignatureInvalid));
}

#[test]
fn removed_field() {
    let doc = signed();
    for key_name in doc.as_object().unwrap().keys() {
        let mut t = doc.clone();
        obj(&mut t).remove(key_name);
        let expected = match key_name.as_str() {
            "signature" => AttestError::MissingField("signature"),
            "signature_algorithm" => AttestError::MissingField("signature_algorithm"),
            _ => AttestError::SignatureInvalid,
        };
        assert_eq!(
            verify(&t, &pk(), None).unwrap_err(),
            expected,
            "removed {key_name}"
        );
    }
    // Nested removal.
    let mut t = signed();
    t["verification"]
        .as_object_mut()
        .unwrap()
        .remove("plaintext");
    assert_eq!(check(&t), Err(AttestError::SignatureInvalid));
}

#[test]
fn wrong_challenge() {
    let doc = signed();
    for c in [
        "c0ffee0123456788",
        "c0ffee01234567",
        "c0ffee012345678900",
        "",
        "00",
    ] {
        assert_eq!(
            verify(&doc, &pk(), Some(c)),
            Err(AttestError::ChallengeMismatch),
            "{c:?}"
        );
    }
    // Same bytes written differently are the same challenge.
    for c in [
        "C0FFEE0123456789",
        "\\xc0ffee0123456789",
        " c0ffee0123456789\n",
    ] {
        verify(&doc, &pk(), Some(c)).unwrap();
    }
    // An expected challenge that is not hex is refused up front.
    for c in ["xyz", "c0f", "c0 ff"] {
        assert_eq!(
            verify(&doc, &pk(), Some(c)),
            Err(AttestError::BadHex("expected challenge")),
            "{c:?}"
        );
    }
    // A signed document whose challenge is not hex.
    let mut f = common::fields();
    f.insert("challenge".into(), json!("not hex"));
    let doc = key().sign_document(f).unwrap();
    assert_eq!(
        verify(&doc, &pk(), Some("00")),
        Err(AttestError::BadHex("challenge"))
    );
    verify(&doc, &pk(), None).unwrap();
}

#[test]
fn replayed_document_with_swapped_challenge() {
    // An attacker replays an old document and rewrites its challenge to the
    // new one: the signature catches it.
    let mut t = signed();
    obj(&mut t).insert("challenge".into(), json!("0123"));
    assert_eq!(
        verify(&t, &pk(), Some("0123")),
        Err(AttestError::SignatureInvalid)
    );
}

#[test]
fn wrong_key() {
    let doc = signed();
    let other = other_key().public_key();
    assert_ne!(other, pk());
    assert_eq!(
        verify(&doc, &other, Some(CHALLENGE)),
        Err(AttestError::KeyMismatch)
    );
    // Claiming the other key in the document does not help: public_key is
    // covered by the signature.
    let mut t = doc.clone();
    obj(&mut t).insert("public_key".into(), json!(to_hex(&other)));
    assert_eq!(
        verify(&t, &other, Some(CHALLENGE)),
        Err(AttestError::SignatureInvalid)
    );
    // A document by the other key does not verify under ours.
    let theirs = other_key().sign_document(common::fields()).unwrap();
    assert_eq!(
        verify(&theirs, &pk(), Some(CHALLENGE)),
        Err(AttestError::KeyMismatch)
    );
    verify(&theirs, &other, Some(CHALLENGE)).unwrap();
    // Their signature grafted onto our document.
    let mut t = doc;
    obj(&mut t).insert("signature".into(), theirs["signature"].clone());
    assert_eq!(check(&t), Err(AttestError::SignatureInvalid));
    // A malformed public_key claim.
    for bad in [
        json!("zz"),
        json!(1),
        json!(null),
        json!(to_hex(&pk()[..31])),
    ] {
        let mut t = signed();
        obj(&mut t).insert("public_key".into(), bad.clone());
        let err = check(&t).unwrap_err();
        assert!(
            matches!(
                err,
                AttestError::BadHex("public_key") | AttestError::KeyMismatch
            ),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn bad_public_key_argument() {
    let doc = signed();
    for len in [0usize, 31, 33, 64] {
        assert_eq!(
            verify(&doc, &vec![0u8; len], None),
            Err(AttestError::BadPublicKey),
            "{len}"
        );
    }
    // 32 bytes that are not a valid curve point (or the wrong one).
    let mut t = signed();
    obj(&mut t).remove("public_key");
    assert_eq!(
        verify(&t, &[0xff; 32], None),
        Err(AttestError::SignatureInvalid)
    );
}

#[test]
fn signature_wrong_length_or_bad_hex() {
    let doc = signed();
    let sig = doc["signature"].as_str().unwrap().to_owned();
    let cases: Vec<(String, AttestError)> = vec![
        (String::new(), AttestError::BadSignatureLength),
        (sig[..126].to_owned(), AttestError::BadSignatureLength),
        (sig[..127].to_owned(), AttestError::BadSignatureLength),
        (format!("{sig}00"), AttestError::BadSignatureLength),
        (format!("{sig}0"), AttestError::BadSignatureLength),
        (format!("zz{}", &sig[2..]), AttestError::BadHex("signature")),
        (
            format!("{} ", &sig[..127]),
            AttestError::BadHex("signature"),
        ),
        (
            format!("\\x{}", &sig[2..]),
            AttestError::BadHex("signature"),
        ),
        // 128 bytes of UTF-8, 64 characters.
        ("é".repeat(64), AttestError::BadHex("signature")),
    ];
    for (s, expected) in cases {
        let mut t = doc.clone();
        obj(&mut t).insert("signature".into(), json!(s));
        assert_eq!(check(&t), Err(expected), "{s:?}");
    }
    for v in [
        json!(null),
        json!(1),
        json!([sig.clone()]),
        json!({"sig": sig}),
    ] {
        let mut t = doc.clone();
        obj(&mut t).insert("signature".into(), v.clone());
        assert_eq!(check(&t), Err(AttestError::BadHex("signature")), "{v}");
    }
    // Each bit of the signature matters.
    let bytes = ephcrypt_attest::parse_hex_arg(&sig, "sig").unwrap();
    for i in [0usize, 1, 31, 32, 63] {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let mut t = doc.clone();
        obj(&mut t).insert("signature".into(), json!(to_hex(&b)));
        assert_eq!(check(&t), Err(AttestError::SignatureInvalid), "byte {i}");
    }
    // Hex case of the (uncovered) signature is not significant.
    let mut t = doc;
    obj(&mut t).insert("signature".into(), json!(sig.to_uppercase()));
    check(&t).unwrap();
}

#[test]
fn wrong_algorithm() {
    for alg in [
        json!("Ed25519"),
        json!("ed448"),
        json!(""),
        json!(1),
        json!(null),
    ] {
        let mut t = signed();
        obj(&mut t).insert("signature_algorithm".into(), alg.clone());
        assert_eq!(check(&t), Err(AttestError::UnsupportedAlgorithm), "{alg}");
    }
}

#[test]
fn document_from_another_epoch() {
    let doc = signed();
    let other_epoch = "ffeeddccbbaa99887766554433221100";
    assert_eq!(
        verify_with_epoch(&doc, &pk(), Some(CHALLENGE), Some(other_epoch)),
        Err(AttestError::WrongEpoch)
    );
    assert_eq!(
        verify_with_epoch(&doc, &pk(), None, Some(&EPOCH[..30])),
        Err(AttestError::WrongEpoch)
    );
    for same in [
        EPOCH.to_uppercase(),
        format!("\\x{EPOCH}"),
        format!(" {EPOCH}\n"),
    ] {
        verify_with_epoch(&doc, &pk(), None, Some(&same)).unwrap();
    }
    // A previous epoch's document signed with the previous epoch's key, checked
    // against the new key and epoch: refused by the key, and if the old key were
    // (wrongly) used, by the epoch.
    let old_key = SigningKey::from_seed([9; 32]).unwrap();
    let mut f = common::fields();
    f.insert("epoch_id".into(), json!(other_epoch));
    let old = old_key.sign_document(f).unwrap();
    assert_eq!(
        verify_with_epoch(&old, &pk(), Some(CHALLENGE), Some(EPOCH)),
        Err(AttestError::KeyMismatch)
    );
    assert_eq!(
        verify_with_epoch(&old, &old_key.public_key(), Some(CHALLENGE), Some(EPOCH)),
        Err(AttestError::WrongEpoch)
    );
    // Rewriting the epoch id is caught by the signature.
    let mut t = old;
    obj(&mut t).insert("epoch_id".into(), json!(EPOCH));
    assert_eq!(
        verify_with_epoch(&t, &old_key.public_key(), Some(CHALLENGE), Some(EPOCH)),
        Err(AttestError::SignatureInvalid)
    );
}

#[test]
fn missing_signature() {
    let mut t = signed();
    obj(&mut t).remove("signature");
    assert_eq!(check(&t), Err(AttestError::MissingField("signature")));
    let unsigned = Value::Object(common::fields());
    assert_eq!(
        check(&unsigned),
        Err(AttestError::MissingField("signature_algorithm"))
    );
}

#[test]
fn not_an_object() {
    for v in [
        json!(null),
        json!(true),
        json!(1),
        json!("{}"),
        json!([]),
        json!([signed()]),
    ] {
        assert_eq!(check(&v), Err(AttestError::NotAnObject), "{v}");
    }
    for text in ["null", "[]", "\"x\"", "42"] {
        let v = parse_document(text).unwrap();
        assert_eq!(check(&v), Err(AttestError::NotAnObject), "{text}");
    }
}

#[test]
fn invalid_json_text() {
    let text = serde_json::to_string(&signed()).unwrap();
    for bad in [
        &text[..text.len() - 1],
        &format!("{text},"),
        &format!("{text}{text}"),
        "",
        "   ",
    ] {
        assert!(
            matches!(parse_document(bad), Err(AttestError::Json(_))),
            "{bad:?}"
        );
    }
    // A duplicated key (the second copy changing a value) is refused outright.
    let dup = text.replacen("{", &format!("{{\"challenge\":\"{CHALLENGE}\","), 1);
    let dup = dup.replacen(
        &format!("\"challenge\":\"{CHALLENGE}\","),
        "\"challenge\":\"00\",",
        1,
    );
    let err = parse_document(&dup).unwrap_err();
    assert!(
        matches!(&err, AttestError::Json(m) if m.contains("duplicate key")),
        "{err:?}"
    );
}

#[test]
fn floats_rejected() {
    let mut f = common::fields();
    f.insert("load".into(), json!(0.5));
    assert_eq!(key().sign_document(f), Err(AttestError::NonCanonicalValue));
    let mut f = common::fields();
    f.insert("nested".into(), json!({"deeper": [1, 2, 3.0]}));
    assert_eq!(key().sign_document(f), Err(AttestError::NonCanonicalValue));
    // A float injected into a signed document.
    let mut t = signed();
    t["verification"]["files"] = json!(12.0);
    assert_eq!(check(&t), Err(AttestError::NonCanonicalValue));
    let text = serde_json::to_string(&signed())
        .unwrap()
        .replace("\"files\":12", "\"files\":12.0");
    assert_eq!(
        check(&parse_document(&text).unwrap()),
        Err(AttestError::NonCanonicalValue)
    );
}

#[test]
fn reserved_fields() {
    for (name, expected) in [
        ("signature", "signature"),
        ("signature_algorithm", "signature_algorithm"),
        ("public_key", "public_key"),
    ] {
        let mut f = common::fields();
        f.insert(name.into(), json!("x"));
        assert_eq!(
            key().sign_document(f),
            Err(AttestError::ReservedField(expected))
        );
    }
}

#[test]
fn keys_from_seeds() {
    let a = SigningKey::from_seed([1; 32]).unwrap();
    let b = SigningKey::from_seed([1; 32]).unwrap();
    let c = SigningKey::from_seed([2; 32]).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    assert_ne!(a.public_key(), c.public_key());
    let f = common::fields();
    assert_eq!(
        a.sign_document(f.clone()).unwrap(),
        b.sign_document(f).unwrap()
    );
}

#[test]
fn errors_display() {
    assert_eq!(
        AttestError::MissingField("signature").to_string(),
        "missing field `signature`"
    );
    assert_eq!(
        AttestError::WrongEpoch.to_string(),
        "document is from another epoch"
    );
}
