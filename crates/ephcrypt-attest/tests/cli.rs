//! The `ephcrypt-verify` binary: exit codes and output.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{key, obj, other_key, signed, CHALLENGE, EPOCH};
use ephcrypt_attest::{sign_certificate, to_hex, CertKind, SigningKey};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ephcrypt-verify");

fn pk_hex() -> String {
    to_hex(&key().public_key())
}

/// Run with `stdin` piped in.
fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit (usage error) before reading: ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// What `psql -At -c "SELECT pg_ephcrypt_attest(...)"` prints: one line of
/// JSON (jsonb output style: spaces after ':' and ',') and a newline.
fn psql_output(doc: &serde_json::Value) -> String {
    let compact = serde_json::to_string(doc).unwrap();
    let spaced = compact.replace("\",\"", "\", \"").replace("\":", "\": ");
    format!("{spaced}\n")
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ephcrypt-verify-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

const OK_LINE: &str = "OK epoch=00112233445566778899aabbccddeeff challenge=c0ffee0123456789 \
                       time=2025-06-01 12:00:00.123456+00 anchor=none\n";

#[test]
fn ok_from_stdin() {
    let text = psql_output(&signed());
    let pk = pk_hex();
    for args in [
        vec!["--public-key", &pk],
        vec!["--public-key", &pk, "-"],
        vec![
            "--public-key",
            &pk,
            "--challenge",
            CHALLENGE,
            "--epoch",
            EPOCH,
        ],
        vec!["--public-key", &pk, "--challenge", CHALLENGE, "--", "-"],
    ] {
        let o = run(&args, &text);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), OK_LINE);
        assert_eq!(stderr(&o), "");
    }
}

#[test]
fn ok_from_file_with_bytea_key_and_inline_options() {
    let path = temp_file("ok.json", &format!("\n\n  {}  \n", psql_output(&signed())));
    let path = path.to_str().unwrap();
    // psql prints bytea as \x...; the key may be pasted like that.
    let bytea_pk = format!("\\x{}", pk_hex().to_uppercase());
    let o = run(
        &[
            &format!("--public-key={bytea_pk}"),
            &format!("--challenge=\\x{CHALLENGE}"),
            path,
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), OK_LINE);
    let path = std::path::Path::new(path);
    std::fs::remove_file(path).unwrap();
    std::fs::remove_dir(path.parent().unwrap()).unwrap();
}

#[test]
fn missing_display_fields_print_dash() {
    let doc = key().sign_document(serde_json::Map::new()).unwrap();
    let o = run(&["--public-key", &pk_hex()], &psql_output(&doc));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "OK epoch=- challenge=- time=- anchor=none\n");
}

fn assert_failed(o: &Output, reason: &str) {
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(o));
    assert_eq!(stdout(o), "");
    let err = stderr(o);
    assert!(err.starts_with("FAILED: "), "{err}");
    assert!(err.contains(reason), "expected {reason:?} in {err:?}");
}

#[test]
fn tampered_document_fails() {
    let mut t = signed();
    t["verification"]["plaintext"] = json!(1);
    let o = run(&["--public-key", &pk_hex()], &psql_output(&t));
    assert_failed(&o, "signature does not verify");

    let mut t = signed();
    obj(&mut t).insert("note".into(), json!("added"));
    let o = run(&["--public-key", &pk_hex()], &psql_output(&t));
    assert_failed(&o, "signature does not verify");

    let mut t = signed();
    obj(&mut t).remove("signature");
    let o = run(&["--public-key", &pk_hex()], &psql_output(&t));
    assert_failed(&o, "missing field `signature`");
}

#[test]
fn wrong_challenge_fails() {
    let o = run(
        &["--public-key", &pk_hex(), "--challenge", "deadbeef"],
        &psql_output(&signed()),
    );
    assert_failed(&o, "challenge does not match");
}

#[test]
fn wrong_epoch_fails() {
    let o = run(
        &[
            "--public-key",
            &pk_hex(),
            "--epoch",
            "ffeeddccbbaa99887766554433221100",
        ],
        &psql_output(&signed()),
    );
    assert_failed(&o, "another epoch");
}

#[test]
fn wrong_key_fails() {
    let other = to_hex(&other_key().public_key());
    let o = run(&["--public-key", &other], &psql_output(&signed()));
    assert_failed(&o, "differs from the expected public key");
}

#[test]
fn bad_documents_fail() {
    let pk = pk_hex();
    for (text, reason) in [
        ("", "invalid JSON"),
        ("not json", "invalid JSON"),
        ("[1,2]", "not a JSON object"),
        ("{\"a\":1,\"a\":2}", "duplicate key"),
        (
            "{\"signature_algorithm\":\"ed25519\",\"x\":1.5}",
            "missing field",
        ),
    ] {
        let o = run(&["--public-key", &pk], text);
        assert_failed(&o, reason);
    }
    let text = psql_output(&signed()).replace("\"files\": 12", "\"files\": 12.0");
    assert!(text.contains("12.0"));
    assert_failed(&run(&["--public-key", &pk], &text), "non-integer number");
}

#[test]
fn usage_errors_exit_2() {
    let pk = pk_hex();
    let doc = psql_output(&signed());
    let missing = std::env::temp_dir().join(format!(
        "ephcrypt-verify-absent-{}/doc.json",
        std::process::id()
    ));
    let missing = missing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "--public-key or --anchor is required"),
        (
            vec!["--challenge", CHALLENGE],
            "--public-key or --anchor is required",
        ),
        (
            vec!["--anchor", "abcd"],
            "neither 64 hex digits nor a readable file",
        ),
        (
            vec!["--anchor", "/etc/hostname"],
            "not an Ed25519 PEM public key",
        ),
        (vec!["--public-key"], "needs a value"),
        (vec!["--public-key", &pk, "--challenge"], "needs a value"),
        (
            vec!["--public-key", "xyz"],
            "`--public-key` is not valid hex",
        ),
        (vec!["--public-key", "abcd"], "must be 32 bytes"),
        (
            vec!["--public-key", &pk, "--challenge", "xyz"],
            "`--challenge` is not valid hex",
        ),
        (
            vec!["--public-key", &pk, "--epoch", "nothex"],
            "`--epoch` is not valid hex",
        ),
        (
            vec!["--public-key", &pk, "--verbose"],
            "unknown option --verbose",
        ),
        (
            vec!["--public-key", &pk, "--public-key", &pk],
            "given twice",
        ),
        (
            vec!["--public-key", &pk, "a.json", "b.json"],
            "more than one input",
        ),
        (vec!["--public-key", &pk, missing], "cannot read"),
    ];
    for (args, reason) in cases {
        let o = run(&args, &doc);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
        assert!(stderr(&o).contains(reason), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_exits_0() {
    for flag in ["-h", "--help"] {
        let o = run(&[flag], "");
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).starts_with("usage: ephcrypt-verify (--public-key"));
    }
}

/// An anchored document: anchor -> instance certificate -> epoch
/// certificate -> document signed by `key()`.
fn anchored(anchor: &SigningKey) -> serde_json::Value {
    let instance = SigningKey::from_seed([0x31; 32]).unwrap();
    let mut f = common::fields();
    let ident =
        json!({"system_identifier": "1", "boot_id": "b", "hostname": "h", "postmaster_pid": 7});
    for (k, v) in ident.as_object().unwrap() {
        f.insert(k.clone(), v.clone());
    }
    let mut ic = ident.as_object().unwrap().clone();
    ic.insert(
        "instance_public_key".into(),
        json!(to_hex(&instance.public_key())),
    );
    let ic = sign_certificate(anchor, CertKind::Instance, ic).unwrap();
    let ec = json!({
        "epoch_id": EPOCH,
        "epoch_public_key": to_hex(&key().public_key()),
        "epoch_created_at": "then",
        "restarts": 0,
    });
    let ec = sign_certificate(&instance, CertKind::Epoch, ec.as_object().unwrap().clone()).unwrap();
    f.insert("epoch_created_at".into(), json!("then"));
    f.insert("anchored".into(), json!(true));
    f.insert("instance_certificate".into(), ic);
    f.insert("epoch_certificate".into(), ec);
    key().sign_document(f).unwrap()
}

#[test]
fn anchor_option() {
    let anchor = SigningKey::from_seed([0x30; 32]).unwrap();
    let apk = to_hex(&anchor.public_key());
    let doc = psql_output(&anchored(&anchor));
    // Its own directory: another test removes temp_file()'s.
    let dir = std::env::temp_dir().join(format!("ephcrypt-verify-anchor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("anchor.pub");
    std::fs::write(
        &pem,
        ephcrypt_attest::anchor::public_key_pem(&anchor.public_key()),
    )
    .unwrap();
    for a in [apk.clone(), pem.to_str().unwrap().to_owned()] {
        let o = run(
            &["--anchor", &a, "--challenge", CHALLENGE, "--epoch", EPOCH],
            &doc,
        );
        assert_eq!(o.status.code(), Some(0), "{a}: {}", stderr(&o));
        assert!(stdout(&o).ends_with(" anchor=verified\n"), "{}", stdout(&o));
    }
    // Both options: the certified epoch key must be the given one.
    let pk = pk_hex();
    assert_eq!(
        run(&["--anchor", &apk, "--public-key", &pk], &doc)
            .status
            .code(),
        Some(0)
    );
    let other = to_hex(&other_key().public_key());
    let o = run(&["--anchor", &apk, "--public-key", &other], &doc);
    assert_eq!(o.status.code(), Some(1));
    // Without --anchor an anchored document verifies, but says so.
    let o = run(&["--public-key", &pk], &doc);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).ends_with(" anchor=not-checked\n"),
        "{}",
        stdout(&o)
    );
    // Wrong anchor; an unanchored document under --anchor.
    let wrong = to_hex(&other_key().public_key());
    let o = run(&["--anchor", &wrong], &doc);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another anchor key"), "{}", stderr(&o));
    let o = run(&["--anchor", &apk], &psql_output(&signed()));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not anchored"), "{}", stderr(&o));
    // Tampered after signing.
    let o = run(
        &["--anchor", &apk],
        &doc.replace("\"plaintext\": 0", "\"plaintext\": 1"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}
