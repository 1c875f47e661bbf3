//! Shared fixtures: a fixed key and a realistic document.
#![allow(dead_code)]

use ephcrypt_attest::SigningKey;
use serde_json::{json, Map, Value};

pub const SEED: [u8; 32] = [7; 32];
pub const OTHER_SEED: [u8; 32] = [8; 32];
pub const EPOCH: &str = "00112233445566778899aabbccddeeff";
pub const CHALLENGE: &str = "c0ffee0123456789";

pub fn key() -> SigningKey {
    SigningKey::from_seed(SEED).unwrap()
}

pub fn other_key() -> SigningKey {
    SigningKey::from_seed(OTHER_SEED).unwrap()
}

/// Fields shaped like `pg_ephcrypt_attest()`'s, with nesting, unicode and
/// characters that need escaping.
pub fn fields() -> Map<String, Value> {
    let v = json!({
        "format_version": 1,
        "instance": {
            "system_identifier": "7312345678901234567",
            "data_directory": "/var/lib/postgresql/15/main",
            "port": 5432,
            "cluster_name": "prod \"eu\"\tüñí 🐘",
        },
        "boot_id": "3f1c2a9e-7b44-4c1e-9d0a-1234567890ab",
        "epoch_id": EPOCH,
        "fingerprint": "ab".repeat(32),
        "extension": {
            "name": "pg_ephcrypt",
            "version": "0.1.0",
            "library_sha256": ephcrypt_attest::sha256_hex(b"library"),
        },
        "covered_classes": ["temp_files", "temp_relations", "logical_spill"],
        "verification": {
            "files": 12,
            "plaintext": 0,
            "auth_failures": 0,
            "healthy": true,
            "last_error": null,
            "balance": -3,
        },
        "challenge": CHALLENGE,
        "timestamp": "2025-06-01 12:00:00.123456+00",
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

pub fn signed() -> Value {
    key().sign_document(fields()).unwrap()
}

pub fn obj(v: &mut Value) -> &mut Map<String, Value> {
    v.as_object_mut().unwrap()
}

/// JSON pointers of every value below the root (objects, arrays and leaves).
pub fn all_pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    walk(child, &p, out);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    walk(child, &p, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// A different value of the same JSON type (or null for null's).
pub fn mutate(v: &mut Value) {
    match v {
        Value::Null => *v = json!(0),
        Value::Bool(b) => *b = !*b,
        Value::Number(n) => *v = json!(n.as_i64().unwrap() + 1),
        Value::String(s) => {
            // Flip one character, keeping the length (and hex-ness) where possible.
            let mut chars: Vec<char> = s.chars().collect();
            match chars.first_mut() {
                Some(c) => *c = if *c == '0' { '1' } else { '0' },
                None => chars.push('0'),
            }
            *s = chars.into_iter().collect();
        }
        Value::Array(a) => a.push(json!(null)),
        Value::Object(m) => {
            m.insert("extra".into(), json!(null));
        }
    }
}
