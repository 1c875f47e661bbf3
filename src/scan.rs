//! `pg_ephcrypt_scan()`: the on-disk audit. Walks every directory of every
//! covered class (`ephcrypt_classify::walk`) and reports each entry at a
//! covered name with its status. Reads go through this library's own libc
//! imports, not the postgres executable's GOT, so they see the raw bytes on
//! disk.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ephcrypt_classify::walk::{wal_entries, walk, EntryKind, Tablespaces};

use ephcrypt_classify::{classify_named, ArtifactClass};
use ephcrypt_format::{
    physical_to_logical_size, EpochKey, FileCipher, FileName, FormatError, Header, HEADER_LEN,
    MAX_NAME_LEN,
};
use pgrx::prelude::*;

use crate::epoch;

/// What a covered file on disk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// Header of the current epoch, authenticated with the current key.
    EncryptedCurrent,
    /// Our header, written under another (dead) epoch.
    EncryptedStale,
    /// Not our format: plaintext on disk.
    Plaintext,
    /// Our magic, but a corrupt or forged header, an impossible size, or a
    /// read error.
    Unreadable,
    /// Zero bytes: created, nothing written yet (no data on disk).
    Empty,
    /// Not a regular file: a FIFO, symlink, directory or device at a covered
    /// name. The shims refuse to put data there; something else made it.
    Unexpected,
}

impl FileStatus {
    /// Every status, in report order.
    pub const ALL: [FileStatus; 6] = [
        FileStatus::EncryptedCurrent,
        FileStatus::EncryptedStale,
        FileStatus::Plaintext,
        FileStatus::Unreadable,
        FileStatus::Empty,
        FileStatus::Unexpected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FileStatus::EncryptedCurrent => "encrypted_current",
            FileStatus::EncryptedStale => "encrypted_stale",
            FileStatus::Plaintext => "plaintext",
            FileStatus::Unreadable => "unreadable",
            FileStatus::Empty => "empty",
            FileStatus::Unexpected => "unexpected",
        }
    }
}

/// One covered file found on disk, or a directory the scan needed and could
/// not list (class `None`, status unreadable).
pub struct ScannedFile {
    /// Path relative to the data directory.
    pub path: String,
    pub class: Option<ArtifactClass>,
    pub size: u64,
    pub logical_size: Option<u64>,
    pub status: FileStatus,
}

/// Status of a file from its first bytes, size, canonical name and the
/// current epoch.
pub fn status_of(
    head: &[u8],
    size: u64,
    name: Option<&FileName<'_>>,
    key: Option<&EpochKey>,
    epoch_id: &[u8; 16],
) -> FileStatus {
    if size == 0 {
        return FileStatus::Empty;
    }
    match Header::parse(head) {
        Err(FormatError::BadMagic) => FileStatus::Plaintext,
        Err(_) => FileStatus::Unreadable,
        Ok(h) if &h.epoch_id != epoch_id => FileStatus::EncryptedStale,
        Ok(_) => {
            let (Some(key), Some(name)) = (key, name) else {
                return FileStatus::Unreadable;
            };
            let Ok(header) = <&[u8; HEADER_LEN]>::try_from(&head[..HEADER_LEN]) else {
                return FileStatus::Unreadable;
            };
            if FileCipher::open(key, epoch_id, name, header).is_err()
                || physical_to_logical_size(size).is_err()
            {
                FileStatus::Unreadable
            } else {
                FileStatus::EncryptedCurrent
            }
        }
    }
}

fn read_head(path: &Path) -> std::io::Result<(Vec<u8>, u64)> {
    // O_NOFOLLOW|O_NONBLOCK: the walker saw a regular file, but it may have
    // been replaced since; never follow a link or block on a FIFO.
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    let size = meta.len();
    let mut head = Vec::with_capacity(HEADER_LEN);
    f.by_ref().take(HEADER_LEN as u64).read_to_end(&mut head)?;
    Ok((head, size))
}

/// Scan the data directory: every covered file with its status. Covered
/// means "of a covered class", whether or not the class is enabled: a
/// disabled class shows up as plaintext, which is the point of an audit.
/// The opt-in `wal` class is the exception: pg_wal is walked only where the
/// class is on (elsewhere it is durable data, out of scope); its files are
/// checked against the WAL key.
pub fn scan(data_dir: &Path) -> Vec<ScannedFile> {
    let started_us = crate::time::now_unix_us();
    let page = epoch::key_page();
    let key = page.and_then(|p| p.epoch_key());
    let epoch_id = page.map(|p| p.epoch_id()).unwrap_or([0; 16]);
    let wal_page = ephcrypt_interpose::walkey::page();
    let wal_key = wal_page.and_then(|p| p.epoch_key());
    let wal_epoch = wal_page.map(|p| p.epoch_id()).unwrap_or([0; 16]);
    let dir_bytes = data_dir.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let rel_of = |p: &Path| p.strip_prefix(data_dir).unwrap_or(p).display().to_string();
    let walked = walk(data_dir, Tablespaces::Follow);
    // What the walk could not list hides whatever is in it, plaintext
    // included: a scan that skipped it silently would look clean.
    let unlisted = |path: String| ScannedFile {
        path,
        class: None,
        size: 0,
        logical_size: None,
        status: FileStatus::Unreadable,
    };
    for err in &walked.errors {
        out.push(unlisted(rel_of(&err.path)));
    }
    for t in &walked.tablespaces {
        // A tablespace whose location is gone (a dangling pg_tblspc link):
        // the walk finds nothing there and says nothing.
        if let Some(location) = &t.followed {
            if fs::symlink_metadata(location).is_err() {
                out.push(unlisted(rel_of(&t.link)));
            }
        }
    }
    let mut found_all = walked.found;
    if crate::wal::enabled() {
        found_all.extend(wal_entries(data_dir));
    }
    for found in found_all {
        let (key, epoch_id) = if found.class == ArtifactClass::Wal {
            (wal_key, &wal_epoch)
        } else {
            (key, &epoch_id)
        };
        let rel = found
            .path
            .strip_prefix(data_dir)
            .unwrap_or(&found.path)
            .display()
            .to_string();
        let mut name_buf = [0u8; MAX_NAME_LEN];
        let name =
            classify_named(found.path.as_os_str().as_encoded_bytes(), dir_bytes).and_then(|c| {
                let n = c.name.write_to(&mut name_buf)?;
                FileName::new(c.class.index() as u8, &name_buf[..n]).ok()
            });
        let (status, size) = match found.kind {
            EntryKind::Regular(_) => match read_head(&found.path) {
                Ok((head, size)) => (status_of(&head, size, name.as_ref(), key, epoch_id), size),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => (FileStatus::Unexpected, 0),
                Err(_) => (FileStatus::Unreadable, 0),
            },
            EntryKind::Symlink | EntryKind::Directory | EntryKind::Other => {
                (FileStatus::Unexpected, 0)
            }
        };
        let logical_size = match status {
            FileStatus::EncryptedCurrent | FileStatus::EncryptedStale => {
                physical_to_logical_size(size).ok()
            }
            FileStatus::Plaintext => Some(size),
            FileStatus::Empty => Some(0),
            FileStatus::Unreadable | FileStatus::Unexpected => None,
        };
        out.push(ScannedFile {
            path: rel,
            class: Some(found.class),
            size,
            logical_size,
            status,
        });
    }
    crate::lastscan::record(&out, started_us);
    out
}

/// The data directory of this server.
pub fn data_dir() -> PathBuf {
    // SAFETY: DataDir is a valid C string for the life of the backend.
    let dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) };
    PathBuf::from(dir.to_string_lossy().into_owned())
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn pg_ephcrypt_scan() -> TableIterator<
    'static,
    (
        name!(path, String),
        name!(class, Option<&'static str>),
        name!(size, i64),
        name!(logical_size, Option<i64>),
        name!(status, &'static str),
    ),
> {
    epoch::require_preloaded();
    let rows: Vec<_> = scan(&data_dir())
        .into_iter()
        .map(|f| {
            (
                f.path,
                f.class.map(|c| c.name()),
                i64::try_from(f.size).unwrap_or(i64::MAX),
                f.logical_size.and_then(|s| i64::try_from(s).ok()),
                f.status.name(),
            )
        })
        .collect();
    TableIterator::new(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_classifies_headers() {
        let key = EpochKey::from_bytes([7; 32]);
        let epoch = [1u8; 16];
        let name = FileName::new(0, b"pgsql_tmp1.0").unwrap();
        let other_name = FileName::new(0, b"pgsql_tmp1.1").unwrap();
        let (_, header) = FileCipher::create(&key, &epoch, &[9; 16], &name).unwrap();
        let ok = |h: &[u8], size, n: Option<&FileName<'_>>, k: &EpochKey, e: &[u8; 16]| {
            status_of(h, size, n, Some(k), e)
        };
        assert_eq!(
            ok(&header, 8192, Some(&name), &key, &epoch),
            FileStatus::EncryptedCurrent
        );
        assert_eq!(
            ok(&header, 8192, Some(&name), &key, &[2; 16]),
            FileStatus::EncryptedStale
        );
        let other = EpochKey::from_bytes([8; 32]);
        assert_eq!(
            ok(&header, 8192, Some(&name), &other, &epoch),
            FileStatus::Unreadable,
            "forged epoch id"
        );
        assert_eq!(
            ok(&header, 8192, Some(&other_name), &key, &epoch),
            FileStatus::Unreadable,
            "moved under another name"
        );
        let mut bad = header;
        bad[40] ^= 1;
        assert_eq!(
            ok(&bad, 8192, Some(&name), &key, &epoch),
            FileStatus::Unreadable
        );
        assert_eq!(
            ok(b"hello plaintext", 15, Some(&name), &key, &epoch),
            FileStatus::Plaintext
        );
        assert_eq!(ok(b"", 0, Some(&name), &key, &epoch), FileStatus::Empty);
        assert_eq!(
            ok(&header, 100, Some(&name), &key, &epoch),
            FileStatus::Unreadable,
            "impossible size (inside page 0)"
        );
        assert_eq!(
            status_of(&header, 8192, None, Some(&key), &epoch),
            FileStatus::Unreadable,
            "no canonical name"
        );
    }
}
