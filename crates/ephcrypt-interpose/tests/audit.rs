//! The import audit against real binaries, synthetic import lists, and
//! glibc's own export list (so the catalog cannot silently miss a call).

use std::path::{Path, PathBuf};

use ephcrypt_got::elf::Executable;
use ephcrypt_interpose::shim::audit::{self, AuditError, Verdict};
use ephcrypt_interpose::shim::{audit_imports, shimmed_names};

const MINIMAL: &[&str] = &["open", "close", "read", "write", "pread", "pwrite"];

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    MINIMAL.iter().chain(extra).copied().collect()
}

#[test]
fn a_minimal_server_passes_and_each_required_call_is_needed() {
    assert_eq!(audit_imports(MINIMAL, &[], false), Ok(()));
    for missing in MINIMAL {
        let imports: Vec<&str> = MINIMAL.iter().copied().filter(|n| n != missing).collect();
        match audit_imports(&imports, &[], false) {
            Err(AuditError::Missing { group }) => assert!(group.contains(missing), "{group}"),
            other => panic!("without {missing}: {other:?}"),
        }
    }
    // An alias satisfies its group.
    let aliased = [
        "open64",
        "close",
        "__read_chk",
        "write",
        "pread64",
        "pwrite64",
    ];
    assert_eq!(audit_imports(&aliased, &[], false), Ok(()));
}

#[test]
fn unhandled_data_movers_refuse_the_start_by_name() {
    for bad in [
        "aio_write",
        "syscall",
        "open_by_handle_at",
        "__fxstat64",
        "tmpfile",
        "ioctl",
    ] {
        let err = audit_imports(&with(&[bad]), &[], false).unwrap_err();
        match &err {
            AuditError::Refused { symbol, .. } => assert_eq!(symbol, bad),
            other => panic!("{bad}: {other:?}"),
        }
        assert!(err.to_string().contains(bad), "{err}");
        // Control: an explicit allowance (as tests of Rust binaries give).
        assert_eq!(
            audit_imports(&with(&[bad]), &[(bad, "test")], false),
            Ok(())
        );
    }
    // Shimmed and allowlisted calls pass.
    for ok in [
        "pwritev2",
        "preadv",
        "copy_file_range",
        "mmap",
        "fopen",
        "posix_fadvise",
        "fread",
        "rename",
    ] {
        assert_eq!(audit_imports(&with(&[ok]), &[], false), Ok(()), "{ok}");
    }
}

#[test]
fn liburing_is_refused_only_while_io_uring_is_in_use() {
    let imports = with(&["io_uring_queue_init", "io_uring_submit"]);
    assert_eq!(
        audit_imports(&imports, &[], false),
        Ok(()),
        "control: io_method = worker"
    );
    assert!(matches!(
        audit_imports(&imports, &[], true),
        Err(AuditError::IoUring { ref symbol }) if symbol == "io_uring_queue_init"
    ));
    // Control: io_uring in use but the binary has no liburing.
    assert_eq!(audit_imports(MINIMAL, &[], true), Ok(()));
}

fn postgres_binaries() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = vec!["/usr/lib/postgresql/15/bin/postgres".into()];
    if let Ok(more) = std::env::var("PG_EPHCRYPT_POSTGRES_BINARIES") {
        out.extend(more.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    out.into_iter().filter(|p| p.exists()).collect()
}

#[test]
fn every_supported_server_binary_passes_the_audit() {
    let bins = postgres_binaries();
    assert!(
        !bins.is_empty(),
        "Debian's PostgreSQL 15 is installed on the test machine"
    );
    let shimmed = shimmed_names();
    for bin in bins {
        let exe = Executable::from_file(&bin).unwrap();
        let imports = exe.imported_names();
        audit_imports(&imports, &[], false).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let patched: Vec<&String> = imports
            .iter()
            .filter(|i| shimmed.contains(&i.as_str()))
            .collect();
        let allowed: Vec<(String, Verdict)> = imports
            .iter()
            .map(|i| (i.clone(), audit::verdict(i, &shimmed)))
            .filter(|(_, v)| matches!(v, Verdict::Allowed(_)))
            .collect();
        eprintln!("{}: shimmed {patched:?}", bin.display());
        eprintln!(
            "{}: allowed {:?}",
            bin.display(),
            allowed.iter().map(|a| &a.0).collect::<Vec<_>>()
        );
        // Control: the same binary with one more unhandled import is refused.
        let mut more: Vec<&str> = imports.iter().map(String::as_str).collect();
        more.push("aio_read");
        assert!(audit_imports(&more, &[], false).is_err());
    }
}

/// Names a libc export must contain to be looked at by the completeness
/// check: anything that could open, move, size or map file data or hand out
/// an fd.
const FILEISH: &[&str] = &[
    "open",
    "read",
    "write",
    "stat",
    "trunc",
    "seek",
    "mmap",
    "copy_file",
    "sendfile",
    "splice",
    "dup",
    "fallocate",
    "fcntl",
    "aio_",
    "lio_",
    "pipe",
    "socket",
    "accept",
    "memfd",
    "tmpfile",
    "mkstemp",
    "mkostemp",
    "fdopen",
    "syscall",
    "ioctl",
    "handle_at",
    "pidfd",
    "_init1",
    "eventfd",
    "signalfd",
    "timerfd",
    "epoll_create",
    "shm_open",
];

/// Exports that match [`FILEISH`] and were reviewed as not touching files
/// (locks, threads, environment, printing into memory, ...).
const REVIEWED_NOT_FILE_DATA: &[&str] = &[
    "pthread_",
    "__pthread",
    "thrd_",
    "rwlock",
    "sem_open",
    "__libc_",
    "_IO_",
    "__nss_",
    "_nss_",
    "xdr",
    "readdir",
    "getdirentries",
    "statfs",
    "statvfs",
    "fstatfs",
    "fstatvfs",
    "__stat",
    "gethostbyname",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "catopen",
    "iconv_open",
    "__open_catalog",
    "dl_iterate",
    "__dl",
    "posix_spawn_file_actions",
    "fattach",
    "fdetach",
    "pread64_nocancel",
    "__read_nocancel",
    "__write_nocancel",
    "wordexp",
    "getdate",
    "strtold",
    "__readlink",
    "readlink",
    "freopen64_",
    "mq_open",
    "__mq_open",
    "shm_open_",
    "open_wmemstream",
    "__openat64_2",
    "__openat_2",
    "__open64_2",
    "__open_2",
    "__open",
    "gai_",
    "key_",
    "_dl_",
    "writeback",
    "__writev",
    "preadv64v2",
    "pwritev64v2",
    "dup3",
    "accept4",
    "creat64",
    "pipe2",
    "epoll_create1",
    "inotify_init1",
    "prlimit",
    "strdup",
    "strndup",
    "wcsdup",
    "duplocale",
    "initstate",
    "setstate",
    "_stats",
    "res_state",
    "thread",
    "gconv",
    "argp",
    "pidfd_send_signal",
    "timerfd_gettime",
    "timerfd_settime",
    "ustat",
    "svc",
    "clnt",
    "authdes",
    "authunix",
    "authnone",
    "rpc_",
    "hcreate",
    "argz_",
    "tss_",
    "timer_create",
    "create_module",
    "__file_change_detection",
];

fn libc_exports() -> Vec<String> {
    let path = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    let data = std::fs::read(path).expect("glibc on the test machine");
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(&*data).unwrap();
    let mut names: Vec<String> = file
        .dynamic_symbols()
        .filter(|s| s.is_definition())
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_catalog_decides_every_file_related_glibc_export() {
    let shimmed = shimmed_names();
    let decided: Vec<&str> = audit::decided_names()
        .chain(shimmed.iter().copied())
        .collect();
    let mut undecided = Vec::new();
    for name in libc_exports() {
        let lower = name.to_ascii_lowercase();
        if !FILEISH.iter().any(|f| lower.contains(f)) {
            continue;
        }
        if decided.contains(&name.as_str())
            || REVIEWED_NOT_FILE_DATA.iter().any(|r| name.contains(r))
        {
            continue;
        }
        undecided.push(name);
    }
    assert!(
        undecided.is_empty(),
        "glibc exports the audit has no decision for (shim, allow or refuse them): {undecided:?}"
    );
}
