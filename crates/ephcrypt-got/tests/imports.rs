//! Reading the test binary's own dynamic section (no patching here).

use ephcrypt_got::elf::{self, Executable, RelocKind};
use ephcrypt_got::{self as got, GotError};

#[test]
fn executable_is_parsed() {
    let exe = Executable::current().expect("parse the running executable");
    eprintln!(
        "bias={:#x} bind_now={} relro={:x?} full_relro={} imports={}",
        exe.bias,
        exe.bind_now,
        exe.relro,
        exe.full_relro(),
        exe.imports.len()
    );
    assert!(!exe.segments.is_empty());
    assert!(!exe.imports.is_empty());
    // Rust test binaries are PIE, -z now, -z relro on Linux.
    assert_ne!(exe.bias, 0, "test binary is expected to be PIE");
    assert!(exe.bind_now, "rustc links with -z now");
    assert!(exe.full_relro(), "rustc links with full RELRO");
    for i in &exe.imports {
        assert!(exe.contains(i.slot, 8), "slot inside the image");
        assert_eq!(i.slot % 8, 0);
        assert!(!i.name.contains('@'));
    }
}

#[test]
fn imports_list_libc_functions_without_versions() {
    let names = got::executable_imports().unwrap();
    eprintln!("{} imports: {names:?}", names.len());
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "sorted, deduplicated"
    );
    for expected in ["getpid", "open64", "close"] {
        assert!(names.iter().any(|n| n == expected), "{expected} imported");
    }
    let exe = Executable::current().unwrap();
    let open64 = exe.imports_of("open64").next().unwrap();
    assert_eq!(open64.version.as_deref(), Some("GLIBC_2.2.5"));
    let kinds: Vec<RelocKind> = exe.imports.iter().map(|i| i.kind).collect();
    eprintln!(
        "JUMP_SLOT={} GLOB_DAT={} ABS64={}",
        kinds.iter().filter(|k| **k == RelocKind::JumpSlot).count(),
        kinds.iter().filter(|k| **k == RelocKind::GlobDat).count(),
        kinds.iter().filter(|k| **k == RelocKind::Abs64).count()
    );
}

#[test]
fn bind_now_slots_hold_the_resolved_libc_function() {
    let exe = Executable::current().unwrap();
    assert!(exe.bind_now);
    for name in ["getpid", "close"] {
        let real = got::resolve_libc(&got::c_name(name).unwrap()).unwrap();
        assert!(!elf::main_image_contains(real).unwrap());
        for value in got::slot_values(name).unwrap() {
            assert_eq!(value, real, "{name}: slot == dlsym(libc)");
        }
        assert_eq!(got::slot_value(name), Some(real));
    }
}

#[test]
fn versioned_resolution_matches_default_version() {
    let exe = Executable::current().unwrap();
    let import = exe.imports_of("getpid").next().unwrap();
    let version = import
        .version
        .as_deref()
        .expect("glibc symbols are versioned");
    let v = got::resolve_libc_versioned(
        &got::c_name(&import.name).unwrap(),
        &got::c_name(version).unwrap(),
    )
    .unwrap();
    assert_eq!(v, got::resolve_libc(c"getpid").unwrap());
}

#[test]
fn resolving_a_missing_function_is_an_error() {
    let err = got::resolve_libc(c"ephcrypt_no_such_function_xyz").unwrap_err();
    assert!(matches!(err, GotError::Resolve { .. }), "{err}");
    assert!(err.to_string().contains("ephcrypt_no_such_function_xyz"));
    let err = got::resolve_libc_versioned(c"getpid", c"NO_SUCH_VERSION_1").unwrap_err();
    assert!(matches!(err, GotError::Resolve { .. }), "{err}");
}

#[test]
fn unknown_symbol_has_no_slot() {
    assert_eq!(got::slot_value("ephcrypt_no_such_symbol"), None);
    assert!(got::slot_values("ephcrypt_no_such_symbol")
        .unwrap()
        .is_empty());
}

#[test]
fn the_file_read_without_loading_lists_the_same_imports() {
    let exe = Executable::current().unwrap();
    let file = Executable::from_file(std::path::Path::new("/proc/self/exe")).unwrap();
    assert_eq!(file.bias, 0);
    assert_eq!(file.imported_names(), exe.imported_names());
    assert_eq!(file.imports.len(), exe.imports.len());
    for (a, b) in file.imports.iter().zip(&exe.imports) {
        assert_eq!(a.slot + exe.bias, b.slot, "{}", a.name);
        assert_eq!((&a.name, &a.version, a.kind), (&b.name, &b.version, b.kind));
    }
}

#[test]
fn a_file_that_is_not_elf_is_an_error() {
    let dir = std::env::temp_dir().join(format!("ephcrypt-got-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("not-elf");
    std::fs::write(&p, b"#!/bin/sh\necho hello\n").unwrap();
    let err = Executable::from_file(&p).unwrap_err();
    assert!(matches!(err, GotError::Elf(_)), "{err}");
    let err = Executable::from_file(&dir.join("missing")).unwrap_err();
    assert!(matches!(err, GotError::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// PostgreSQL server binaries on this machine, if installed (Debian's 15 and
/// any other build named by PG_EPHCRYPT_POSTGRES_BINARIES, colon-separated).
fn postgres_binaries() -> Vec<std::path::PathBuf> {
    let mut out: Vec<std::path::PathBuf> = vec!["/usr/lib/postgresql/15/bin/postgres".into()];
    if let Ok(more) = std::env::var("PG_EPHCRYPT_POSTGRES_BINARIES") {
        out.extend(more.split(':').filter(|s| !s.is_empty()).map(Into::into));
    }
    out.into_iter().filter(|p| p.exists()).collect()
}

#[test]
fn postgres_binaries_import_the_file_calls_through_slots() {
    for path in postgres_binaries() {
        let exe = Executable::from_file(&path).unwrap();
        let names = exe.imported_names();
        for want in [
            "open", "close", "read", "write", "pread", "pwrite", "lseek", "fstat",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{}: {want}",
                path.display()
            );
        }
        eprintln!(
            "{}: {} imports, bind_now={}, full_relro={}",
            path.display(),
            names.len(),
            exe.bind_now,
            exe.full_relro()
        );
    }
}
