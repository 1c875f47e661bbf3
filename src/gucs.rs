//! Every GUC of pg_ephcrypt, with typed getters. The `pg_ephcrypt.` prefix
//! is reserved: a misspelt `pg_ephcrypt.*` setting is reported, not ignored.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PgSqlErrorCode, PostgresGucEnum};

/// What to do when the protection cannot hold (key memory cannot be
/// protected, GOT cannot be patched, an unsupported configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PostgresGucEnum)]
pub enum OnUnsupported {
    /// Refuse to start: FATAL with a hint (fail closed; the default).
    #[name = c"refuse"]
    Refuse,
    /// Start anyway with a loud WARNING (availability over protection).
    #[name = c"warn"]
    Warn,
}

impl OnUnsupported {
    pub fn name(self) -> &'static str {
        match self {
            OnUnsupported::Refuse => "refuse",
            OnUnsupported::Warn => "warn",
        }
    }
}

/// Where a primary's WAL durability lives (`pg_ephcrypt.wal_durability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PostgresGucEnum)]
pub enum WalDurability {
    /// This server's own pg_wal must survive a restart (the default): the
    /// `wal` class is refused on a primary.
    #[name = c"local"]
    Local,
    /// The operator states that durability lives elsewhere (a synchronous
    /// standby or WAL receiver): a primary may seal its WAL, and cannot
    /// restart in place from it.
    #[name = c"external"]
    External,
}

impl WalDurability {
    pub fn name(self) -> &'static str {
        match self {
            WalDurability::Local => "local",
            WalDurability::External => "external",
        }
    }
}

/// `pg_ephcrypt.memory_hygiene`: how PostgreSQL's shared memory is kept
/// out of core dumps and swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PostgresGucEnum)]
pub enum MemoryHygiene {
    /// Nothing beyond the key page.
    #[name = c"off"]
    Off,
    /// The main segment and every DSM mapping are `MADV_DONTDUMP` (default).
    #[name = c"dontdump"]
    DontDump,
    /// `dontdump`, and the main segment is `mlock`ed (never swapped).
    #[name = c"dontdump_lock"]
    DontDumpLock,
}

impl MemoryHygiene {
    pub fn name(self) -> &'static str {
        match self {
            MemoryHygiene::Off => "off",
            MemoryHygiene::DontDump => "dontdump",
            MemoryHygiene::DontDumpLock => "dontdump_lock",
        }
    }
}

static WAL_DURABILITY: GucSetting<WalDurability> =
    GucSetting::<WalDurability>::new(WalDurability::Local);

static MEMORY_HYGIENE: GucSetting<MemoryHygiene> =
    GucSetting::<MemoryHygiene>::new(MemoryHygiene::DontDump);

static CORE_DUMPS: GucSetting<bool> = GucSetting::<bool>::new(true);

static CLASSES: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"temp_files,temp_relations,logical_spill"));

static ANCHOR_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

static ON_UNSUPPORTED: GucSetting<OnUnsupported> =
    GucSetting::<OnUnsupported>::new(OnUnsupported::Refuse);

/// Register all GUCs. Called once, from `_PG_init` in the postmaster.
pub fn init() {
    GucRegistry::define_enum_guc(
        c"pg_ephcrypt.on_unsupported",
        c"What to do when ephemeral encryption cannot be guaranteed.",
        c"refuse (default) stops the server with FATAL; warn starts it with a WARNING and without the missing protection.",
        &ON_UNSUPPORTED,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    // SAFETY: check_classes is #[pg_guard]ed and only reads its arguments
    // and PostgreSQL globals (below).
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pg_ephcrypt.classes",
            c"Artifact classes to encrypt: temp_files, temp_relations, logical_spill, wal (comma-separated), or none.",
            c"A class left out is passed through untouched (plaintext), e.g. to measure the interposition cost alone. wal is opt-in: standbys, and primaries with pg_ephcrypt.wal_durability = external.",
            &CLASSES,
            GucContext::Postmaster,
            GucFlags::default(),
            Some(check_classes),
            None,
            None,
        );
    }
    GucRegistry::define_enum_guc(
        c"pg_ephcrypt.wal_durability",
        c"Where this primary's WAL durability lives: local (default) or external.",
        c"external states that a synchronous standby or WAL receiver holds the durable WAL, so the wal class may seal this primary's pg_wal under a key that dies with the postmaster.",
        &WAL_DURABILITY,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_ephcrypt.memory_hygiene",
        c"Keep PostgreSQL's shared memory out of core dumps (dontdump) and swap (dontdump_lock).",
        c"dontdump (default) marks the main shared memory segment and every dynamic shared memory mapping MADV_DONTDUMP; dontdump_lock also mlocks the main segment (RLIMIT_MEMLOCK must allow it); off does neither.",
        &MEMORY_HYGIENE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_ephcrypt.core_dumps",
        c"Whether processes of this instance may write core files and be traced by the server's own user.",
        c"off makes the postmaster non-dumpable before any child exists (prctl PR_SET_DUMPABLE 0, inherited by every child): no core files, no ptrace/gdb by the same user. Root is unaffected.",
        &CORE_DUMPS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_ephcrypt.attestation_anchor_key_file",
        c"Operator's Ed25519 private key (PKCS#8 PEM) that certifies this postmaster's attestation keys; empty: unanchored.",
        c"Read once at server start and wiped from memory; a relative path is relative to the data directory.",
        &ANCHOR_KEY_FILE,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    // SAFETY: called from _PG_init on the main thread with a valid C string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pg_ephcrypt".as_ptr()) };
}

/// `pg_ephcrypt.on_unsupported`.
pub fn on_unsupported() -> OnUnsupported {
    ON_UNSUPPORTED.get()
}

/// `pg_ephcrypt.wal_durability`.
pub fn wal_durability() -> WalDurability {
    WAL_DURABILITY.get()
}

/// Check hook of `pg_ephcrypt.classes`: ALTER SYSTEM (and SET, which the
/// context refuses anyway) reject an unknown class at once, 22023 with a
/// hint, instead of persisting a value the next start refuses. In the
/// postmaster (start, reload) every value passes: a rejected value there
/// would become a WARNING and the default classes, where
/// `install_in_postmaster` refuses it with FATAL.
#[pg_guard]
unsafe extern "C-unwind" fn check_classes(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: a plain global, set once in each child.
    if !unsafe { pg_sys::IsUnderPostmaster } {
        return true;
    }
    // SAFETY: PostgreSQL passes the candidate value, a NUL-terminated string
    // (or NULL for no value), valid for this call.
    let value = unsafe {
        if newval.is_null() || (*newval).is_null() {
            return true;
        }
        CStr::from_ptr(*newval).to_string_lossy().into_owned()
    };
    let Err(e) = crate::interpose::parse_classes(&value) else {
        return true;
    };
    let detail = CString::new(e.to_string()).unwrap_or_default();
    let hint =
        c"Use a comma-separated list of temp_files, temp_relations, logical_spill, wal, or none.";
    // SAFETY: what PostgreSQL's GUC_check_errcode/errdetail/errhint macros
    // do from a check hook: the strings are copied into ErrorContext, where
    // format_elog_string puts them.
    unsafe {
        pg_sys::GUC_check_errcode(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as c_int);
        pg_sys::GUC_check_errdetail_string =
            pg_sys::MemoryContextStrdup(pg_sys::ErrorContext, detail.as_ptr());
        pg_sys::GUC_check_errhint_string =
            pg_sys::MemoryContextStrdup(pg_sys::ErrorContext, hint.as_ptr());
    }
    false
}

/// `pg_ephcrypt.classes`, raw (parsed by the caller).
pub fn classes() -> String {
    CLASSES
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `pg_ephcrypt.memory_hygiene`.
pub fn memory_hygiene() -> MemoryHygiene {
    MEMORY_HYGIENE.get()
}

/// `pg_ephcrypt.core_dumps`.
pub fn core_dumps() -> bool {
    CORE_DUMPS.get()
}

/// `pg_ephcrypt.attestation_anchor_key_file`, `None` when unset or empty.
pub fn attestation_anchor_key_file() -> Option<String> {
    ANCHOR_KEY_FILE
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}
