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
//!
//! [`walk`] also says which tablespace links it followed (and where) and
//! which directories it could not read, so that an offline audit can refuse
//! to call a copy clean when part of it was never looked at;
//! [`covered_entries`] is the entries alone (the live scan).

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
    /// A copy of a whole volume (or file system tree) at this directory,
    /// which stands for `/` of the original: an absolute link target
    /// `/srv/ts` is looked up as `<root>/srv/ts`, a relative one next to the
    /// link; either is followed only if it then lies inside the root (after
    /// resolving every symbolic link on the way).
    Rebased(&'a Path),
}

/// A `pg_tblspc/<oid>` entry and what the walk did with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablespaceLink {
    /// `<data_dir>/pg_tblspc/<oid>`.
    pub link: PathBuf,
    /// The link's target as stored (`None`: a plain directory, i.e. an
    /// in-place tablespace).
    pub target: Option<PathBuf>,
    /// The directory whose `PG_*` subdirectories were walked, or `None` if
    /// the policy did not allow following it.
    pub followed: Option<PathBuf>,
}

/// A directory the walk needed but could not list (anything but "does not
/// exist"), or an entry whose type could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkError {
    /// The directory or entry.
    pub path: PathBuf,
    /// The operating system's message.
    pub error: String,
}

/// Everything [`walk`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// Every covered entry, sorted by path.
    pub found: Vec<Found>,
    /// Every entry of `pg_tblspc`, sorted by path.
    pub tablespaces: Vec<TablespaceLink>,
    /// Directories (or entries) that could not be read, sorted by path.
    pub errors: Vec<WalkError>,
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

fn entries(dir: &Path, errors: &mut Vec<WalkError>) -> Vec<(PathBuf, fs::Metadata)> {
    let fail = |errors: &mut Vec<WalkError>, path: PathBuf, e: std::io::Error| {
        if e.kind() != std::io::ErrorKind::NotFound {
            errors.push(WalkError {
                path,
                error: e.to_string(),
            });
        }
    };
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            fail(errors, dir.to_path_buf(), e);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for e in rd {
        match e {
            Ok(e) => {
                let p = e.path();
                match fs::symlink_metadata(&p) {
                    Ok(m) => out.push((p, m)),
                    Err(err) => fail(errors, p, err),
                }
            }
            Err(err) => fail(errors, dir.to_path_buf(), err),
        }
    }
    out
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
fn walk_temp(dir: &Path, data_dir: &[u8], w: &mut Walk) {
    for (p, m) in entries(dir, &mut w.errors) {
        if report(&mut w.found, p.clone(), &m, data_dir) {
            continue;
        }
        if m.file_type().is_dir() {
            walk_temp(&p, data_dir, w);
        }
    }
}

/// Entries directly in `dir` (database and slot directories).
fn walk_flat(dir: &Path, data_dir: &[u8], w: &mut Walk) {
    for (p, m) in entries(dir, &mut w.errors) {
        report(&mut w.found, p, &m, data_dir);
    }
}

fn subdirs(dir: &Path, errors: &mut Vec<WalkError>) -> Vec<PathBuf> {
    entries(dir, errors)
        .into_iter()
        .filter(|(_, m)| m.file_type().is_dir())
        .map(|(p, _)| p)
        .collect()
}

/// Whether `path` lies inside `root` once every symbolic link is resolved.
fn resolves_inside(path: &Path, root: &Path) -> bool {
    fs::canonicalize(path)
        .ok()
        .zip(fs::canonicalize(root).ok())
        .is_some_and(|(t, r)| t.starts_with(r))
}

/// Where the walk looks for the `PG_*` directories of one `pg_tblspc` entry
/// under `policy` (`None`: not followed).
fn tablespace_location(
    link: &Path,
    target: Option<&Path>,
    policy: Tablespaces<'_>,
) -> Option<PathBuf> {
    let beside = |t: &Path| link.parent().map_or(t.to_path_buf(), |p| p.join(t));
    let Some(target) = target else {
        // A plain directory (in-place tablespace): part of the data directory.
        return match policy {
            Tablespaces::Follow => Some(link.to_path_buf()),
            Tablespaces::Within(root) | Tablespaces::Rebased(root) => {
                resolves_inside(link, root).then(|| link.to_path_buf())
            }
        };
    };
    match policy {
        Tablespaces::Follow => Some(if target.is_absolute() {
            target.to_path_buf()
        } else {
            beside(target)
        }),
        Tablespaces::Within(root) => {
            let t = if target.is_absolute() {
                target.to_path_buf()
            } else {
                beside(target)
            };
            resolves_inside(&t, root).then_some(t)
        }
        Tablespaces::Rebased(root) => {
            let t = match target.strip_prefix("/") {
                Ok(rest) => root.join(rest),
                Err(_) => beside(target),
            };
            resolves_inside(&t, root).then_some(t)
        }
    }
}

/// The `PG_*` directories of every tablespace under `data_dir`.
fn tablespace_roots(data_dir: &Path, policy: Tablespaces<'_>, w: &mut Walk) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for (link, _) in entries(&data_dir.join("pg_tblspc"), &mut w.errors) {
        let target = fs::read_link(&link).ok();
        let followed = tablespace_location(&link, target.as_deref(), policy);
        if let Some(location) = &followed {
            roots.extend(subdirs(location, &mut w.errors).into_iter().filter(|d| {
                d.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("PG_"))
            }));
        }
        w.tablespaces.push(TablespaceLink {
            link,
            target,
            followed,
        });
    }
    roots
}

/// Every covered entry under `data_dir`, which tablespaces were followed,
/// and what could not be read.
pub fn walk(data_dir: &Path, policy: Tablespaces<'_>) -> Walk {
    let dd = data_dir.as_os_str().as_encoded_bytes();
    let mut w = Walk::default();
    let mut roots = vec![data_dir.join("base")];
    let ts = tablespace_roots(data_dir, policy, &mut w);
    roots.extend(ts);
    for root in roots {
        walk_temp(&root.join("pgsql_tmp"), dd, &mut w);
        for db in subdirs(&root, &mut w.errors) {
            if db.file_name().is_some_and(|n| n != "pgsql_tmp") {
                walk_flat(&db, dd, &mut w);
            }
        }
    }
    for slot in subdirs(&data_dir.join("pg_replslot"), &mut w.errors) {
        walk_flat(&slot, dd, &mut w);
    }
    w.found.sort_by(|a, b| a.path.cmp(&b.path));
    w.tablespaces.sort_by(|a, b| a.link.cmp(&b.link));
    w.errors.sort_by(|a, b| a.path.cmp(&b.path));
    w
}

/// Every covered entry under `data_dir` (sorted by path).
pub fn covered_entries(data_dir: &Path, policy: Tablespaces<'_>) -> Vec<Found> {
    walk(data_dir, policy).found
}

/// Every entry of the `wal` class under `data_dir/pg_wal` (sorted by
/// path). Separate from [`covered_entries`]: WAL is opt-in, so an audit walks
/// it only where the class is on (elsewhere pg_wal is durable data, out of
/// scope, and would read as plaintext). An unreadable pg_wal gives no
/// entries here; the server's own start-up and recovery report it.
pub fn wal_entries(data_dir: &Path) -> Vec<Found> {
    let dd = data_dir.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (p, m) in entries(&data_dir.join("pg_wal"), &mut errors) {
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

#[cfg(test)]
mod walk_report_tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("ephcrypt-walk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn rebased_links_are_looked_up_under_the_root_and_reported() {
        // A copy of a volume at `snap`: the data directory and a tablespace
        // at their original absolute paths below it, the link still naming
        // the original location.
        let snap = scratch("rebased");
        let dd = snap.join("var/lib/pg/data");
        fs::create_dir_all(dd.join("base/pgsql_tmp")).unwrap();
        fs::create_dir_all(dd.join("pg_tblspc")).unwrap();
        let ts = snap.join("srv/ts1/PG_15_202209061/pgsql_tmp");
        fs::create_dir_all(&ts).unwrap();
        fs::write(ts.join("pgsql_tmp7.0"), b"x").unwrap();
        std::os::unix::fs::symlink("/srv/ts1", dd.join("pg_tblspc/16500")).unwrap();
        // A relative link that climbs out of the copy is never followed.
        std::os::unix::fs::symlink("../../../../../../../../../etc", dd.join("pg_tblspc/16501"))
            .unwrap();
        // An in-place tablespace (a plain directory).
        fs::create_dir_all(dd.join("pg_tblspc/16502/PG_15_202209061/5")).unwrap();
        fs::write(dd.join("pg_tblspc/16502/PG_15_202209061/5/t3_9"), b"y").unwrap();

        let w = walk(&dd, Tablespaces::Rebased(&snap));
        let names: Vec<_> = w
            .found
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["pgsql_tmp7.0", "t3_9"], "{w:?}");
        assert_eq!(w.tablespaces.len(), 3);
        assert_eq!(
            w.tablespaces[0].target.as_deref(),
            Some(Path::new("/srv/ts1"))
        );
        assert_eq!(
            w.tablespaces[0].followed.as_deref(),
            Some(&*snap.join("srv/ts1"))
        );
        assert_eq!(w.tablespaces[1].followed, None, "climbs out of the copy");
        assert_eq!(w.tablespaces[2].target, None);
        assert!(w.tablespaces[2].followed.is_some());
        assert!(w.errors.is_empty(), "{:?}", w.errors);

        // Within the data directory only: the absolute link is not followed
        // (on this machine /srv/ts1 does not exist, but it must not matter).
        let w = walk(&dd, Tablespaces::Within(&dd));
        assert_eq!(w.found.len(), 1);
        assert_eq!(w.tablespaces[0].followed, None);
        assert!(w.tablespaces[2].followed.is_some());
        fs::remove_dir_all(&snap).unwrap();
    }

    #[test]
    fn directories_that_cannot_be_listed_are_reported() {
        let root = scratch("errors");
        let dd = root.join("data");
        fs::create_dir_all(dd.join("base/5")).unwrap();
        // Not a directory where the walk must list one (ENOTDIR: reported
        // whatever the user's privileges, unlike EACCES under root).
        fs::write(dd.join("base/pgsql_tmp"), b"").unwrap();
        fs::write(dd.join("pg_replslot"), b"").unwrap();
        let w = walk(&dd, Tablespaces::Within(&dd));
        let paths: Vec<_> = w.errors.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            paths,
            [dd.join("base/pgsql_tmp"), dd.join("pg_replslot")],
            "{w:?}"
        );
        // Directories that do not exist (no tablespace, no slot yet) are not
        // errors.
        fs::remove_file(dd.join("base/pgsql_tmp")).unwrap();
        fs::remove_file(dd.join("pg_replslot")).unwrap();
        assert!(walk(&dd, Tablespaces::Within(&dd)).errors.is_empty());
        fs::remove_dir_all(&root).unwrap();
    }
}
