//! Attestations anchored in the operator's key
//! (`pg_ephcrypt.attestation_anchor_key_file`).
//!
//! Life cycle, all in the postmaster:
//! 1. `_PG_init`: read the anchor key file once (into a postmaster-only page,
//!    see below), draw a fresh **instance key** (Ed25519 seed from the
//!    kernel CSPRNG, in the same page), have the anchor sign an *instance
//!    certificate* for it (system identifier, boot id, postmaster pid), then
//!    wipe every byte of the file and of the anchor key. Any failure is FATAL:
//!    the server never starts half-configured.
//! 2. Every epoch (`epoch::publish`: start and each crash-restart): the
//!    instance key signs an *epoch certificate* for the epoch's attestation
//!    public key and epoch id. Children forked afterwards inherit both
//!    certificates (plain memory, nothing secret).
//! 3. Postmaster exit: the instance seed is wiped.
//!
//! The page is private to the postmaster: `MADV_DONTFORK` keeps it out of
//! every child (no backend, however compromised, maps the instance key or
//! ever mapped the anchor key), `mlock` keeps it out of swap and
//! `MADV_DONTDUMP` out of core dumps. The instance key can only certify
//! epochs of this postmaster: its certificate names the postmaster, and
//! verifiers compare those names with the document's.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, OnceLock};

use ephcrypt_attest::{
    seed_from_pkcs8_pem, sign_certificate, to_hex, verify_anchored, AttestError, CertKind,
    SigningKey,
};
use pgrx::prelude::*;
use pgrx::{JsonB, PgLogLevel};
use serde_json::{json, Map, Value};

use crate::epoch;
use crate::errors::EphError;

/// The postmaster-only protected page.
mod page {
    /// Layout (offsets into the page).
    pub const INSTANCE_SEED: std::ops::Range<usize> = 0..32;
    pub const ANCHOR_SEED: std::ops::Range<usize> = 32..64;
    pub const SCRATCH: std::ops::Range<usize> = 64..256;
    pub const FILE: std::ops::Range<usize> =
        1024..(1024 + ephcrypt_attest::anchor::MAX_KEY_FILE_LEN);
    const LEN: usize = 4096;

    /// One anonymous private page, locked, not dumped, not inherited.
    pub struct Page {
        base: *mut u8,
        owner: i32,
    }

    // SAFETY: PostgreSQL processes are single-threaded; the pointer is only
    // dereferenced in the process that mapped it (checked by `owner`).
    unsafe impl Send for Page {}
    // SAFETY: as above.
    unsafe impl Sync for Page {}

    /// Overwrite with zeros (volatile: not optimized away).
    pub fn wipe(bytes: &mut [u8]) {
        for x in bytes {
            // SAFETY: a valid, aligned u8 of a live slice.
            unsafe { std::ptr::write_volatile(x, 0) };
        }
    }

    fn os_error(what: &str) -> String {
        format!("{what}: {}", std::io::Error::last_os_error())
    }

    impl Page {
        pub fn map() -> Result<Page, String> {
            // SAFETY: a fresh anonymous mapping; checked against MAP_FAILED.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    LEN,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(os_error("mmap"));
            }
            let fail = |what: &str| {
                let e = os_error(what);
                // SAFETY: unmapping the mapping created above.
                unsafe { libc::munmap(base, LEN) };
                Err(e)
            };
            // SAFETY: base/LEN describe the mapping created above.
            if unsafe { libc::mlock(base, LEN) } != 0 {
                return fail("mlock");
            }
            // SAFETY: as above.
            if unsafe { libc::madvise(base, LEN, libc::MADV_DONTDUMP) } != 0 {
                return fail("madvise(MADV_DONTDUMP)");
            }
            // SAFETY: as above.
            if unsafe { libc::madvise(base, LEN, libc::MADV_DONTFORK) } != 0 {
                return fail("madvise(MADV_DONTFORK)");
            }
            Ok(Page {
                base: base.cast(),
                // SAFETY: getpid has no preconditions.
                owner: unsafe { libc::getpid() },
            })
        }

        /// Run `f` on the page's bytes, in the process that mapped it only
        /// (children do not have the mapping at all): `None` elsewhere.
        /// The one way to the bytes, so no two mutable views coexist.
        pub fn with_bytes<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
            // SAFETY: getpid has no preconditions.
            if self.owner != unsafe { libc::getpid() } {
                return None;
            }
            // SAFETY: the mapping is LEN bytes and lives as long as the
            // process; the process is single-threaded and `f` cannot reach
            // `with_bytes` again (callers do not nest it), so this is the
            // only view of the page while `f` runs.
            Some(f(unsafe { std::slice::from_raw_parts_mut(self.base, LEN) }))
        }

        /// Overwrite `range` with zeros.
        pub fn wipe(&self, range: std::ops::Range<usize>) {
            let _ = self.with_bytes(|b| wipe(&mut b[range]));
        }
    }
}

/// The postmaster's page (set only when an anchor is configured).
static PAGE: OnceLock<page::Page> = OnceLock::new();
/// The instance certificate (public), inherited by every child.
static INSTANCE_CERT: OnceLock<Value> = OnceLock::new();
/// The current epoch's certificate (public), set at every epoch in the
/// postmaster before it forks the epoch's children.
static EPOCH_CERT: Mutex<Option<Value>> = Mutex::new(None);

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The rule PostgreSQL applies to `ssl_key_file`: owned by the server user
/// with no group or other access, or owned by root with at most group read.
fn check_permissions(meta: &std::fs::Metadata) -> Result<(), String> {
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mode = meta.mode() & 0o7777;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() == me {
        if mode & 0o077 != 0 {
            return Err(format!(
                "has group or other access (mode {mode:04o}); it must be 0600 or less when owned by the server user"
            ));
        }
    } else if meta.uid() == 0 {
        if mode & 0o037 != 0 {
            return Err(format!(
                "is owned by root with mode {mode:04o}; it must be 0640 or less"
            ));
        }
    } else {
        return Err("must be owned by the server user or root".into());
    }
    Ok(())
}

/// Read the key file into `bytes[FILE]` and parse the anchor seed into
/// `bytes[ANCHOR_SEED]`. The file's bytes and the scratch are wiped before
/// this returns, and the seed too on failure.
fn load_anchor_seed(bytes: &mut [u8], path: &str) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    check_permissions(&meta)?;
    let (head, rest) = bytes.split_at_mut(page::FILE.start);
    let buf = &mut rest[..page::FILE.len()];
    let mut n = 0;
    let mut result = Ok(());
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                result = Err(format!("cannot read: {e}"));
                break;
            }
        }
    }
    if result.is_ok() && n == buf.len() {
        let mut probe = [0u8; 1];
        if matches!(file.read(&mut probe), Ok(k) if k > 0) {
            result = Err(ephcrypt_attest::KeyFileError::TooLarge(buf.len()).to_string());
        }
        page::wipe(&mut probe);
    }
    if result.is_ok() {
        let (low, scratch_tail) = head.split_at_mut(page::SCRATCH.start);
        let scratch = &mut scratch_tail[..page::SCRATCH.len()];
        result = match <&mut [u8; 32]>::try_from(&mut low[page::ANCHOR_SEED]) {
            Ok(seed) => seed_from_pkcs8_pem(&buf[..n], scratch, seed).map_err(|e| e.to_string()),
            Err(_) => Err("layout".to_string()),
        };
    }
    page::wipe(buf);
    page::wipe(&mut head[page::SCRATCH]);
    if result.is_err() {
        page::wipe(&mut head[page::ANCHOR_SEED]);
    }
    result
}

fn random_fill(out: &mut [u8]) -> Result<(), String> {
    let mut done = 0;
    while done < out.len() {
        // SAFETY: writing at most the remaining bytes of `out`.
        let r = unsafe { libc::getrandom(out[done..].as_mut_ptr().cast(), out.len() - done, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("getrandom: {e}"));
            }
        } else {
            done += r as usize;
        }
    }
    Ok(())
}

/// The signing key whose seed is `bytes[range]`.
fn key_at(bytes: &[u8], range: std::ops::Range<usize>) -> Result<SigningKey, String> {
    let seed: &[u8; 32] = bytes[range].try_into().map_err(|_| "layout".to_string())?;
    SigningKey::from_seed_ref(seed).map_err(|e| e.to_string())
}

/// Sign the instance certificate with the anchor, both keys in `bytes`.
fn sign_instance_certificate(bytes: &mut [u8]) -> Result<(String, String), String> {
    random_fill(&mut bytes[page::INSTANCE_SEED])?;
    let anchor = key_at(bytes, page::ANCHOR_SEED)?;
    let instance = key_at(bytes, page::INSTANCE_SEED)?;
    // SAFETY: reading the control file data the postmaster loaded before it
    // loads preload libraries.
    let system_identifier = unsafe { pg_sys::GetSystemIdentifier() };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let fields = json!({
        "instance_public_key": to_hex(&instance.public_key()),
        "system_identifier": system_identifier.to_string(),
        "boot_id": read_trimmed("/proc/sys/kernel/random/boot_id"),
        "hostname": read_trimmed("/proc/sys/kernel/hostname"),
        "postmaster_pid": pid,
        "issued_at": crate::time::iso_utc(crate::time::now_unix_us()),
    });
    let Value::Object(fields) = fields else {
        return Err("fields".to_string());
    };
    let cert = sign_certificate(&anchor, CertKind::Instance, fields).map_err(|e| e.to_string())?;
    let keys = (to_hex(&anchor.public_key()), to_hex(&instance.public_key()));
    // Both AWS-LC key objects are freed (and cleansed) here.
    drop(anchor);
    drop(instance);
    let _ = INSTANCE_CERT.set(cert);
    Ok(keys)
}

/// Load the anchor, create the instance key and its certificate; the anchor
/// key is wiped whatever happens, the instance key too on failure.
fn certify_instance(page: &page::Page, path: &str) -> Result<(String, String), String> {
    page.with_bytes(|bytes| {
        let result = load_anchor_seed(bytes, path).and_then(|()| sign_instance_certificate(bytes));
        page::wipe(&mut bytes[page::ANCHOR_SEED]);
        if result.is_err() {
            page::wipe(&mut bytes[page::INSTANCE_SEED]);
        }
        result
    })
    .unwrap_or_else(|| Err("not the postmaster".into()))
}

/// `on_proc_exit` of the postmaster: wipe the instance key.
unsafe extern "C-unwind" fn wipe_at_exit(_code: i32, _arg: pg_sys::Datum) {
    if let Some(p) = PAGE.get() {
        p.wipe(page::INSTANCE_SEED);
    }
}

/// Called from `_PG_init` in the postmaster, before the epoch key exists.
/// Without the setting: nothing (documents say `"anchored": false`).
pub fn init_postmaster() {
    let Some(path) = crate::gucs::attestation_anchor_key_file() else {
        return;
    };
    let page = match page::Page::map() {
        Ok(p) => PAGE.get_or_init(|| p),
        Err(e) => {
            EphError::AnchorMemory(e).report(PgLogLevel::FATAL);
            return;
        }
    };
    match certify_instance(page, &path) {
        Ok((anchor_pk, instance_pk)) => {
            // SAFETY: registering a plain C callback in the postmaster's
            // single thread.
            unsafe { pg_sys::on_proc_exit(Some(wipe_at_exit), pg_sys::Datum::from(0usize)) };
            pgrx::log!(
                "pg_ephcrypt: attestation anchor {anchor_pk} certified instance key {instance_pk}; the anchor key is wiped from memory"
            );
        }
        Err(e) => EphError::AnchorKey { path, reason: e }.report(PgLogLevel::FATAL),
    }
}

/// Called by `epoch::publish` in the postmaster for every new epoch: the
/// instance key signs the epoch certificate. FATAL if it cannot.
pub fn certify_epoch(epoch_id: &[u8; 16], created_at_us: i64, restarts: u32) {
    let Some(page) = PAGE.get() else {
        return;
    };
    let result = (|| {
        let epoch_pk = crate::attest::public_key();
        if epoch_pk.len() != 32 {
            return Err("the epoch has no attestation key".to_string());
        }
        let instance = page
            .with_bytes(|b| key_at(b, page::INSTANCE_SEED))
            .unwrap_or_else(|| Err("not the postmaster".into()))?;
        let fields = json!({
            "epoch_id": to_hex(epoch_id),
            "epoch_public_key": to_hex(&epoch_pk),
            "epoch_created_at": crate::time::iso_utc(created_at_us),
            "restarts": restarts,
        });
        let Value::Object(fields) = fields else {
            return Err("fields".to_string());
        };
        sign_certificate(&instance, CertKind::Epoch, fields).map_err(|e| e.to_string())
    })();
    match result {
        Ok(cert) => {
            *EPOCH_CERT.lock().unwrap_or_else(|p| p.into_inner()) = Some(cert);
        }
        Err(e) => {
            *EPOCH_CERT.lock().unwrap_or_else(|p| p.into_inner()) = None;
            EphError::AnchorEpoch(e).report(PgLogLevel::FATAL);
        }
    }
}

fn epoch_cert() -> Option<Value> {
    EPOCH_CERT.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The anchor fields of an attestation document of epoch `epoch_id_hex`:
/// `"anchored": false`, or `true` with both certificates.
pub fn document_fields(epoch_id_hex: &str) -> Map<String, Value> {
    let mut m = Map::new();
    match (INSTANCE_CERT.get(), epoch_cert()) {
        (None, _) => {
            m.insert("anchored".into(), Value::Bool(false));
        }
        (Some(ic), Some(ec))
            if ec.get("epoch_id").and_then(Value::as_str) == Some(epoch_id_hex) =>
        {
            m.insert("anchored".into(), Value::Bool(true));
            m.insert("instance_certificate".into(), ic.clone());
            m.insert("epoch_certificate".into(), ec);
        }
        (Some(_), _) => EphError::Attestation(
            "the current epoch has no epoch certificate although an anchor is configured".into(),
        )
        .raise(),
    }
    m
}

fn hex_field(v: &Value, name: &str) -> Option<Vec<u8>> {
    let s = v.get(name)?.as_str()?;
    ephcrypt_attest::parse_hex_arg(s, "field").ok()
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_anchor_status() -> TableIterator<
    'static,
    (
        name!(anchored, bool),
        name!(anchor_public_key, Option<Vec<u8>>),
        name!(instance_public_key, Option<Vec<u8>>),
        name!(instance_certificate, Option<JsonB>),
        name!(epoch_certificate, Option<JsonB>),
    ),
> {
    epoch::require_preloaded();
    let ic = INSTANCE_CERT.get().cloned();
    let ec = epoch_cert();
    TableIterator::once((
        ic.is_some() && ec.is_some(),
        ic.as_ref().and_then(|c| hex_field(c, "signed_by")),
        ic.as_ref()
            .and_then(|c| hex_field(c, "instance_public_key")),
        ic.map(JsonB),
        ec.map(JsonB),
    ))
}

#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_verify_anchored_attestation(
    document: Option<JsonB>,
    anchor_public_key: Option<&[u8]>,
    challenge: default!(Option<&[u8]>, "NULL"),
) -> bool {
    epoch::require_preloaded();
    let (document, anchor) = crate::attest::verify_arguments(
        document,
        anchor_public_key,
        "anchor_public_key",
        "Pass the document returned by pg_ephcrypt_attest() and the operator's 32-byte anchor public key.",
        "Use the raw key: openssl pkey -in anchor.pem -pubout -outform DER | tail -c 32.",
    );
    let challenge_hex = challenge.map(to_hex);
    let current_epoch = to_hex(&epoch::public_state().epoch_id);
    match verify_anchored(
        &document,
        anchor,
        challenge_hex.as_deref(),
        Some(&current_epoch),
    ) {
        Ok(_) => true,
        Err(
            e @ (AttestError::SignatureInvalid
            | AttestError::KeyMismatch
            | AttestError::ChallengeMismatch
            | AttestError::WrongEpoch
            | AttestError::UnsupportedAlgorithm
            | AttestError::Unanchored
            | AttestError::WrongAnchor
            | AttestError::ChainBroken
            | AttestError::CertificateInvalid(_)
            | AttestError::CertificateEpochMismatch
            | AttestError::ChainMismatch(_)),
        ) => {
            pgrx::notice!("pg_ephcrypt: {e}");
            false
        }
        Err(e) => EphError::BadArgument {
            code: pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message: format!("not a pg_ephcrypt attestation document: {e}"),
            hint: "Pass the jsonb returned by pg_ephcrypt_attest() unchanged.",
        }
        .raise(),
    }
}
