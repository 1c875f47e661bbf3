//! Reading the test binary's own dynamic section (no patching here).

use ephcrypt_interpose::elf::{self, Executable, RelocKind};
use ephcrypt_interpose::got::{self, InterposeError};

#[test]
fn executable_is_parsed() {
    let exe = Executable::current().expect("parse the running executable");
    eprintln!(
        "bias={:#x} bind_now={} relro={:x?} full_relro={} dyn_ptrs_relocated={} imports={}",
        exe.bias,
        exe.bind_now,
        exe.relro,
        exe.full_relro(),
        exe.dyn_ptrs_relocated,
        exe.imports.len()
    );
    assert!(!exe.segments.is_empty());
    assert!(!exe.imports.is_empty());
    // Rust test binaries are PIE, -z now, -z relro on Linux.
    assert_ne!(exe.bias, 0, "test binary is expected to be PIE");
    assert!(exe.bind_now, "rustc links with -z now");
    assert!(exe.full_relro(), "rustc links with full RELRO");
    // glibc adds the bias to DT_SYMTAB & co. in place for a PIE.
    assert!(exe.dyn_ptrs_relocated);
    for i in &exe.imports {
        assert!(exe.contains(i.slot, 8), "slot inside the image");
        assert_eq!(i.slot % 8, 0);
        assert!(!i.name.to_bytes().contains(&b'@'));
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
    assert_eq!(
        open64.version.map(|v| v.to_str().unwrap()),
        Some("GLIBC_2.2.5")
    );
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
    let version = import.version.expect("glibc symbols are versioned");
    let v = got::resolve_libc_versioned(import.name, version).unwrap();
    assert_eq!(v, got::resolve_libc(c"getpid").unwrap());
}

#[test]
fn resolving_a_missing_function_is_an_error() {
    let err = got::resolve_libc(c"ephcrypt_no_such_function_xyz").unwrap_err();
    assert!(matches!(err, InterposeError::Resolve { .. }), "{err}");
    assert!(err.to_string().contains("ephcrypt_no_such_function_xyz"));
    let err = got::resolve_libc_versioned(c"getpid", c"NO_SUCH_VERSION_1").unwrap_err();
    assert!(matches!(err, InterposeError::Resolve { .. }), "{err}");
}

#[test]
fn unknown_symbol_has_no_slot() {
    assert_eq!(got::slot_value("ephcrypt_no_such_symbol"), None);
    assert!(got::slot_values("ephcrypt_no_such_symbol")
        .unwrap()
        .is_empty());
}
