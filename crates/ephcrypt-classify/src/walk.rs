//! Finding every covered file under a data directory, for the on-disk audit
//! (`pg_ephcrypt_scan()`) and the offline audit of a volume copy.
//!
//! Walks the directories where covered files live — `base/pgsql_tmp` (with
//! its file sets), every database directory, the same under each
//! tablespace's `PG_*` directory, and `pg_replslot/*` — and reports every
//! entry whose path the classifier covers, *whatever its type*: a FIFO, a
//! symlink or a directory at a covered name is reported as such (never
//! followed), because the shims refuse to put data there and an audit must
//! show it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{classify, ArtifactClass};

/// What kind of file system object a covered entry is (from `lstat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file of this many bytes.
    Regular(u64),
    /// A symbolic link (not followed).
    Symlink,
    /// A directory at a file's name.
    Directory,
    /// A FIFO, socket or device.
    Other,
}

/// A covered entry found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Full path.
    pub path: PathBuf,
    /// Its class.
    pub class: ArtifactClass,
    /// What it is.
    pub kind: EntryKind,
}

/// Where tablespace directories are looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tablespaces<'a> {
    /// Follow `pg_tblspc/<oid>` links wherever they point (a live server).
    Follow,
    /// Follow them only when their target lies inside this directory (a copy
    /// of a volume: an absolute link would name the *original* location).
    Within(&'a Path),
}

fn kind_of(meta: &fs::Metadata) -> EntryKind {
    let t = meta.file_type();
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Directory
    } else if t.is_file() {
        EntryKind::Regular(meta.len())
    } else {
        EntryKind::Other
    }
}

fn entries(dir: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let p = e.path();
            fs::symlink_metadata(&p).ok().map(|m| (p, m))
        })
        .collect()
}

fn report(out: &mut Vec<Found>, path: PathBuf, meta: &fs::Metadata, data_dir: &[u8]) -> bool {
    match classify(path.as_os_str().as_encoded_bytes(), data_dir) {
        Some(class) => {
            out.push(Found {
                path,
                class,
                kind: kind_of(meta),
            });
            true
        }
        None => false,
    }
}

/// `pgsql_tmp` and its file-set directories.
fn walk_temp(dir: &Path, data_dir: &[u8], out: &mut Vec<Found>) {
    for (p, m) in entries(dir) {
        if report(out, p.clone(), &m, data_dir) {
            continue;
        }
        if m.file_type().is_dir() {
            walk_temp(&p, data_dir, out);
        }
    }
}

/// Entries directly in `dir` (database and slot directories).
fn walk_flat(dir: &Path, data_dir: &[u8], out: &mut Vec<Found>) {
    for (p, m) in entries(dir) {
        report(out, p, &m, data_dir);
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    entries(dir)
        .into_iter()
        .filter(|(_, m)| m.file_type().is_dir())
        .map(|(p, _)| p)
        .collect()
}

/// The `PG_*` directories of every tablespace under `data_dir`.
fn tablespace_roots(data_dir: &Path, policy: Tablespaces<'_>) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for (link, _) in entries(&data_dir.join("pg_tblspc")) {
        let target = match fs::read_link(&link) {
            Ok(t) if t.is_absolute() => t,
            Ok(t) => link.parent().map_or(t.clone(), |p| p.join(t)),
            Err(_) => link.clone(), // a plain directory (in-place tablespace)
        };
        if let Tablespaces::Within(root) = policy {
            let inside = fs::canonicalize(&target)
                .ok()
                .zip(fs::canonicalize(root).ok())
                .is_some_and(|(t, r)| t.starts_with(r));
            if !inside {
                continue;
            }
        }
        roots.extend(subdirs(&target).into_iter().filter(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("PG_"))
        }));
    }
    roots
}

/// Every covered entry under `data_dir` (sorted by path).
pub fn covered_entries(data_dir: &Path, policy: Tablespaces<'_>) -> Vec<Found> {
    let dd = data_dir.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let mut roots = vec![data_dir.join("base")];
    roots.extend(tablespace_roots(data_dir, policy));
    for root in roots {
        walk_temp(&root.join("pgsql_tmp"), dd, &mut out);
        for db in subdirs(&root) {
            if db.file_name().is_some_and(|n| n != "pgsql_tmp") {
                walk_flat(&db, dd, &mut out);
            }
        }
    }
    for slot in subdirs(&data_dir.join("pg_replslot")) {
        walk_flat(&slot, dd, &mut out);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Every entry of the `wal` class under `data_dir/pg_wal` (sorted by
/// path). Separate from [`covered_entries`]: WAL is opt-in, so an audit walks
/// it only where the class is on (elsewhere pg_wal is durable data, out of
/// scope, and would read as plaintext).
pub fn wal_entries(data_dir: &Path) -> Vec<Found> {
    let dd = data_dir.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for (p, m) in entries(&data_dir.join("pg_wal")) {
        // The path as PostgreSQL names it (pg_wal may be a symlink).
        let rel = Path::new("pg_wal").join(p.file_name().unwrap_or_default());
        if classify(rel.as_os_str().as_encoded_bytes(), dd) == Some(ArtifactClass::Wal) {
            out.push(Found {
                path: p,
                class: ArtifactClass::Wal,
                kind: kind_of(&m),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_entries_are_the_wal_class_only() {
        let root = std::env::temp_dir().join(format!("ephcrypt-walk-wal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dd = root.join("data");
        fs::create_dir_all(dd.join("pg_wal/archive_status")).unwrap();
        for f in [
            "000000010000000000000001",
            "000000010000000000000002.partial",
            "xlogtemp.77",
            "00000002.history",
            "RECOVERYXLOG",
            "archive_status/000000010000000000000001.ready",
        ] {
            fs::write(dd.join("pg_wal").join(f), b"x").unwrap();
        }
        fs::create_dir(dd.join("pg_wal/000000010000000000000003")).unwrap();
        let found = wal_entries(&dd);
        let names: Vec<(String, EntryKind)> = found
            .iter()
            .map(|f| {
                (
                    f.path.file_name().unwrap().to_string_lossy().into_owned(),
                    f.kind,
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("000000010000000000000001".into(), EntryKind::Regular(1)),
                (
                    "000000010000000000000002.partial".into(),
                    EntryKind::Regular(1)
                ),
                ("000000010000000000000003".into(), EntryKind::Directory),
                ("xlogtemp.77".into(), EntryKind::Regular(1)),
            ]
        );
        assert!(found.iter().all(|f| f.class == ArtifactClass::Wal));
        // The covered-class walk never looks into pg_wal.
        assert!(covered_entries(&dd, Tablespaces::Follow).is_empty());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn finds_every_kind_at_covered_names_and_nothing_else() {
        let root = std::env::temp_dir().join(format!("ephcrypt-walk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dd = root.join("data");
        for d in [
            "base/pgsql_tmp/pgsql_tmp1.0.fileset",
            "base/16384",
            "pg_replslot/s1",
            "pg_tblspc",
        ] {
            fs::create_dir_all(dd.join(d)).unwrap();
        }
        let ts = root.join("ts1/PG_15_202209061");
        fs::create_dir_all(ts.join("pgsql_tmp")).unwrap();
        fs::create_dir_all(ts.join("16384")).unwrap();
        std::os::unix::fs::symlink(root.join("ts1"), dd.join("pg_tblspc/16500")).unwrap();
        fs::write(dd.join("base/pgsql_tmp/pgsql_tmp1.1"), b"abc").unwrap();
        fs::write(dd.join("base/pgsql_tmp/pgsql_tmp1.0.fileset/0.0"), b"").unwrap();
        fs::write(dd.join("base/16384/t3_16385"), b"x").unwrap();
        fs::write(dd.join("base/16384/16385"), b"durable, not covered").unwrap();
        fs::write(ts.join("16384/t4_1"), b"y").unwrap();
        fs::write(ts.join("pgsql_tmp/pgsql_tmp2.0"), b"z").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dd.join("base/pgsql_tmp/pgsql_tmp1.2")).unwrap();
        fs::create_dir(dd.join("base/pgsql_tmp/pgsql_tmp1.3")).unwrap();
        let fifo = dd.join("pg_replslot/s1/xid-5-lsn-0-1.spill");
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        fs::write(dd.join("pg_replslot/s1/state"), b"not covered").unwrap();

        let found = covered_entries(&dd, Tablespaces::Follow);
        let names: Vec<(String, EntryKind)> = found
            .iter()
            .map(|f| {
                (
                    f.path.file_name().unwrap().to_string_lossy().into_owned(),
                    f.kind,
                )
            })
            .collect();
        let want = [
            ("t3_16385", EntryKind::Regular(1)),
            ("0.0", EntryKind::Regular(0)),
            ("pgsql_tmp1.1", EntryKind::Regular(3)),
            ("pgsql_tmp1.2", EntryKind::Symlink),
            ("pgsql_tmp1.3", EntryKind::Directory),
            ("xid-5-lsn-0-1.spill", EntryKind::Other),
            ("t4_1", EntryKind::Regular(1)),
            ("pgsql_tmp2.0", EntryKind::Regular(1)),
        ];
        for w in want {
            assert!(
                names.contains(&(w.0.to_string(), w.1)),
                "{w:?} in {names:?}"
            );
        }
        assert_eq!(names.len(), want.len(), "{names:?}");
        // A copy: a link pointing outside the copied directory is not followed.
        let only_inside = covered_entries(&dd, Tablespaces::Within(&dd));
        assert_eq!(only_inside.len(), want.len() - 2);
        let inside_root = covered_entries(&dd, Tablespaces::Within(&root));
        assert_eq!(inside_root.len(), want.len());
        fs::remove_dir_all(&root).unwrap();
    }
}
