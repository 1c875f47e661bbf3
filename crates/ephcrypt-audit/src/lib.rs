//! Offline audit of a copy of a PostgreSQL data directory (a volume
//! snapshot, a backup, `cp -a` of a stopped or running instance): is every
//! transient file at a covered name sealed by pg_ephcrypt?
//!
//! No server and no key: the audit walks the same directories and classes as
//! `pg_ephcrypt_scan()` (the shared walker, `ephcrypt_classify::walk`) and
//! reads the first 64 bytes of each covered file (`ephcrypt_format`'s header
//! rules). Without the key it cannot authenticate a header; it tells a
//! pg_ephcrypt file (and its key epoch) from anything else, which is what a
//! copy can show: whether tenant bytes sit in the clear on the volume.
//!
//! Each covered entry gets one [`Status`]; [`Report::findings`] counts the
//! plaintext, unexpected and unreadable entries and the tablespaces that
//! could not be audited. The command-line tool (`src/main.rs`) exits 0 when
//! there is no finding, 1 otherwise, 2 on a usage error or when the data
//! directory itself cannot be audited.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ephcrypt_classify::walk::{wal_entries, walk, EntryKind, Found, Tablespaces};
use ephcrypt_classify::ArtifactClass;
use ephcrypt_format::{physical_to_logical_size, FormatError, Header, HEADER_LEN};
use serde_json::{json, Value};

/// Version of the JSON report layout.
pub const REPORT_VERSION: u32 = 1;

/// pg_ephcrypt's magic, the first 8 bytes of every sealed file.
const MAGIC: &[u8; 8] = b"PGEPHCR\0";

/// What a covered entry of the copy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// A structurally valid pg_ephcrypt (format v2) header and a size the
    /// format allows; the epoch id names the key it was sealed under.
    Sealed,
    /// Zero bytes: no data on disk (a file caught between its creation and
    /// its first page, or one made by something else). Not a finding.
    Empty,
    /// No pg_ephcrypt header: the file's bytes are in the clear. Finding.
    Plaintext,
    /// Not a regular file (FIFO, socket, device, symbolic link, directory)
    /// at a covered name; the shims never put data there. Finding.
    Unexpected,
    /// pg_ephcrypt magic but an unusable header (cut off, format v1, wrong
    /// sizes), an impossible size, or the entry (or a directory the walk
    /// needed) could not be read. Finding.
    Unreadable,
}

impl Status {
    /// Every status, in report order.
    pub const ALL: [Status; 5] = [
        Status::Sealed,
        Status::Empty,
        Status::Plaintext,
        Status::Unexpected,
        Status::Unreadable,
    ];

    /// Stable name used in both output formats.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Status::Sealed => "sealed",
            Status::Empty => "empty",
            Status::Plaintext => "plaintext",
            Status::Unexpected => "unexpected",
            Status::Unreadable => "unreadable",
        }
    }

    /// Whether an entry with this status makes the copy unclean.
    #[must_use]
    pub const fn is_finding(self) -> bool {
        matches!(
            self,
            Status::Plaintext | Status::Unexpected | Status::Unreadable
        )
    }
}

/// One covered entry (or a directory the walk could not list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the data directory; tablespace files as
    /// `pg_tblspc/<oid>/...`.
    pub path: String,
    /// The artifact class (`None` for a directory that could not be listed).
    pub class: Option<ArtifactClass>,
    /// `regular`, `symlink`, `directory`, `fifo`, `socket`, `char_device`,
    /// `block_device`, `other`.
    pub kind: &'static str,
    /// Physical size in bytes (regular files that could be read).
    pub size: Option<u64>,
    /// Size as PostgreSQL saw it, derived from the physical size for sealed
    /// files (unauthenticated), equal to `size` for plaintext.
    pub logical_size: Option<u64>,
    /// The verdict.
    pub status: Status,
    /// Key epoch of a sealed file.
    pub epoch_id: Option<[u8; 16]>,
    /// Why an entry is unreadable or unexpected.
    pub detail: Option<String>,
}

/// A `pg_tblspc/<oid>` entry of the copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablespaceReport {
    /// `pg_tblspc/<oid>`.
    pub link: String,
    /// The link's target as stored in the copy (`None`: an in-place
    /// tablespace directory).
    pub target: Option<String>,
    /// Where the audit looked, or `None` when the location lies outside the
    /// copy (a finding: that tablespace was not audited).
    pub audited_at: Option<String>,
}

/// The whole audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The data directory (absolute, symbolic links resolved).
    pub data_directory: PathBuf,
    /// `--root`: the directory standing for `/` of the copied volume.
    pub root: Option<PathBuf>,
    /// Contents of `PG_VERSION` (the major version).
    pub pg_version: String,
    /// The cluster's system identifier from `global/pg_control` (first 8
    /// bytes, little endian as on x86_64 and aarch64), when readable.
    pub system_identifier: Option<u64>,
    /// Every covered entry and every directory that could not be listed,
    /// sorted by (displayed) path.
    pub entries: Vec<Entry>,
    /// Every tablespace entry.
    pub tablespaces: Vec<TablespaceReport>,
    /// What the audit made of pg_wal.
    pub wal: WalAudit,
}

/// pg_wal in the copy. WAL is sealed only where the opt-in `wal` class was
/// on; elsewhere it is durable data under the operator's storage
/// encryption, out of scope. Without a key or the server's settings the
/// copy itself has to tell: if any WAL file carries pg_ephcrypt's magic,
/// the class was on and every WAL file is audited (a plaintext segment is
/// then a finding); if none does, pg_wal is reported as not sealed and its
/// files are not listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalAudit {
    /// Sealed WAL present: every WAL file is among the entries.
    Audited {
        /// WAL files (segments, `.partial`, `xlogtemp.*`) in pg_wal.
        files: usize,
    },
    /// No WAL file carries the magic: pg_wal holds durable (or no) WAL.
    NotSealed {
        /// WAL files in pg_wal, none of them sealed.
        files: usize,
    },
}

/// Why the data directory cannot be audited at all (exit status 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditError(pub String);

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuditError {}

/// Lowercase hex.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn kind_name(kind: EntryKind, path: &Path) -> &'static str {
    match kind {
        EntryKind::Regular(_) => "regular",
        EntryKind::Symlink => "symlink",
        EntryKind::Directory => "directory",
        EntryKind::Other => match fs::symlink_metadata(path).map(|m| m.file_type()) {
            Ok(t) if t.is_fifo() => "fifo",
            Ok(t) if t.is_socket() => "socket",
            Ok(t) if t.is_char_device() => "char_device",
            Ok(t) if t.is_block_device() => "block_device",
            _ => "other",
        },
    }
}

/// The verdict on a regular file from its first bytes and physical size.
#[must_use]
pub fn judge(head: &[u8], size: u64) -> (Status, Option<[u8; 16]>, Option<String>) {
    if size == 0 {
        return (Status::Empty, None, None);
    }
    if head.len() < MAGIC.len() || head[..MAGIC.len()] != *MAGIC {
        return (Status::Plaintext, None, None);
    }
    match Header::parse(head) {
        Ok(h) => match physical_to_logical_size(size) {
            Ok(_) => (Status::Sealed, Some(h.epoch_id), None),
            Err(e) => (
                Status::Unreadable,
                Some(h.epoch_id),
                Some(format!("impossible physical size for format v2: {e}")),
            ),
        },
        Err(FormatError::UnsupportedVersion(1)) => (
            Status::Unreadable,
            None,
            Some("format version 1 (pg_ephcrypt 0.1.0), not readable by 0.2.0".into()),
        ),
        Err(e) => (
            Status::Unreadable,
            None,
            Some(format!("pg_ephcrypt magic but an unusable header: {e}")),
        ),
    }
}

enum Read64 {
    File { head: Vec<u8>, size: u64 },
    Vanished,
    Unexpected(String),
    Failed(String),
}

fn read_head(path: &Path) -> Read64 {
    // Never follow a link or block on a FIFO that replaced the file since
    // the walk saw it.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read64::Vanished,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Read64::Unexpected("a symbolic link (never followed)".into())
        }
        Err(e) => return Read64::Failed(e.to_string()),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Read64::Failed(e.to_string()),
    };
    if !meta.is_file() {
        return Read64::Unexpected("no longer a regular file".into());
    }
    let mut head = Vec::with_capacity(HEADER_LEN);
    match file.by_ref().take(HEADER_LEN as u64).read_to_end(&mut head) {
        Ok(_) => Read64::File {
            head,
            size: meta.len(),
        },
        Err(e) => Read64::Failed(e.to_string()),
    }
}

/// `path` as shown in reports: relative to the data directory, or through
/// the tablespace link it was reached by.
fn display_path(path: &Path, data_dir: &Path, locations: &[(PathBuf, String)]) -> String {
    if let Ok(rel) = path.strip_prefix(data_dir) {
        return rel.display().to_string();
    }
    for (location, link) in locations {
        if let Ok(rel) = path.strip_prefix(location) {
            return Path::new(link).join(rel).display().to_string();
        }
    }
    path.display().to_string()
}

fn check_data_directory(dir: &Path) -> Result<(PathBuf, String), AuditError> {
    let bad = |why: String| {
        AuditError(format!(
            "{}: not an auditable PostgreSQL data directory: {why}",
            dir.display()
        ))
    };
    let dir = fs::canonicalize(dir).map_err(|e| bad(e.to_string()))?;
    if !dir.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let version = fs::read_to_string(dir.join("PG_VERSION"))
        .map_err(|e| bad(format!("cannot read PG_VERSION: {e}")))?;
    let version = version.trim().to_string();
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad(format!("PG_VERSION holds {version:?}")));
    }
    fs::read_dir(dir.join("base")).map_err(|e| bad(format!("cannot list base: {e}")))?;
    Ok((dir, version))
}

fn system_identifier(data_dir: &Path) -> Option<u64> {
    let mut f = fs::File::open(data_dir.join("global/pg_control")).ok()?;
    let mut id = [0u8; 8];
    f.read_exact(&mut id).ok()?;
    Some(u64::from_le_bytes(id))
}

/// Audit the data directory `data_dir`. With `root`, the copy is of a whole
/// volume mounted at `root`, which stands for `/` of the original: absolute
/// tablespace links are looked up below it. Without, only tablespaces inside
/// the data directory (relative links, in-place tablespaces) are followed.
///
/// # Errors
/// [`AuditError`] when `data_dir` is not a readable PostgreSQL data
/// directory (no `PG_VERSION`, no `base`), or lies outside `root`.
pub fn audit(data_dir: &Path, root: Option<&Path>) -> Result<Report, AuditError> {
    let (dd, pg_version) = check_data_directory(data_dir)?;
    let root = match root {
        None => None,
        Some(r) => {
            let r = fs::canonicalize(r)
                .map_err(|e| AuditError(format!("--root {}: {e}", r.display())))?;
            if !dd.starts_with(&r) {
                return Err(AuditError(format!(
                    "the data directory {} is not inside --root {}",
                    dd.display(),
                    r.display()
                )));
            }
            Some(r)
        }
    };
    let policy = match &root {
        Some(r) => Tablespaces::Rebased(r),
        None => Tablespaces::Within(&dd),
    };
    let w = walk(&dd, policy);

    let locations: Vec<(PathBuf, String)> = w
        .tablespaces
        .iter()
        .filter_map(|t| {
            let link = display_path(&t.link, &dd, &[]);
            t.followed.clone().map(|loc| (loc, link))
        })
        .collect();
    let tablespaces = w
        .tablespaces
        .iter()
        .map(|t| TablespaceReport {
            link: display_path(&t.link, &dd, &[]),
            target: t.target.as_ref().map(|p| p.display().to_string()),
            audited_at: t.followed.as_ref().map(|p| p.display().to_string()),
        })
        .collect();

    let mut entries: Vec<Entry> = w
        .found
        .iter()
        .filter_map(|f| entry_of(f, &dd, &locations))
        .collect();
    let wal_files: Vec<Entry> = wal_entries(&dd)
        .iter()
        .filter_map(|f| entry_of(f, &dd, &locations))
        .collect();
    // Unreadable counts as "the class was on": a WAL file with the magic
    // but a damaged header is unreadable, and so is one the audit could not
    // open; either way listing pg_wal errs towards more findings.
    let wal = if wal_files
        .iter()
        .any(|e| matches!(e.status, Status::Sealed | Status::Unreadable))
    {
        let files = wal_files.len();
        entries.extend(wal_files);
        WalAudit::Audited { files }
    } else {
        WalAudit::NotSealed {
            files: wal_files.len(),
        }
    };
    for err in &w.errors {
        entries.push(Entry {
            path: display_path(&err.path, &dd, &locations),
            class: None,
            kind: "directory",
            size: None,
            logical_size: None,
            status: Status::Unreadable,
            epoch_id: None,
            detail: Some(format!("cannot be listed: {}", err.error)),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Report {
        system_identifier: system_identifier(&dd),
        data_directory: dd,
        root,
        pg_version,
        entries,
        tablespaces,
        wal,
    })
}

/// The entry for one covered name found by the walker (`None`: it vanished
/// under the audit, which only a live directory does).
fn entry_of(found: &Found, dd: &Path, locations: &[(PathBuf, String)]) -> Option<Entry> {
    let path = display_path(&found.path, dd, locations);
    let kind = kind_name(found.kind, &found.path);
    let mut e = Entry {
        path,
        class: Some(found.class),
        kind,
        size: None,
        logical_size: None,
        status: Status::Unexpected,
        epoch_id: None,
        detail: None,
    };
    match found.kind {
        EntryKind::Regular(_) => match read_head(&found.path) {
            Read64::File { head, size } => {
                let (status, epoch, detail) = judge(&head, size);
                e.size = Some(size);
                e.logical_size = match status {
                    Status::Sealed => physical_to_logical_size(size).ok(),
                    Status::Plaintext => Some(size),
                    Status::Empty => Some(0),
                    Status::Unexpected | Status::Unreadable => None,
                };
                e.status = status;
                e.epoch_id = epoch;
                e.detail = detail;
            }
            Read64::Vanished => return None,
            Read64::Unexpected(why) => e.detail = Some(why),
            Read64::Failed(why) => {
                e.status = Status::Unreadable;
                e.detail = Some(why);
            }
        },
        EntryKind::Symlink => e.detail = Some("a symbolic link (never followed)".into()),
        EntryKind::Directory => e.detail = Some("a directory at a file's name".into()),
        EntryKind::Other => e.detail = Some(format!("a {kind} at a file's name")),
    }
    Some(e)
}

impl Report {
    /// Number of entries with `status`.
    #[must_use]
    pub fn count(&self, status: Status) -> usize {
        self.entries.iter().filter(|e| e.status == status).count()
    }

    /// Tablespaces whose location lies outside the copy.
    #[must_use]
    pub fn tablespaces_not_audited(&self) -> usize {
        self.tablespaces
            .iter()
            .filter(|t| t.audited_at.is_none())
            .count()
    }

    /// Plaintext, unexpected and unreadable entries, plus tablespaces that
    /// were not audited.
    #[must_use]
    pub fn findings(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.status.is_finding())
            .count()
            + self.tablespaces_not_audited()
    }

    /// No finding.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.findings() == 0
    }

    /// Sealed files per key epoch (hex epoch id).
    #[must_use]
    pub fn epochs(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in &self.entries {
            if let (Status::Sealed, Some(id)) = (e.status, e.epoch_id) {
                *m.entry(to_hex(&id)).or_insert(0) += 1;
            }
        }
        m
    }

    /// The report as JSON (`--json`).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                json!({
                    "path": e.path,
                    "class": e.class.map(|c| c.name()),
                    "kind": e.kind,
                    "size": e.size,
                    "logical_size": e.logical_size,
                    "status": e.status.name(),
                    "epoch_id": e.epoch_id.map(|id| to_hex(&id)),
                    "detail": e.detail,
                })
            })
            .collect();
        let tablespaces: Vec<Value> = self
            .tablespaces
            .iter()
            .map(|t| {
                json!({
                    "link": t.link,
                    "target": t.target,
                    "audited_at": t.audited_at,
                })
            })
            .collect();
        let mut summary = serde_json::Map::new();
        for s in Status::ALL {
            summary.insert(s.name().into(), json!(self.count(s)));
        }
        summary.insert(
            "tablespaces_not_audited".into(),
            json!(self.tablespaces_not_audited()),
        );
        json!({
            "report_version": REPORT_VERSION,
            "tool": format!("ephcrypt-audit {}", env!("CARGO_PKG_VERSION")),
            "data_directory": self.data_directory.display().to_string(),
            "root": self.root.as_ref().map(|r| r.display().to_string()),
            "pg_version": self.pg_version,
            "system_identifier": self.system_identifier.map(|s| s.to_string()),
            "entries": entries,
            "tablespaces": tablespaces,
            "wal": match self.wal {
                WalAudit::Audited { files } => json!({"audited": true, "files": files}),
                WalAudit::NotSealed { files } => json!({"audited": false, "files": files}),
            },
            "summary": summary,
            "epochs": self.epochs(),
            "findings": self.findings(),
            "result": if self.is_clean() { "clean" } else { "findings" },
        })
    }

    /// The report for people: one line per entry, then a summary.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ephcrypt-audit {}: {} (PostgreSQL {}, system identifier {})",
            env!("CARGO_PKG_VERSION"),
            self.data_directory.display(),
            self.pg_version,
            self.system_identifier
                .map_or_else(|| "unknown".to_string(), |s| s.to_string()),
        );
        for e in &self.entries {
            let size = e.size.map_or_else(|| "-".to_string(), |s| s.to_string());
            let note = match (e.epoch_id, &e.detail) {
                (Some(id), None) => format!("epoch {}", to_hex(&id)),
                (_, Some(d)) => d.clone(),
                (None, None) => String::new(),
            };
            let line = format!(
                "{:<10}  {:<14}  {:>12}  {}  {}",
                e.status.name(),
                e.class.map_or("-", |c| c.name()),
                size,
                e.path,
                note
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for t in &self.tablespaces {
            let target = t.target.as_deref().unwrap_or("(in place)");
            match &t.audited_at {
                Some(at) => {
                    let _ = writeln!(out, "tablespace  {} -> {target}: audited at {at}", t.link);
                }
                None => {
                    let _ = writeln!(
                        out,
                        "tablespace  {} -> {target}: NOT AUDITED (outside the copy{})",
                        t.link,
                        if self.root.is_none() {
                            "; give --root for a copy of a whole volume"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        let _ = match self.wal {
            WalAudit::Audited { files } => writeln!(
                out,
                "pg_wal      sealed WAL present (the wal class was on): all {files} WAL files audited above"
            ),
            WalAudit::NotSealed { files } => writeln!(
                out,
                "pg_wal      {files} WAL files, none sealed: durable WAL (the wal class was off), not audited"
            ),
        };
        let epochs = self.epochs();
        let _ = writeln!(
            out,
            "summary: {} entr{}: {} sealed ({} key epoch{}), {} empty, {} plaintext, {} unexpected, {} unreadable; {} of {} tablespaces not audited",
            self.entries.len(),
            if self.entries.len() == 1 { "y" } else { "ies" },
            self.count(Status::Sealed),
            epochs.len(),
            if epochs.len() == 1 { "" } else { "s" },
            self.count(Status::Empty),
            self.count(Status::Plaintext),
            self.count(Status::Unexpected),
            self.count(Status::Unreadable),
            self.tablespaces_not_audited(),
            self.tablespaces.len(),
        );
        if self.is_clean() {
            out.push_str("result: clean\n");
        } else {
            let _ = writeln!(out, "result: FINDINGS ({})", self.findings());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u16) -> Vec<u8> {
        let mut h = Vec::from(*MAGIC);
        h.extend_from_slice(&version.to_le_bytes());
        h.extend_from_slice(&64u16.to_le_bytes());
        h.extend_from_slice(&8192u32.to_le_bytes());
        h.extend_from_slice(&[0xe0; 16]); // epoch id
        h.extend_from_slice(&[0x11; 16]); // file id
        h.extend_from_slice(&[0x22; 16]); // tag (not checked without a key)
        h
    }

    #[test]
    fn judge_every_case() {
        let h = header(2);
        assert_eq!(judge(&h, 8192), (Status::Sealed, Some([0xe0; 16]), None));
        assert_eq!(judge(&h, 8192 + 8192).0, Status::Sealed);
        assert_eq!(judge(b"", 0), (Status::Empty, None, None));
        assert_eq!(judge(b"hello", 5).0, Status::Plaintext);
        assert_eq!(
            judge(b"PGEPH", 5).0,
            Status::Plaintext,
            "a prefix of the magic"
        );
        let (s, _, d) = judge(&h, 100);
        assert_eq!(s, Status::Unreadable, "inside page 0");
        assert!(d.unwrap().contains("size"));
        let (s, _, d) = judge(&header(1), 8220);
        assert_eq!(s, Status::Unreadable);
        assert!(d.unwrap().contains("version 1"));
        let (s, _, _) = judge(&h[..40], 40);
        assert_eq!(s, Status::Unreadable, "cut-off header");
        let mut zero_id = h.clone();
        zero_id[32..48].fill(0);
        assert_eq!(judge(&zero_id, 8192).0, Status::Unreadable);
        assert!(!Status::Sealed.is_finding() && !Status::Empty.is_finding());
        assert!(Status::Plaintext.is_finding() && Status::Unexpected.is_finding());
        assert!(Status::Unreadable.is_finding());
    }
}
