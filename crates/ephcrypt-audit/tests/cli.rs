//! `ephcrypt-audit` on synthetic data directories: output and exit codes
//! (0 clean, 1 findings, 2 usage or not auditable), each finding with a clean
//! control.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ephcrypt_format::{EpochKey, FileCipher, FileName};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ephcrypt-audit");
const EPOCH: [u8; 16] = [0xab; 16];

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A fresh directory per test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ephcrypt-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A minimal data directory with one sealed temp file, one sealed temporary
/// relation, an empty temp file and a durable (uncovered) relation file.
fn data_dir(parent: &Path) -> PathBuf {
    let dd = parent.join("data");
    for d in [
        "base/5",
        "base/pgsql_tmp",
        "global",
        "pg_replslot/slot1",
        "pg_tblspc",
    ] {
        std::fs::create_dir_all(dd.join(d)).unwrap();
    }
    std::fs::write(dd.join("PG_VERSION"), "15\n").unwrap();
    let mut control = 7_312_345_678_901_234_567u64.to_le_bytes().to_vec();
    control.resize(8192, 0);
    std::fs::write(dd.join("global/pg_control"), control).unwrap();
    seal(
        &dd.join("base/pgsql_tmp/pgsql_tmp100.0"),
        0,
        b"pgsql_tmp100.0",
    );
    seal(&dd.join("base/5/t3_16384"), 1, b"5/t3_16384");
    std::fs::write(dd.join("base/pgsql_tmp/pgsql_tmp100.1"), b"").unwrap();
    std::fs::write(dd.join("base/5/16384"), b"durable data is not audited").unwrap();
    dd
}

/// A file with a genuine v2 header, as the shims write it (page 0 plus one
/// data block).
fn seal(path: &Path, class: u8, name: &[u8]) {
    let key = EpochKey::from_bytes([7; 32]);
    let name = FileName::new(class, name).unwrap();
    let (_, header) = FileCipher::create(&key, &EPOCH, &[9; 16], &name).unwrap();
    let mut bytes = header.to_vec();
    bytes.resize(8192 + 100, 0x5a);
    std::fs::write(path, bytes).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn entry<'a>(report: &'a Value, path: &str) -> &'a Value {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {report}"))
}

#[test]
fn clean_copy_exits_0() {
    let dd = data_dir(&scratch("clean"));
    let o = run(&[s(&dd)]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.contains("result: clean"), "{text}");
    assert!(
        text.contains(&format!("epoch {}", "ab".repeat(16))),
        "{text}"
    );
    assert!(
        text.contains("system identifier 7312345678901234567"),
        "{text}"
    );
    assert!(
        !text.contains("base/5/16384"),
        "durable files are not covered: {text}"
    );

    let j = json(&run(&["--json", s(&dd)]));
    assert_eq!(j["result"], "clean");
    assert_eq!(j["findings"], 0);
    assert_eq!(j["summary"]["sealed"], 2);
    assert_eq!(j["summary"]["empty"], 1);
    assert_eq!(j["epochs"]["ab".repeat(16)], 2);
    assert_eq!(j["pg_version"], "15");
    let e = entry(&j, "base/pgsql_tmp/pgsql_tmp100.0");
    assert_eq!(e["status"], "sealed");
    assert_eq!(e["class"], "temp_files");
    assert_eq!(e["size"], 8292);
    assert_eq!(e["logical_size"], 100);
    assert_eq!(entry(&j, "base/5/t3_16384")["class"], "temp_relations");
    assert_eq!(
        entry(&j, "base/pgsql_tmp/pgsql_tmp100.1")["status"],
        "empty"
    );
}

#[test]
fn planted_plaintext_exits_1() {
    let dd = data_dir(&scratch("plain"));
    std::fs::write(
        dd.join("pg_replslot/slot1/xid-740-lsn-0-1000000.spill"),
        b"TENANT ROW",
    )
    .unwrap();
    let o = run(&["--json", s(&dd)]);
    assert_eq!(code(&o), 1);
    let j = json(&o);
    assert_eq!(j["result"], "findings");
    assert_eq!(j["findings"], 1);
    let e = entry(&j, "pg_replslot/slot1/xid-740-lsn-0-1000000.spill");
    assert_eq!(e["status"], "plaintext");
    assert_eq!(e["class"], "logical_spill");
    assert_eq!(e["logical_size"], 10);
    let text = stdout(&run(&[s(&dd)]));
    assert!(text.contains("result: FINDINGS (1)"), "{text}");
}

#[test]
fn planted_fifo_and_symlink_exit_1() {
    let dd = data_dir(&scratch("fifo"));
    let fifo = dd.join("base/pgsql_tmp/pgsql_tmp200.0");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // The audit never opens a FIFO for reading (it would block): it must
    // return at all.
    let j = json(&run(&["--json", s(&dd)]));
    assert_eq!(
        entry(&j, "base/pgsql_tmp/pgsql_tmp200.0")["status"],
        "unexpected"
    );
    assert_eq!(entry(&j, "base/pgsql_tmp/pgsql_tmp200.0")["kind"], "fifo");
    std::fs::remove_file(&fifo).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &fifo).unwrap();
    let o = run(&["--json", s(&dd)]);
    assert_eq!(code(&o), 1);
    let j = json(&o);
    assert_eq!(
        entry(&j, "base/pgsql_tmp/pgsql_tmp200.0")["kind"],
        "symlink"
    );
    std::fs::remove_file(&fifo).unwrap();
    assert_eq!(code(&run(&[s(&dd)])), 0, "control: removed again");
}

#[test]
fn damaged_headers_and_unlistable_directories_are_unreadable() {
    let dd = data_dir(&scratch("unreadable"));
    let f = dd.join("base/pgsql_tmp/pgsql_tmp100.0");
    let good = std::fs::read(&f).unwrap();
    let mut v1 = good.clone();
    v1[8] = 1; // format version 1
    std::fs::write(&f, &v1).unwrap();
    let j = json(&run(&["--json", s(&dd)]));
    let e = entry(&j, "base/pgsql_tmp/pgsql_tmp100.0");
    assert_eq!(e["status"], "unreadable");
    assert!(e["detail"].as_str().unwrap().contains("version 1"), "{e}");
    std::fs::write(&f, &good[..100]).unwrap(); // cut inside page 0
    let o = run(&["--json", s(&dd)]);
    assert_eq!(code(&o), 1);
    assert_eq!(
        entry(&json(&o), "base/pgsql_tmp/pgsql_tmp100.0")["status"],
        "unreadable"
    );
    std::fs::write(&f, &good).unwrap();
    assert_eq!(code(&run(&[s(&dd)])), 0, "control: restored");

    // A directory the walk must list but cannot: the copy is not clean.
    std::fs::remove_dir_all(dd.join("pg_replslot")).unwrap();
    std::fs::write(dd.join("pg_replslot"), b"").unwrap();
    let o = run(&["--json", s(&dd)]);
    assert_eq!(code(&o), 1);
    let j = json(&o);
    let e = entry(&j, "pg_replslot");
    assert_eq!(e["status"], "unreadable");
    assert_eq!(e["kind"], "directory");
}

#[test]
fn tablespaces_outside_the_copy_are_findings_unless_rebased() {
    // A volume copy at `snap`: the data directory and a tablespace at their
    // original absolute paths below it; the link names the original path.
    let snap = scratch("ts");
    let dd = data_dir(&snap.join("var/lib/postgresql/15"));
    let loc = snap.join("srv/ts1/PG_15_202209061");
    std::fs::create_dir_all(loc.join("pgsql_tmp")).unwrap();
    seal(&loc.join("pgsql_tmp/pgsql_tmp300.0"), 0, b"pgsql_tmp300.0");
    std::os::unix::fs::symlink("/srv/ts1", dd.join("pg_tblspc/16500")).unwrap();

    let o = run(&[s(&dd)]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("pg_tblspc/16500 -> /srv/ts1: NOT AUDITED"),
        "{}",
        stdout(&o)
    );

    let o = run(&["--json", "--root", s(&snap), s(&dd)]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let j = json(&o);
    let e = entry(
        &j,
        "pg_tblspc/16500/PG_15_202209061/pgsql_tmp/pgsql_tmp300.0",
    );
    assert_eq!(e["status"], "sealed");
    assert_eq!(j["tablespaces"][0]["target"], "/srv/ts1");

    // A plaintext file in the tablespace is found through --root.
    std::fs::write(loc.join("pgsql_tmp/pgsql_tmp300.1"), b"clear").unwrap();
    let o = run(&["--json", &format!("--root={}", s(&snap)), s(&dd)]);
    assert_eq!(code(&o), 1);
    assert_eq!(
        entry(
            &json(&o),
            "pg_tblspc/16500/PG_15_202209061/pgsql_tmp/pgsql_tmp300.1"
        )["status"],
        "plaintext"
    );
}

#[test]
fn usage_and_unauditable_directories_exit_2() {
    let parent = scratch("usage");
    let dd = data_dir(&parent);
    let other = scratch("usage-other");
    for args in [
        vec![],
        vec!["--frobnicate", s(&dd)],
        vec![s(&dd), s(&dd)],
        vec!["--root"],
        vec!["--root", s(&parent), "--root", s(&parent), s(&dd)],
        vec!["/nonexistent/data"],
        vec![s(&parent)],                  // no PG_VERSION
        vec!["--root", s(&other), s(&dd)], // data directory not inside the root
        vec!["--root", "/nonexistent", s(&dd)],
    ] {
        let o = run(&args);
        assert_eq!(
            code(&o),
            2,
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let o = run(&["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("usage: ephcrypt-audit"));
    assert_eq!(
        stdout(&run(&["--version"])),
        format!("ephcrypt-audit {}\n", env!("CARGO_PKG_VERSION"))
    );
    // `--` ends the options.
    assert_eq!(code(&run(&["--", s(&dd)])), 0);
}

/// pg_wal is audited only when the copy shows the `wal` class was on (a WAL
/// file with pg_ephcrypt's magic): then a plaintext segment is a finding.
/// Without any sealed WAL file, plaintext segments are durable WAL (control:
/// the same plaintext segment, no finding).
#[test]
fn wal_is_audited_where_sealed_wal_is_present() {
    let dd = data_dir(&scratch("wal"));
    let wal = dd.join("pg_wal");
    std::fs::create_dir_all(wal.join("archive_status")).unwrap();
    std::fs::write(
        wal.join("000000010000000000000002"),
        b"plaintext WAL record bytes",
    )
    .unwrap();
    std::fs::write(wal.join("00000001.history"), b"not a WAL file").unwrap();

    // Control: durable WAL only, not audited, clean.
    let o = run(&["--json", s(&dd)]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(j["wal"]["audited"], false);
    assert_eq!(j["wal"]["files"], 1);
    assert!(
        j["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["path"].as_str().unwrap().starts_with("pg_wal")),
        "{j}"
    );
    let text = stdout(&run(&[s(&dd)]));
    assert!(text.contains("none sealed"), "{text}");

    // A sealed segment next to it: the class was on, the plaintext one is a finding.
    seal(&wal.join("000000010000000000000003"), 3, b"pg_wal");
    let o = run(&["--json", s(&dd)]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(j["wal"]["audited"], true);
    assert_eq!(j["wal"]["files"], 2);
    let plain = entry(&j, "pg_wal/000000010000000000000002");
    assert_eq!(plain["status"], "plaintext");
    assert_eq!(plain["class"], "wal");
    let sealed = entry(&j, "pg_wal/000000010000000000000003");
    assert_eq!(sealed["status"], "sealed");
    assert_eq!(sealed["epoch_id"], "ab".repeat(16));
    assert!(
        j["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["path"] != "pg_wal/00000001.history"),
        "history files are not WAL segments: {j}"
    );

    // Sealed only: clean, both sealed files counted.
    std::fs::remove_file(wal.join("000000010000000000000002")).unwrap();
    seal(&wal.join("000000010000000000000004.partial"), 3, b"pg_wal");
    let o = run(&["--json", s(&dd)]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(j["summary"]["sealed"], 4);
    assert_eq!(j["wal"]["files"], 2);
    let text = stdout(&run(&[s(&dd)]));
    assert!(text.contains("sealed WAL present"), "{text}");
}
