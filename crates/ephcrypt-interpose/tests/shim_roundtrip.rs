//! The shims, installed into this test binary's own GOT, against a fake data
//! directory: Rust's std calls open64/pread64/pwrite64/lseek64/ftruncate64
//! through the executable's GOT just as PostgreSQL calls open/pread/pwrite.
//! Raw bytes are read back with direct syscalls, which no shim can see.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use common::*;
use ephcrypt_classify::ArtifactClass;
use ephcrypt_interpose::shim::{self, Config};
use ephcrypt_interpose::stats::{self, Counter};

#[test]
fn install_patches_every_imported_shim_and_only_once() {
    let (_dir, report, _g) = setup();
    let patch = &report.patch;
    assert!(patch.is_patched("open64"), "std opens files with open64");
    assert!(patch.is_patched("pwrite64") && patch.is_patched("pread64"));
    // Every shim whose symbol this binary imports is patched.
    let imports = ephcrypt_got::executable_imports().unwrap();
    for (name, _) in shim::shim_table() {
        if imports.iter().any(|i| i == name) {
            assert!(patch.is_patched(name), "{name} imported but not patched");
        }
    }
    assert!(patch.is_patched("fsync"), "std's sync_all calls fsync");
    // A second install in the same process is refused.
    assert!(shim::install(Config {
        data_dir: Vec::new(),
        io_uring_in_use: false,
        allow_extra: RUST_STD_IMPORTS.to_vec(),
    })
    .is_err());
}

// One test function: the GOT of this process is patched once.
#[test]
fn shims_seal_covered_files_and_pass_others_through() {
    let (dir, _report, _g) = setup();
    let counts_before = stats::snapshot(ArtifactClass::TempFiles);

    // --- a temp file: random-offset writes and reads against a model -------
    let path = dir.join("base/pgsql_tmp/pgsql_tmp4242.0");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    assert_eq!(shim::open_covered_files(), 1);
    let mut model: Vec<u8> = Vec::new();
    let writes = [
        (0u64, 8192usize),
        (253_952, 1099),
        (255_051, 8192),
        (5, 3),
        (8190, 20000),
        (100_000, 1),
    ];
    for (i, (off, len)) in writes.iter().enumerate() {
        let data = payload(*len, i as u64);
        f.write_all_at(&data, *off).unwrap();
        let end = *off as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[*off as usize..end].copy_from_slice(&data);
    }
    // Logical size through fstat and lseek(SEEK_END). (std's metadata()
    // uses statx, which PostgreSQL never calls; ask fstat directly.)
    assert_eq!(fstat_size(&f), model.len() as u64);
    let mut g = &f;
    assert_eq!(g.seek(SeekFrom::End(0)).unwrap(), model.len() as u64);
    // Unaligned 8 KiB reads across the whole file, including a short read at EOF.
    let mut off = 0u64;
    while off < model.len() as u64 + 10 {
        let mut buf = vec![0u8; 8192];
        let n = f.read_at(&mut buf, off).unwrap();
        let want = &model[(off as usize).min(model.len())..(off as usize + 8192).min(model.len())];
        assert_eq!(&buf[..n], want, "read at {off}");
        off += 4099;
    }
    // ftruncate at an arbitrary byte, then extend: the gap reads as zeros.
    f.set_len(123_457).unwrap();
    model.truncate(123_457);
    f.set_len(140_000).unwrap();
    model.resize(140_000, 0);
    let mut all = vec![0u8; model.len() + 100];
    let n = f.read_at(&mut all, 0).unwrap();
    assert_eq!(&all[..n], &model[..]);

    // On disk: the header, and no plaintext anywhere.
    let raw = raw_bytes(&path);
    assert_eq!(&raw[..8], b"PGEPHCR\0");
    assert!(!contains(&raw, MARKER), "plaintext marker on disk");
    assert!(raw.len() > model.len());
    // stat() by path reports the logical size too.
    assert_eq!(stat_size(&path), model.len() as u64);

    // --- tampering: one flipped byte -> EIO on the block, never bytes ------
    // Data block 1 of format v2 lies at physical page 2.
    let at = ephcrypt_format::layout::data_offset(1) as usize + 50;
    raw_write_at(&path, at as u64, &[raw[at] ^ 1]);
    let mut buf = vec![0u8; 100];
    let err = f.read_at(&mut buf, 8192 + 10).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // Other blocks still read fine.
    let n = f.read_at(&mut buf, 10).unwrap();
    assert_eq!(&buf[..n], &model[10..110]);
    drop(f);
    assert_eq!(shim::open_covered_files(), 0, "close forgets the fd");
    let after = stats::snapshot(ArtifactClass::TempFiles);
    let counts: Vec<u64> = after
        .iter()
        .zip(counts_before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(counts[Counter::FilesOpened as usize], 1);
    assert_eq!(counts[Counter::FilesCreated as usize], 1);
    assert!(
        counts[Counter::BytesSealed as usize] >= writes.iter().map(|w| w.1 as u64).sum::<u64>()
    );
    assert!(counts[Counter::BytesOpened as usize] > 0);
    assert_eq!(
        counts[Counter::AuthFailures as usize],
        1,
        "the tampered read"
    );

    // --- reopen (as PostgreSQL's VFD cache does) and read again ------------
    let mut f = OpenOptions::new().read(true).open(&path).unwrap();
    let mut head = vec![0u8; 8192];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head, model[..8192]);
    drop(f);

    // --- O_APPEND (logical-decoding spill style) -----------------------------
    let spill = dir.join("pg_replslot/s1/xid-700-lsn-0-1000000.spill");
    let mut appended = Vec::new();
    for round in 0..3 {
        let mut a = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spill)
            .unwrap();
        for i in 0..50 {
            let rec = payload(37 + (i * 13) % 300, round * 100 + i as u64);
            a.write_all(&rec).unwrap();
            appended.extend_from_slice(&rec);
        }
    }
    let back = fs::read(&spill).unwrap();
    assert_eq!(back, appended);
    assert!(!contains(&raw_bytes(&spill), MARKER));

    // Small appends are held back until a block fills (write-back), and any
    // covered open or read in this process sees them.
    let mut a = OpenOptions::new().append(true).open(&spill).unwrap();
    let before = raw_bytes(&spill).len();
    let rec = payload(100, 7);
    for _ in 0..5 {
        a.write_all(&rec).unwrap();
        appended.extend_from_slice(&rec);
    }
    assert_eq!(
        raw_bytes(&spill).len(),
        before,
        "appends are buffered, not sealed one by one"
    );
    // fsync seals the buffered tail.
    a.sync_all().unwrap();
    assert_eq!(
        ephcrypt_format::physical_to_logical_size(raw_bytes(&spill).len() as u64).unwrap(),
        appended.len() as u64,
        "fsync flushed the append tail"
    );
    a.write_all(&rec).unwrap();
    appended.extend_from_slice(&rec);
    assert_eq!(
        fs::read(&spill).unwrap(),
        appended,
        "a reader in this process sees buffered appends"
    );
    let big = payload(20_000, 8);
    a.write_all(&big).unwrap();
    appended.extend_from_slice(&big);
    drop(a);
    assert_eq!(fs::read(&spill).unwrap(), appended);
    let raw = raw_bytes(&spill);
    assert!(!contains(&raw, MARKER));
    assert_eq!(
        ephcrypt_format::physical_to_logical_size(raw.len() as u64).unwrap(),
        appended.len() as u64
    );

    // --- a temp relation with O_EXCL create --------------------------------
    let rel = dir.join("base/5/t3_16384");
    let r = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(&rel)
        .unwrap();
    let page_data = payload(8192, 99);
    r.write_all_at(&page_data, 8192 * 3).unwrap();
    let mut p = vec![1u8; 8192];
    assert_eq!(r.read_at(&mut p, 0).unwrap(), 8192);
    assert!(
        p.iter().all(|&b| b == 0),
        "a gap before a written page reads as zeros"
    );
    assert_eq!(r.read_at(&mut p, 8192 * 3).unwrap(), 8192);
    assert_eq!(p, page_data);
    let raw_rel = raw_bytes(&rel);
    // No physical block is all zeros: gaps are sealed zero blocks, not holes.
    for chunk in raw_rel.chunks(8192) {
        assert!(chunk.iter().any(|&b| b != 0));
    }
    drop(r);

    // --- files of no class pass through untouched ---------------------------
    let plain = dir.join("base/5/16384");
    fs::write(&plain, b"durable TENANT-SECRET-1").unwrap();
    assert_eq!(raw_bytes(&plain), b"durable TENANT-SECRET-1");
    assert_eq!(fs::read(&plain).unwrap(), b"durable TENANT-SECRET-1");

    // --- a class switched off passes through ---------------------------------
    shim::set_enabled_classes(&[ArtifactClass::TempRelations]);
    let off_path = dir.join("base/pgsql_tmp/pgsql_tmp4242.9");
    fs::write(&off_path, b"TENANT-SECRET-off").unwrap();
    assert_eq!(raw_bytes(&off_path), b"TENANT-SECRET-off");
    shim::set_enabled_classes(&ArtifactClass::ALL);

    // --- a file written under another epoch: open works, reads fail --------
    let foreign = dir.join("base/pgsql_tmp/pgsql_tmp4242.5");
    fs::write(&foreign, b"x").unwrap(); // sealed under the current epoch
    let mut bytes = raw_bytes(&foreign);
    bytes[16] ^= 0xFF; // epoch id field
    fs::remove_file(&foreign).unwrap();
    shim::set_enabled_classes(&[]);
    fs::write(&foreign, &bytes).unwrap(); // raw write, class off
    shim::set_enabled_classes(&ArtifactClass::ALL);
    let ff = OpenOptions::new().read(true).open(&foreign).unwrap();
    let mut b1 = [0u8; 1];
    assert_eq!(
        ff.read_at(&mut b1, 0).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    drop(ff);
}
