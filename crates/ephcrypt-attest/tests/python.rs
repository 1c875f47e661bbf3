//! Cross-check with an independent implementation: the README's Python
//! snippet (`json` + `cryptography`), when python3 with `cryptography` is
//! installed. Without it these tests print a note and check nothing; the
//! hard-coded strings in `tests/canonical.rs` are the Python-free guarantee.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{key, obj, signed, CHALLENGE};
use ephcrypt_attest::to_hex;
use serde_json::{json, Map, Value};

const README: &str = include_str!("../README.md");

/// The first ```python block of the README's "Verifying in Python" section.
fn snippet() -> &'static str {
    let section = README
        .split("## Verifying in Python")
        .nth(1)
        .expect("README has a 'Verifying in Python' section");
    let start = section.find("```python\n").expect("python block") + "```python\n".len();
    let len = section[start..].find("```").expect("end of python block");
    &section[start..start + len]
}

#[test]
fn readme_snippet_is_short() {
    let lines = snippet().lines().count();
    assert!((10..=16).contains(&lines), "{lines} lines");
}

/// Path of the snippet as a script, or `None` (with a note) if python3 with
/// `cryptography` cannot run it.
fn script(name: &str) -> Option<PathBuf> {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import sys, cryptography.hazmat.primitives.asymmetric.ed25519; \
             sys.exit(0 if sys.version_info >= (3, 9) else 1)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        eprintln!(
            "NOTE: python3 (>= 3.9) with `cryptography` not available; \
             Python cross-check SKIPPED (not a pass)"
        );
        return None;
    }
    let dir = std::env::temp_dir().join(format!("ephcrypt-attest-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, snippet()).unwrap();
    Some(path)
}

fn python(script: &PathBuf, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn cleanup(script: PathBuf) {
    std::fs::remove_file(&script).unwrap();
    let _ = std::fs::remove_dir(script.parent().unwrap());
}

#[test]
fn python_accepts_our_documents() {
    let Some(script) = script("accepts") else {
        return;
    };
    let pk = to_hex(&key().public_key());
    let doc = serde_json::to_string(&signed()).unwrap();
    let o = python(&script, &[&pk, CHALLENGE], &doc);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "OK epoch=00112233445566778899aabbccddeeff challenge=c0ffee0123456789 \
         time=2025-06-01 12:00:00.123456+00\n"
    );
    // The \x form of the key, and pretty-printed input.
    let pretty = serde_json::to_string_pretty(&signed()).unwrap();
    let o = python(&script, &[&format!("\\x{pk}")], &pretty);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Documents full of characters that need care: every ASCII character and
    // control character, DEL, line/paragraph separators, BMP and astral
    // characters, as values and as keys, nested.
    let all_ascii: String = (0u8..=0x7f).map(char::from).collect();
    let tricky = [
        all_ascii.clone(),
        "\u{80}\u{a0}\u{ff}\u{100}\u{2028}\u{2029}\u{fffd}\u{fffe}\u{ffff}".into(),
        "😀🐘\u{10ffff}\u{e000}".into(),
        "Grüße 日本語 עברית".into(),
        String::new(),
    ];
    for (i, s) in tricky.iter().enumerate() {
        let mut f = Map::new();
        f.insert(s.clone(), json!(s));
        f.insert(
            format!("k{i}"),
            json!({ s.clone(): [s, i64::MIN, u64::MAX, true, null, {}] , "z": {"y": s}}),
        );
        for c in s.chars().take(40) {
            f.insert(c.to_string(), json!(c.to_string()));
        }
        let doc = key().sign_document(f).unwrap();
        let text = serde_json::to_string(&doc).unwrap();
        let o = python(&script, &[&pk], &text);
        assert!(
            o.status.success(),
            "case {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    cleanup(script);
}

#[test]
fn python_rejects_what_we_reject() {
    let Some(script) = script("rejects") else {
        return;
    };
    let pk = to_hex(&key().public_key());
    let mut tampered = signed();
    tampered["verification"]["plaintext"] = json!(1);
    let mut added = signed();
    obj(&mut added).insert("x".into(), json!(1));
    let mut float = signed();
    float["verification"]["files"] = json!(12.0);
    let dup = serde_json::to_string(&signed())
        .unwrap()
        .replacen('{', "{\"challenge\":\"00\",", 1);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("tampered", tampered.to_string(), vec![&pk]),
        ("added", added.to_string(), vec![&pk]),
        ("float", float.to_string(), vec![&pk]),
        ("duplicate", dup, vec![&pk]),
        ("challenge", signed().to_string(), vec![&pk, "deadbeef"]),
    ];
    for (name, text, args) in cases {
        let o = python(&script, &args, &text);
        assert!(!o.status.success(), "{name}: Python accepted it");
    }
    let other = to_hex(&common::other_key().public_key());
    let o = python(&script, &[&other], &signed().to_string());
    assert!(!o.status.success(), "wrong key: Python accepted it");
    // Sanity: the same script accepts the untampered document.
    let o = python(&script, &[&pk], &signed().to_string());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    cleanup(script);
}

#[test]
fn python_signed_document_verifies_here() {
    // The converse: a document signed by Python (cryptography/OpenSSL) over
    // Python's canonical form verifies with this crate.
    let Some(script) = script("signs") else {
        return;
    };
    let signer = r#"
import json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization as s
sk = Ed25519PrivateKey.from_private_bytes(bytes([7] * 32))
pk = sk.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex()
doc = {"epoch_id": "ab" * 16, "challenge": "0102", "timestamp": "now",
       "nested": {"é": [1, -2, None, True], "\u2028": "x\u0001\"\\/"},
       "signature_algorithm": "ed25519", "public_key": pk}
msg = b"pg_ephcrypt attestation v1\n" + json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
doc["signature"] = sk.sign(msg).hex()
print(json.dumps(doc, indent=2))
"#;
    let path = script.with_file_name("signer.py");
    std::fs::write(&path, signer).unwrap();
    let o = python(&path, &[], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc = ephcrypt_attest::parse_document(&String::from_utf8(o.stdout).unwrap()).unwrap();
    let v = ephcrypt_attest::verify_with_epoch(
        &doc,
        &key().public_key(),
        Some("0102"),
        Some(&"ab".repeat(16)),
    )
    .unwrap();
    assert_eq!(v.timestamp.as_deref(), Some("now"));
    let mut t: Value = doc.clone();
    t["nested"]["é"][1] = json!(-3);
    assert!(ephcrypt_attest::verify(&t, &key().public_key(), None).is_err());
    std::fs::remove_file(&path).unwrap();
    cleanup(script);
}
