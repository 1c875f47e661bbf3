//! The canonical form: Python compatibility, order independence, golden vector.

mod common;

use ephcrypt_attest::{
    canonical_bytes, parse_document, signed_message, verify, AttestError, DOMAIN_SEPARATOR,
};
use serde_json::{json, Value};

/// Exactly what Python 3 prints for this document with
/// `json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
/// (generated once with CPython 3 and pasted here; the README's audit snippet
/// relies on this equality).
const PYTHON_CANONICAL: &str = "{\"\":\"empty key\",\"Z\":\"upper\",\
\"a\":{\"b\":\"\",\"y\":[true,false,null,0,-1,18446744073709551615,-9223372036854775808,[],{}]},\
\"e\":\"plain\",\
\"esc\":\"quote\\\" backslash\\\\ slash/ nl\\n cr\\r tab\\t bs\\b ff\\f nul\\u0000 us\\u001f del\u{7f} ls\u{2028} ps\u{2029}\",\
\"nested\":{\"a\":true,\"b\":{\"c\":null,\"d\":[1,{\"e\":\"h\",\"f\":\"g\"}]}},\
\"unicode\":\"Grüße, 日本語, 🐘, \u{a0}nbsp\",\"z\":1,\"é\":\"accent\",\
\"\u{e000}\":\"private use\",\"\u{ffff}\":\"bmp max\",\"😀\":\"astral key\"}";

fn python_doc() -> Value {
    json!({
        "z": 1,
        "a": {"y": [true, false, null, 0, -1, u64::MAX, i64::MIN, [], {}], "b": ""},
        "": "empty key",
        "é": "accent", "e": "plain", "Z": "upper",
        // Bytewise UTF-8 order = code point order: U+E000 < U+FFFF < U+1F600.
        // (UTF-16 order, as in JavaScript or Java, would put U+1F600 first.)
        "\u{e000}": "private use", "\u{ffff}": "bmp max", "😀": "astral key",
        "esc": "quote\" backslash\\ slash/ nl\n cr\r tab\t bs\u{8} ff\u{c} nul\u{0} us\u{1f} del\u{7f} ls\u{2028} ps\u{2029}",
        "unicode": "Grüße, 日本語, 🐘, \u{a0}nbsp",
        "nested": {"b": {"d": [1, {"f": "g", "e": "h"}], "c": null}, "a": true},
    })
}

#[test]
fn matches_python_json_dumps() {
    let bytes = canonical_bytes(&python_doc()).unwrap();
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), PYTHON_CANONICAL);
    assert_eq!(bytes.len(), 407, "UTF-8 length as measured by Python");
}

#[test]
fn reparsing_the_canonical_form_is_a_fixed_point() {
    let v = parse_document(PYTHON_CANONICAL).unwrap();
    assert_eq!(v, python_doc());
    assert_eq!(canonical_bytes(&v).unwrap(), PYTHON_CANONICAL.as_bytes());
}

#[test]
fn input_key_order_and_whitespace_do_not_matter() {
    // The same document written with other key orders, whitespace and escapes
    // (\u escapes for plain characters, \/ for '/').
    let text = r#"
      { "nested" : { "a" : true , "b" : { "c" : null , "d" : [ 1 , { "e" : "h" , "f" : "g" } ] } },
        "unicode": "Gr\u00fc\u00dfe, 日本語, \ud83d\udc18, \u00a0nbsp",
        "\ud83d\ude00": "astral key", "\uffff": "bmp max", "\ue000": "private use",
        "Z": "upper", "e": "plain", "\u00e9": "accent",
        "esc": "quote\" backslash\\ slash\/ nl\n cr\r tab\t bs\b ff\f nul\u0000 us\u001F del\u007f ls\u2028 ps\u2029",
        "": "empty key",
        "a": { "b": "", "y": [true, false, null, 0, -1, 18446744073709551615, -9223372036854775808, [], {}] },
        "z": 1
      }
    "#;
    let v = parse_document(text).unwrap();
    assert_eq!(canonical_bytes(&v).unwrap(), PYTHON_CANONICAL.as_bytes());
}

#[test]
fn signature_independent_of_key_order() {
    let doc = common::signed();
    let text = serde_json::to_string(&doc).unwrap();
    let pretty = serde_json::to_string_pretty(&doc).unwrap();
    // Reverse the top-level key order by hand (Map may sort on its own).
    let map = doc.as_object().unwrap();
    let reversed = format!(
        "{{{}}}",
        map.iter()
            .rev()
            .map(|(k, v)| format!(
                "{}: {}",
                serde_json::to_string(k).unwrap(),
                serde_json::to_string(v).unwrap()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let first_key = |t: &str| t.split('"').nth(1).unwrap().to_owned();
    assert_ne!(first_key(&reversed), first_key(&text), "{reversed}");
    let pk = common::key().public_key();
    for t in [&text, &pretty, &reversed] {
        let parsed = parse_document(t).unwrap();
        verify(&parsed, &pk, Some(common::CHALLENGE)).unwrap();
    }
    // Signing is deterministic: the same fields in any order give the same
    // signature.
    let mut rev_fields = serde_json::Map::new();
    for (k, v) in common::fields().into_iter().rev() {
        rev_fields.insert(k, v);
    }
    assert_eq!(common::key().sign_document(rev_fields).unwrap(), doc);
}

/// Independent vector: public key, canonical message and signature computed
/// with Python's `json` and `cryptography` (OpenSSL) from seed 07 * 32 and
/// `common::fields()`.
#[test]
fn golden_vector_from_python() {
    const PUBLIC_KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
    const SIGNATURE: &str = "4009b4fd44e1094d03939ddd9955287d67e117a497a618f842c92806bf9df375\
                             087d0db2a0e6a87e678c378f84f39e28c8c86139895fc46a73fb0afac1619607";
    const CANONICAL: &str = "{\"boot_id\":\"3f1c2a9e-7b44-4c1e-9d0a-1234567890ab\",\
\"challenge\":\"c0ffee0123456789\",\
\"covered_classes\":[\"temp_files\",\"temp_relations\",\"logical_spill\"],\
\"epoch_id\":\"00112233445566778899aabbccddeeff\",\
\"extension\":{\"library_sha256\":\"b718f1354f7247312eca086d9a024afe5fa717ddea5adeddd6f12bcf945b2e8c\",\
\"name\":\"pg_ephcrypt\",\"version\":\"0.1.0\"},\
\"fingerprint\":\"abababababababababababababababababababababababababababababababab\",\
\"format_version\":1,\
\"instance\":{\"cluster_name\":\"prod \\\"eu\\\"\\tüñí 🐘\",\"data_directory\":\"/var/lib/postgresql/15/main\",\
\"port\":5432,\"system_identifier\":\"7312345678901234567\"},\
\"public_key\":\"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c\",\
\"signature_algorithm\":\"ed25519\",\"timestamp\":\"2025-06-01 12:00:00.123456+00\",\
\"verification\":{\"auth_failures\":0,\"balance\":-3,\"files\":12,\"healthy\":true,\"last_error\":null,\"plaintext\":0}}";

    let key = common::key();
    assert_eq!(ephcrypt_attest::to_hex(&key.public_key()), PUBLIC_KEY);
    let doc = common::signed();
    let map = doc.as_object().unwrap();
    let mut expected_msg = DOMAIN_SEPARATOR.to_vec();
    expected_msg.extend_from_slice(CANONICAL.as_bytes());
    assert_eq!(
        String::from_utf8(signed_message(map).unwrap()).unwrap(),
        String::from_utf8(expected_msg).unwrap()
    );
    assert_eq!(map["signature"], SIGNATURE);
    assert_eq!(map["public_key"], PUBLIC_KEY);
    assert_eq!(map["signature_algorithm"], "ed25519");
    assert_eq!(map.len(), common::fields().len() + 3);
}

#[test]
fn domain_separator_is_exact() {
    assert_eq!(DOMAIN_SEPARATOR, b"pg_ephcrypt attestation v1\n");
}

#[test]
fn floats_are_not_canonical() {
    for text in [
        "1.0",
        "0.5",
        "1e3",
        "-0.0",
        "1E-2",
        "[1, 2.0]",
        r#"{"a":{"b":3.25}}"#,
    ] {
        let v = parse_document(text).unwrap();
        assert_eq!(
            canonical_bytes(&v),
            Err(AttestError::NonCanonicalValue),
            "{text}"
        );
    }
    // Integers beyond u64 / below i64 cannot be represented either.
    for text in ["18446744073709551616", "-9223372036854775809"] {
        let v = parse_document(text).unwrap();
        assert_eq!(canonical_bytes(&v), Err(AttestError::NonCanonicalValue));
    }
}

#[test]
fn deep_nesting_is_a_parse_error_not_a_crash() {
    let text = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(matches!(parse_document(&text), Err(AttestError::Json(_))));
}
