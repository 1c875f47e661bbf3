//! Every GUC of pg_ephcrypt, with typed getters. The `pg_ephcrypt.` prefix
//! is reserved: a misspelt `pg_ephcrypt.*` setting is reported, not ignored.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

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
    GucRegistry::define_string_guc(
        c"pg_ephcrypt.classes",
        c"Artifact classes to encrypt: temp_files, temp_relations, logical_spill (comma-separated), or none.",
        c"A class left out is passed through untouched (plaintext), e.g. to measure the interposition cost alone.",
        &CLASSES,
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

/// `pg_ephcrypt.classes`, raw (parsed by the caller).
pub fn classes() -> String {
    CLASSES
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `pg_ephcrypt.attestation_anchor_key_file`, `None` when unset or empty.
pub fn attestation_anchor_key_file() -> Option<String> {
    ANCHOR_KEY_FILE
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}
