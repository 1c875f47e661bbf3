//! Canonical JSON (README "Canonical form") and a strict document parser.
//!
//! Canonical form: object keys sorted bytewise (= by Unicode code point) at
//! every level, no whitespace, integers only, strings escaped as serde_json
//! escapes them, UTF-8. This equals Python's
//! `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
//! for strings, integers, booleans, null, arrays and objects.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{AttestError, Result};

/// Domain-separation prefix of the signed bytes.
pub const DOMAIN_SEPARATOR: &[u8] = b"pg_ephcrypt attestation v1\n";

/// The one field the signature does not cover.
pub const SIGNATURE_FIELD: &str = "signature";

/// Canonical bytes of `value`.
///
/// # Errors
/// [`AttestError::NonCanonicalValue`] if `value` contains a number that is not
/// an `i64`/`u64` integer.
pub fn canonical_bytes(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    write_value(&mut out, value)?;
    Ok(out)
}

/// The bytes an attestation signature covers: [`DOMAIN_SEPARATOR`] followed by
/// the canonical bytes of `document` without its `signature` key.
///
/// # Errors
/// As [`canonical_bytes`].
pub fn signed_message(document: &Map<String, Value>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(DOMAIN_SEPARATOR);
    write_object(&mut out, document, Some(SIGNATURE_FIELD))?;
    Ok(out)
}

/// The bytes a certificate signature covers: `domain` followed by the
/// canonical bytes of `object` without its `signature` key (the same rule as
/// [`signed_message`], under another domain-separation prefix).
///
/// # Errors
/// As [`canonical_bytes`].
pub fn signed_message_in(domain: &[u8], object: &Map<String, Value>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(domain);
    write_object(&mut out, object, Some(SIGNATURE_FIELD))?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // Decimal digits with an optional '-': the same text as Python's
            // int.__repr__. Anything else (f64, or an arbitrary-precision
            // number outside i64/u64) is refused.
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(AttestError::NonCanonicalValue);
            }
        }
        Value::String(s) => write_string(out, s)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map, None)?,
    }
    Ok(())
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>, skip: Option<&str>) -> Result<()> {
    // Sort here rather than trusting the map's iteration order: with serde_json's
    // `preserve_order` feature (which any crate in a build may switch on) `Map`
    // iterates in insertion order.
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key)?;
        out.push(b':');
        write_value(out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// serde_json's string escaping: `"` and `\` backslash-escaped; U+0008, U+0009,
/// U+000A, U+000C, U+000D as `\b \t \n \f \r`; other U+0000..U+001F as
/// `\u00xx` (lowercase hex); everything else (including U+007F and non-ASCII)
/// verbatim as UTF-8. Python's `json` (with `ensure_ascii=False`) does the same.
fn write_string(out: &mut Vec<u8>, s: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, s).map_err(|e| AttestError::Json(e.to_string()))
}

/// Parse the text of a document strictly: surrounding whitespace is ignored;
/// trailing data, invalid JSON and duplicate object keys (at any level) are
/// errors. Duplicate keys are refused because JSON parsers disagree about which
/// duplicate wins, so a verifier and a human reader could see different values.
///
/// Floats are parsed (and rejected later by canonicalization with
/// [`AttestError::NonCanonicalValue`]).
///
/// # Errors
/// [`AttestError::Json`].
pub fn parse_document(text: &str) -> Result<Value> {
    let text = text.trim();
    // Two passes: serde_json builds the value (whatever serde_json features
    // the build has switched on), and a key-only pass looks for duplicates.
    let value: Value = serde_json::from_str(text).map_err(|e| AttestError::Json(e.to_string()))?;
    let mut de = serde_json::Deserializer::from_str(text);
    NoDuplicateKeys::deserialize(&mut de).map_err(|e| AttestError::Json(e.to_string()))?;
    Ok(value)
}

/// Deserializes any JSON value, keeping nothing, and fails on a duplicate key
/// in any object.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicatesVisitor)?;
        Ok(Self)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = access.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            access.next_value::<NoDuplicateKeys>()?;
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn canon(v: &Value) -> String {
        String::from_utf8(canonical_bytes(v).unwrap()).unwrap()
    }

    #[test]
    fn scalars() {
        assert_eq!(canon(&json!(null)), "null");
        assert_eq!(canon(&json!(true)), "true");
        assert_eq!(canon(&json!(false)), "false");
        assert_eq!(canon(&json!(0)), "0");
        assert_eq!(canon(&json!(-42)), "-42");
        assert_eq!(canon(&json!(i64::MIN)), "-9223372036854775808");
        assert_eq!(canon(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(canon(&json!("")), "\"\"");
        assert_eq!(canon(&json!([])), "[]");
        assert_eq!(canon(&json!({})), "{}");
    }

    #[test]
    fn floats_rejected_anywhere() {
        for v in [
            json!(1.5),
            json!(1.0),
            json!([1, 2.5]),
            json!({"a": {"b": [0.1]}}),
        ] {
            assert_eq!(canonical_bytes(&v), Err(AttestError::NonCanonicalValue));
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(
            canon(&json!(
                "q\"b\\s/\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}\u{2028}é😀"
            )),
            "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}\u{2028}é😀\""
        );
    }

    #[test]
    fn keys_sorted_bytewise_at_every_level() {
        let v =
            json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "Z": null}, "é": 0, "e": 0, "A": 0});
        assert_eq!(
            canon(&v),
            r#"{"A":0,"a":{"Z":null,"z":[{"x":2,"y":1}]},"b":1,"e":0,"é":0}"#
        );
    }

    #[test]
    fn signed_message_skips_only_top_level_signature() {
        let v = json!({"signature": "x", "a": {"signature": "kept"}});
        let msg = signed_message(v.as_object().unwrap()).unwrap();
        assert_eq!(
            msg,
            b"pg_ephcrypt attestation v1\n{\"a\":{\"signature\":\"kept\"}}"
        );
    }

    #[test]
    fn strict_parse() {
        assert_eq!(
            parse_document(" \n{\"a\":[1,{\"b\":null}]}\n ").unwrap(),
            json!({"a": [1, {"b": null}]})
        );
        for bad in [
            r#"{"a":1,"a":1}"#,
            r#"{"x":{"a":1,"a":2}}"#,
            r#"[{"a":1,"a":2}]"#,
            r#"{"a":1} {"b":2}"#,
            r#"{"a":1}x"#,
            "",
            "{",
            "NaN",
            r#"{"a":"\ud800"}"#,
        ] {
            assert!(
                matches!(parse_document(bad), Err(AttestError::Json(_))),
                "{bad:?}"
            );
        }
        // Floats parse, then fail canonicalization.
        let v = parse_document(r#"{"a":1e2}"#).unwrap();
        assert_eq!(canonical_bytes(&v), Err(AttestError::NonCanonicalValue));
    }
}
