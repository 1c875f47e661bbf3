//! Classification of PostgreSQL file paths into pg_ephcrypt's artifact
//! classes, and each covered file's *canonical name*.
//!
//! [`classify`] receives the path exactly as PostgreSQL passes it to
//! `open()`, `unlink()`, `stat()`...: usually relative to the data directory
//! (the server's working directory), e.g. `base/pgsql_tmp/pgsql_tmp1234.0`,
//! sometimes absolute. The libc shims call it on every such call the server
//! makes, so it never allocates and scans the path once from the end. The
//! on-disk audit (`pg_ephcrypt_scan()`, the offline audit) uses the same
//! rules, so what the shims seal and what the audit expects sealed agree.
//!
//! Paths are taken lexically: empty components (`a//b`) and `.` components
//! are ignored; a path with a `..` component, or one that ends in `/` or
//! `/.` (a directory), is never classified (PostgreSQL never builds such
//! paths for these files).
//!
//! Recognised forms (`<T>` = `base` or `pg_tblspc/<oid>/PG_<major>_<catversion>`,
//! relative to the data directory):
//!
//! | class | path | canonical name |
//! |---|---|---|
//! | `temp_files` | `<T>/pgsql_tmp/pgsql_tmp<pid>.<n>` | `pgsql_tmp<pid>.<n>` |
//! | `temp_files` | `<T>/pgsql_tmp/pgsql_tmp<pid>.<n>.fileset/<any name>` | `pgsql_tmp<pid>.<n>.fileset/<name>` |
//! | `temp_relations` | `<T>/<dboid>/t<backend>_<relfilenode>[_fsm\|_vm\|_init][.<seg>]` | `<dboid>/t<backend>_<relfilenode>...` |
//! | `logical_spill` | `pg_replslot/<slot>/xid-<xid>-lsn-<X>-<Y>.spill` (X, Y hex) | `<slot>/xid-...spill` |
//! | `wal` (opt-in) | `pg_wal/<24 hex>`, `pg_wal/<24 hex>.partial`, `pg_wal/xlogtemp.<pid>` | [`WAL_NAME`] for all |
//!
//! (`base` itself has no `PG_*` level: `base/pgsql_tmp/...`, `base/<db>/...`.)
//! An absolute path is first made relative by removing the data directory;
//! any absolute path may also be a tablespace location (the target of the
//! `pg_tblspc/<oid>` symlink, anywhere in the file system) and is accepted
//! in the forms `<anything>/PG_<d>_<d>/pgsql_tmp/pgsql_tmp<pid>.<n>`,
//! `<anything>/PG_<d>_<d>/pgsql_tmp/pgsql_tmp<pid>.<n>.fileset/<name>` and
//! `<anything>/PG_<d>_<d>/<dboid>/t<backend>_<relfilenode>...`.
//!
//! The canonical name is the part of the path that names the file *within its
//! class*; it is the same whether the file is reached through the data
//! directory, `pg_tblspc/<oid>/...` or the tablespace's real location, so the
//! format can bind a file to it (a file moved or copied under another name
//! does not authenticate). It deliberately leaves out the tablespace: the
//! real location of a tablespace does not contain its OID.
//!
//! WAL files are renamed all the time (`xlogtemp.<pid>` to a segment name,
//! recycling to a future name, the last segment to `.partial`), so their
//! canonical name is the class's one constant name [`WAL_NAME`]: a rename
//! keeps them readable, and PostgreSQL's own page header check
//! (`xlp_pageaddr`) binds each page to its position (docs/DECISIONS.md).
//! WAL paths are matched relative to the data directory (PostgreSQL always
//! names them `pg_wal/...`) or absolute under it, never elsewhere.
//!
//! Everything else — other files in `pg_wal` (`*.history`, `*.backup`,
//! `archive_status/`, `RECOVERYXLOG`), `pg_stat_tmp`, `pg_notify`, `pg_dynshmem`, DSM
//! segments, durable relation files `base/<db>/<relfilenode>`, directories
//! such as `base/pgsql_tmp` or `....fileset` — is not classified.
#![forbid(unsafe_code)]

pub mod walk;

use std::fmt;
use std::str::FromStr;

/// The error type of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// An artifact class name is not known.
    #[error(
        "unknown artifact class {0:?} (expected temp_files, temp_relations, logical_spill or wal)"
    )]
    UnknownClass(String),
}

/// A class of transient artifact that may be encrypted. The discriminant is
/// the class's one index, used by bit sets, counters and the format's name
/// binding alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ArtifactClass {
    /// BufFile temp files and shared file sets (`pgsql_tmp`).
    TempFiles = 0,
    /// Files of temporary relations (`t<backend>_<relfilenode>`).
    TempRelations = 1,
    /// Logical decoding spill files (`pg_replslot/*/xid-*.spill`).
    LogicalSpill = 2,
    /// WAL segments (`pg_wal/<segment>`, `.partial`, `xlogtemp.<pid>`):
    /// opt-in, for servers whose durability lives elsewhere.
    Wal = 3,
}

impl ArtifactClass {
    /// Number of classes.
    pub const COUNT: usize = 4;

    /// Every class, in index order.
    pub const ALL: [ArtifactClass; Self::COUNT] = [
        ArtifactClass::TempFiles,
        ArtifactClass::TempRelations,
        ArtifactClass::LogicalSpill,
        ArtifactClass::Wal,
    ];

    /// The classes sealed when `pg_ephcrypt.classes` is not set: all but
    /// the opt-in `wal`.
    pub const DEFAULT: [ArtifactClass; 3] = [
        ArtifactClass::TempFiles,
        ArtifactClass::TempRelations,
        ArtifactClass::LogicalSpill,
    ];

    /// The class's index (0-based, dense).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The class's bit in a bit set of classes.
    #[inline]
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The class with this index.
    pub const fn from_index(index: usize) -> Option<ArtifactClass> {
        if index < Self::COUNT {
            Some(Self::ALL[index])
        } else {
            None
        }
    }

    /// The class name used in settings and messages.
    pub const fn name(&self) -> &'static str {
        match self {
            ArtifactClass::TempFiles => "temp_files",
            ArtifactClass::TempRelations => "temp_relations",
            ArtifactClass::LogicalSpill => "logical_spill",
            ArtifactClass::Wal => "wal",
        }
    }

    /// Parses a class name (surrounding ASCII white space ignored, ASCII
    /// case-insensitive).
    pub fn from_name(name: &str) -> Option<ArtifactClass> {
        let name = name.trim_ascii();
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// Parses a comma-separated list of class names (e.g. a setting's value).
    /// Empty items are ignored, duplicates removed, order kept; an empty
    /// string gives an empty list.
    pub fn parse_list(list: &str) -> Result<Vec<ArtifactClass>, ClassifyError> {
        let mut out = Vec::with_capacity(Self::ALL.len());
        for item in list.split(',') {
            if item.trim_ascii().is_empty() {
                continue;
            }
            let class = item.parse::<ArtifactClass>()?;
            if !out.contains(&class) {
                out.push(class);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for ArtifactClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ArtifactClass {
    type Err = ClassifyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ArtifactClass::from_name(s)
            .ok_or_else(|| ClassifyError::UnknownClass(s.trim_ascii().to_owned()))
    }
}

// ---------------------------------------------------------------------------
// Classification results.

/// The name of a covered file within its class: one or two path components
/// (see the table in the crate docs), borrowed from the classified path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanonicalName<'a> {
    /// The directory component (`<dboid>`, `<slot>`, `pgsql_tmp....fileset`),
    /// if the name has two.
    pub dir: Option<&'a [u8]>,
    /// The file name.
    pub file: &'a [u8],
}

impl CanonicalName<'_> {
    /// The name as `dir/file` (or `file`), in pieces, without allocating:
    /// e.g. to feed a key derivation as a sequence of byte strings.
    pub fn pieces(&self) -> [&[u8]; 3] {
        match self.dir {
            Some(d) => [d, b"/", self.file],
            None => [self.file, b"", b""],
        }
    }

    /// Total length in bytes of `dir/file`.
    pub fn len(&self) -> usize {
        self.pieces().iter().map(|p| p.len()).sum()
    }

    /// Never empty (a file name always has at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write `dir/file` into `buf` without allocating; the length written,
    /// or `None` if it does not fit.
    pub fn write_to(&self, buf: &mut [u8]) -> Option<usize> {
        let mut n = 0usize;
        for piece in self.pieces() {
            buf.get_mut(n..n + piece.len())?.copy_from_slice(piece);
            n += piece.len();
        }
        Some(n)
    }

    /// The name as an owned byte string (for tests and diagnostics).
    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces().concat()
    }
}

/// A classified path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified<'a> {
    /// The artifact class.
    pub class: ArtifactClass,
    /// The file's canonical name within its class.
    pub name: CanonicalName<'a>,
    /// A member of a shared file set (`*.fileset/<name>`): other processes
    /// may open and write it.
    pub shared: bool,
}

// ---------------------------------------------------------------------------
// Path classification.

/// Classifies `path` (as passed to a libc file call) given the absolute data
/// directory `data_dir` (no trailing slash needed; may be empty if unknown,
/// then absolute paths are only matched as tablespace locations).
pub fn classify(path: &[u8], data_dir: &[u8]) -> Option<ArtifactClass> {
    classify_named(path, data_dir).map(|c| c.class)
}

/// Like [`classify`], with the canonical name and whether the file belongs
/// to a shared file set.
pub fn classify_named<'a>(path: &'a [u8], data_dir: &[u8]) -> Option<Classified<'a>> {
    if path.first() != Some(&b'/') {
        return in_data_dir(&tail(path)?);
    }
    let data_dir = trim_trailing_slashes(data_dir);
    if data_dir.first() == Some(&b'/') {
        if let Some(rest) = path.strip_prefix(data_dir) {
            if rest.first() == Some(&b'/') {
                let t = tail(rest)?;
                return in_data_dir(&t).or_else(|| in_tablespace_location(&t));
            }
        }
    }
    in_tablespace_location(&tail(path)?)
}

/// `true` when [`classify`] gives `class`.
pub fn is_class(path: &[u8], data_dir: &[u8], class: ArtifactClass) -> bool {
    classify(path, data_dir) == Some(class)
}

fn trim_trailing_slashes(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'/'] = s {
        s = rest;
    }
    s
}

/// How many trailing components the rules look at.
const MAX_TAIL: usize = 6;

/// The last components of a path, last first.
struct Tail<'a> {
    /// `rev[0]` is the file name, `rev[1]` its directory, ...
    rev: [&'a [u8]; MAX_TAIL],
    /// Number of components of the whole path (may exceed `MAX_TAIL`).
    count: usize,
}

impl<'a> Tail<'a> {
    /// Component `i` from the end (0 = file name), if present.
    fn get(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.count.min(MAX_TAIL)).then(|| self.rev[i])
    }

    /// The result for a file whose canonical name is its last `parts`
    /// components (1 or 2).
    fn result(&self, class: ArtifactClass, parts: usize, shared: bool) -> Classified<'a> {
        Classified {
            class,
            name: CanonicalName {
                dir: (parts == 2).then(|| self.rev[1]),
                file: self.rev[0],
            },
            shared,
        }
    }
}

/// Splits `path` into components from the end. `None` for paths that end in
/// `/` or `/.` (a directory) or contain `..`.
fn tail(path: &[u8]) -> Option<Tail<'_>> {
    if path.ends_with(b"/") || path.ends_with(b"/.") || path == b"." {
        return None;
    }
    let mut t = Tail {
        rev: [&[]; MAX_TAIL],
        count: 0,
    };
    for c in path.rsplit(|&b| b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return None,
            _ => {}
        }
        if t.count < MAX_TAIL {
            t.rev[t.count] = c;
        }
        t.count += 1;
    }
    Some(t)
}

const PGSQL_TMP: &[u8] = b"pgsql_tmp";

/// The canonical name of every file of the `wal` class (see the crate docs).
pub const WAL_NAME: &[u8] = b"pg_wal";

/// Rules for a path relative to the data directory.
fn in_data_dir<'a>(t: &Tail<'a>) -> Option<Classified<'a>> {
    let r = &t.rev;
    match t.count {
        2 if r[1] == b"pg_wal" && is_wal_file_name(r[0]) => Some(Classified {
            class: ArtifactClass::Wal,
            name: CanonicalName {
                dir: None,
                file: WAL_NAME,
            },
            // Written by one process at a time and read by others meanwhile.
            shared: true,
        }),
        3 => match r[2] {
            b"base" => under_tablespace_version_dir(t),
            b"pg_replslot" => {
                is_spill_file_name(r[0]).then(|| t.result(ArtifactClass::LogicalSpill, 2, false))
            }
            _ => None,
        },
        4 => (r[3] == b"base" && r[2] == PGSQL_TMP && is_fileset_dir_name(r[1]))
            .then(|| t.result(ArtifactClass::TempFiles, 2, true)),
        5 if r[4] == b"pg_tblspc" && is_oid(r[3]) && is_tablespace_version_dir(r[2]) => {
            under_tablespace_version_dir(t)
        }
        6 if r[5] == b"pg_tblspc"
            && is_oid(r[4])
            && is_tablespace_version_dir(r[3])
            && r[2] == PGSQL_TMP
            && is_fileset_dir_name(r[1]) =>
        {
            Some(t.result(ArtifactClass::TempFiles, 2, true))
        }
        _ => None,
    }
}

/// Rules for an absolute path anywhere: `<anything>/PG_<d>_<d>/...`.
fn in_tablespace_location<'a>(t: &Tail<'a>) -> Option<Classified<'a>> {
    if t.get(2).is_some_and(is_tablespace_version_dir) {
        if let Some(c) = under_tablespace_version_dir(t) {
            return Some(c);
        }
    }
    if let (Some(ver), Some(tmp), Some(set)) = (t.get(3), t.get(2), t.get(1)) {
        if is_tablespace_version_dir(ver) && tmp == PGSQL_TMP && is_fileset_dir_name(set) {
            return Some(t.result(ArtifactClass::TempFiles, 2, true));
        }
    }
    None
}

/// `dir/file` (the last two components) directly under `base` or
/// `PG_<major>_<catversion>`.
fn under_tablespace_version_dir<'a>(t: &Tail<'a>) -> Option<Classified<'a>> {
    let (dir, file) = (t.get(1)?, t.get(0)?);
    if dir == PGSQL_TMP {
        is_temp_file_name(file).then(|| t.result(ArtifactClass::TempFiles, 1, false))
    } else if is_oid(dir) {
        is_temp_rel_name(file).then(|| t.result(ArtifactClass::TempRelations, 2, false))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Name grammars.

/// Number of leading ASCII digits.
fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Number of leading ASCII hex digits.
fn hex_digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_hexdigit()).count()
}

/// Strips a non-empty run of digits.
fn strip_digits(s: &[u8]) -> Option<&[u8]> {
    match digits(s) {
        0 => None,
        n => Some(&s[n..]),
    }
}

/// Strips a non-empty run of hex digits.
fn strip_hex(s: &[u8]) -> Option<&[u8]> {
    match hex_digits(s) {
        0 => None,
        n => Some(&s[n..]),
    }
}

/// A non-empty string of digits (a database or tablespace OID directory).
pub fn is_oid(name: &[u8]) -> bool {
    !name.is_empty() && digits(name) == name.len()
}

/// `PG_<digits>_<digits>` (`TABLESPACE_VERSION_DIRECTORY`, e.g.
/// `PG_15_202209061`).
pub fn is_tablespace_version_dir(name: &[u8]) -> bool {
    let parse = || {
        let s = name.strip_prefix(b"PG_")?;
        let s = strip_digits(s)?.strip_prefix(b"_")?;
        strip_digits(s)
    };
    parse().is_some_and(<[u8]>::is_empty)
}

/// What follows `pgsql_tmp<digits>.<digits>`, if `name` starts that way.
fn after_temp_prefix(name: &[u8]) -> Option<&[u8]> {
    let s = name.strip_prefix(PGSQL_TMP)?;
    let s = strip_digits(s)?.strip_prefix(b".")?;
    strip_digits(s)
}

/// A private temporary file: `pgsql_tmp<pid>.<n>`.
pub fn is_temp_file_name(name: &[u8]) -> bool {
    after_temp_prefix(name).is_some_and(<[u8]>::is_empty)
}

/// A shared file set directory: `pgsql_tmp<pid>.<n>.fileset`.
pub fn is_fileset_dir_name(name: &[u8]) -> bool {
    after_temp_prefix(name) == Some(b".fileset")
}

/// PostgreSQL's `looks_like_temp_rel_name()`:
/// `t<digits>_<digits>[_fsm|_vm|_init][.<digits>]`.
pub fn is_temp_rel_name(name: &[u8]) -> bool {
    let parse = || {
        let s = name.strip_prefix(b"t")?;
        let s = strip_digits(s)?.strip_prefix(b"_")?;
        let mut s = strip_digits(s)?;
        if let Some(fork) = s.strip_prefix(b"_") {
            // forkname_chars(): a fork name other than "main", as a prefix.
            s = [b"fsm".as_slice(), b"vm", b"init"]
                .into_iter()
                .find_map(|f| fork.strip_prefix(f))?;
        }
        if let Some(seg) = s.strip_prefix(b".") {
            s = strip_digits(seg)?;
        }
        Some(s)
    };
    parse().is_some_and(<[u8]>::is_empty)
}

/// A WAL segment file name: 24 upper-case hex digits (PostgreSQL's
/// `IsXLogFileName`).
pub fn is_wal_segment_name(name: &[u8]) -> bool {
    name.len() == 24 && name.iter().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// A file of the `wal` class: a segment, a segment with `.partial` (the
/// last segment of an old timeline, kept for archiving: `IsPartialXLogFileName`),
/// or `xlogtemp.<pid>` (a segment being created or copied; also the
/// temporary name of a timeline history file, see docs/DECISIONS.md).
pub fn is_wal_file_name(name: &[u8]) -> bool {
    if is_wal_segment_name(name) {
        return true;
    }
    if let Some(seg) = name.strip_suffix(b".partial") {
        return is_wal_segment_name(seg);
    }
    name.strip_prefix(b"xlogtemp.")
        .is_some_and(|pid| !pid.is_empty() && digits(pid) == pid.len())
}

/// A logical decoding spill file: `xid-<xid>-lsn-<X>-<Y>.spill`.
pub fn is_spill_file_name(name: &[u8]) -> bool {
    let parse = || {
        let s = name.strip_prefix(b"xid-")?;
        let s = strip_digits(s)?.strip_prefix(b"-lsn-")?;
        let s = strip_hex(s)?.strip_prefix(b"-")?;
        strip_hex(s)
    };
    parse() == Some(b".spill")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ArtifactClass::*;

    const DD: &[u8] = b"/var/lib/postgresql/15/main";

    fn name(path: &str) -> Option<(ArtifactClass, String, bool)> {
        classify_named(path.as_bytes(), DD).map(|c| {
            (
                c.class,
                String::from_utf8(c.name.to_vec()).unwrap(),
                c.shared,
            )
        })
    }

    #[test]
    fn class_indexes_are_dense_and_bits_distinct() {
        for (i, c) in ArtifactClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(ArtifactClass::from_index(i), Some(*c));
            assert_eq!(c.bit(), 1 << i);
        }
        assert_eq!(ArtifactClass::from_index(ArtifactClass::COUNT), None);
    }

    #[test]
    fn canonical_names_do_not_depend_on_the_route() {
        let cases = [
            ("pgsql_tmp/pgsql_tmp12.3", TempFiles, "pgsql_tmp12.3", false),
            (
                "pgsql_tmp/pgsql_tmp12.3.fileset/i1of2.p0.0",
                TempFiles,
                "pgsql_tmp12.3.fileset/i1of2.p0.0",
                true,
            ),
            (
                "16384/t3_16385_fsm.1",
                TempRelations,
                "16384/t3_16385_fsm.1",
                false,
            ),
        ];
        for (rest, class, want, shared) in cases {
            let routes = [
                format!("base/{rest}"),
                format!("/var/lib/postgresql/15/main/base/{rest}"),
                format!("pg_tblspc/16400/PG_15_202209061/{rest}"),
                format!("/var/lib/postgresql/15/main/pg_tblspc/16400/PG_15_202209061/{rest}"),
                format!("/srv/ts1/PG_15_202209061/{rest}"),
                format!("/srv/ts1//PG_15_202209061/./{}", rest.replace('/', "//")),
            ];
            for route in routes {
                assert_eq!(
                    name(&route),
                    Some((class, want.to_string(), shared)),
                    "{route}"
                );
            }
        }
        assert_eq!(
            name("pg_replslot/s1/xid-7-lsn-0-1000000.spill"),
            Some((LogicalSpill, "s1/xid-7-lsn-0-1000000.spill".into(), false))
        );
        // Two files that differ only in directory get different names.
        assert_ne!(
            name("base/16384/t3_5").unwrap().1,
            name("base/16385/t3_5").unwrap().1
        );
        let n = classify_named(b"base/16384/t3_5", DD).unwrap().name;
        assert_eq!(n.len(), b"16384/t3_5".len());
        assert!(!n.is_empty());
        let mut buf = [0u8; 16];
        assert_eq!(n.write_to(&mut buf), Some(10));
        assert_eq!(&buf[..10], b"16384/t3_5");
        assert_eq!(n.write_to(&mut [0u8; 9]), None, "too small a buffer");
    }

    fn c(path: &str) -> Option<ArtifactClass> {
        classify(path.as_bytes(), DD)
    }

    fn abs(rel: &str) -> String {
        format!("{}/{rel}", std::str::from_utf8(DD).unwrap())
    }

    #[track_caller]
    fn check(path: &str, want: Option<ArtifactClass>) {
        assert_eq!(c(path), want, "relative {path:?}");
        // The same path written absolutely, and with ./ and // noise.
        assert_eq!(c(&abs(path)), want, "absolute {path:?}");
        assert_eq!(c(&format!("./{path}")), want, "./ {path:?}");
        let doubled = path.replace('/', "//");
        assert_eq!(c(&doubled), want, "// {doubled:?}");
        let dotted = path.replace('/', "/./");
        assert_eq!(c(&dotted), want, "/./ {dotted:?}");
        assert_eq!(c(&abs(&doubled)), want, "absolute // {doubled:?}");
    }

    const TS: &str = "pg_tblspc/16400/PG_15_202209061";

    // --- names -------------------------------------------------------------

    #[test]
    fn class_names_round_trip() {
        for class in ArtifactClass::ALL {
            assert_eq!(ArtifactClass::from_name(class.name()), Some(class));
            assert_eq!(class.name().parse::<ArtifactClass>().unwrap(), class);
            assert_eq!(class.to_string(), class.name());
        }
        assert_eq!(TempFiles.name(), "temp_files");
        assert_eq!(TempRelations.name(), "temp_relations");
        assert_eq!(LogicalSpill.name(), "logical_spill");
        assert_eq!(Wal.name(), "wal");
        assert_eq!(ArtifactClass::from_name(" Temp_Files "), Some(TempFiles));
        assert_eq!(ArtifactClass::from_name("WAL"), Some(Wal));
        assert_eq!(ArtifactClass::from_name("temp_file"), None);
        assert_eq!(ArtifactClass::from_name(""), None);
        let err = "pg_wal".parse::<ArtifactClass>().unwrap_err();
        assert!(matches!(err, ClassifyError::UnknownClass(ref s) if s == "pg_wal"));
        // The default set leaves out the opt-in class.
        assert!(!ArtifactClass::DEFAULT.contains(&Wal));
        assert_eq!(ArtifactClass::DEFAULT.len() + 1, ArtifactClass::COUNT);
    }

    #[test]
    fn class_lists() {
        assert_eq!(ArtifactClass::parse_list("").unwrap(), vec![]);
        assert_eq!(ArtifactClass::parse_list(" , ").unwrap(), vec![]);
        assert_eq!(
            ArtifactClass::parse_list("logical_spill, temp_files,temp_files").unwrap(),
            vec![LogicalSpill, TempFiles]
        );
        assert_eq!(
            ArtifactClass::parse_list("temp_files,temp_relations,logical_spill").unwrap(),
            ArtifactClass::DEFAULT.to_vec()
        );
        assert_eq!(
            ArtifactClass::parse_list("temp_files,temp_relations,logical_spill,wal").unwrap(),
            ArtifactClass::ALL.to_vec()
        );
        assert!(ArtifactClass::parse_list("temp_files, pg_wal").is_err());
    }

    #[test]
    fn temp_file_names() {
        for ok in [
            "pgsql_tmp1.0",
            "pgsql_tmp1234.56",
            "pgsql_tmp4294967295.9999999999",
        ] {
            assert!(is_temp_file_name(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "pgsql_tmp",
            "pgsql_tmp1",
            "pgsql_tmp1.",
            "pgsql_tmp.0",
            "pgsql_tmpx.0",
            "pgsql_tmp1.x",
            "pgsql_tmp1.0.",
            "pgsql_tmp1.0x",
            "pgsql_tmp1.0.fileset",
            "pgsql_tmp-1.0",
            "Pgsql_tmp1.0",
            "xpgsql_tmp1.0",
            "pgsql_tmp1.0 ",
        ] {
            assert!(!is_temp_file_name(bad.as_bytes()), "{bad}");
        }
        assert!(is_fileset_dir_name(b"pgsql_tmp1234.0.fileset"));
        for bad in [
            "pgsql_tmp1234.0",
            "pgsql_tmp1234.fileset",
            "pgsql_tmp1234.0.fileset.0",
            "pgsql_tmp1234.0.filesets",
            "pgsql_tmpx.0.fileset",
        ] {
            assert!(!is_fileset_dir_name(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn temp_rel_names_follow_looks_like_temp_rel_name() {
        for ok in [
            "t3_16384",
            "t0_1",
            "t12_345678",
            "t3_16384_fsm",
            "t3_16384_vm",
            "t3_16384_init",
            "t3_16384.1",
            "t3_16384.12",
            "t3_16384_fsm.2",
            "t3_16384_vm.10",
            "t3_16384_init.3",
            "t007_0042",
        ] {
            assert!(is_temp_rel_name(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "t",
            "t3",
            "t3_",
            "t_5",
            "t_",
            "tx_5",
            "t3_x",
            "t3_5_",
            "t3_5_foo",
            "t3_5_main",
            "t3_5_fsmx",
            "t3_5_vm_fsm",
            "t3_5.",
            "t3_5.x",
            "t3_5.1.2",
            "t3_5.1_fsm",
            "t3_5 ",
            "T3_5",
            "3_5",
            "16384",
            "16384_fsm",
            "16384.1",
            "pg_internal.init",
        ] {
            assert!(!is_temp_rel_name(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn spill_names() {
        for ok in [
            "xid-1-lsn-0-0.spill",
            "xid-745-lsn-0-1000000.spill",
            "xid-4294967295-lsn-FFFFFFFF-FF000000.spill",
            "xid-745-lsn-0-1a000000.spill",
        ] {
            assert!(is_spill_file_name(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "xid-1.spill",
            "xid-1.spill.tmp",
            "xid-1-lsn-0-0.spill.tmp",
            "xid-1-lsn-0-0.spil",
            "xid-1-lsn-0.spill",
            "xid--lsn-0-0.spill",
            "xid-x-lsn-0-0.spill",
            "xid-1-lsn--0.spill",
            "xid-1-lsn-0-.spill",
            "xid-1-lsn-G-0.spill",
            "xid-1-lsn-0-0",
            "state",
            "state.tmp",
        ] {
            assert!(!is_spill_file_name(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn tablespace_version_dirs() {
        for ok in ["PG_15_202209061", "PG_16_202307071", "PG_1_2"] {
            assert!(is_tablespace_version_dir(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "PG_15",
            "PG__1",
            "PG_15_",
            "PG_9.6_201608131",
            "pg_15_1",
            "PG_15_1x",
        ] {
            assert!(!is_tablespace_version_dir(bad.as_bytes()), "{bad}");
        }
    }

    // --- temp_files --------------------------------------------------------

    #[test]
    fn temp_files_in_base() {
        check("base/pgsql_tmp/pgsql_tmp1234.0", Some(TempFiles));
        check("base/pgsql_tmp/pgsql_tmp1234.17", Some(TempFiles));
        for member in [
            "0.0",
            "i3of8.p1.0",
            "o3of8.p0.1",
            "16394-741.changes.0",
            "16394-741.subxacts.0",
            "x",
        ] {
            check(
                &format!("base/pgsql_tmp/pgsql_tmp1234.0.fileset/{member}"),
                Some(TempFiles),
            );
        }
        // The directories themselves, and near misses.
        check("base/pgsql_tmp", None);
        check("base/pgsql_tmp/pgsql_tmp1234.0.fileset", None);
        check("base/pgsql_tmp/pgsql_tmp", None);
        check("base/pgsql_tmp/pgsql_tmpx.0", None);
        check("base/pgsql_tmp/pgsql_tmp1234", None);
        check("base/pgsql_tmp/other", None);
        check("base/pgsql_tmp/pgsql_tmp1234.0/x", None);
        check("base/pgsql_tmp/pgsql_tmp1234.0.fileset/a/b", None);
        check("base/pgsql_tmpx/pgsql_tmp1234.0", None);
        check("pgsql_tmp/pgsql_tmp1234.0", None);
        check("pgsql_tmp1234.0", None);
        check("global/pgsql_tmp/pgsql_tmp1234.0", None);
        check("x/base/pgsql_tmp/pgsql_tmp1234.0", None);
        check("base/16384/pgsql_tmp1234.0", None);
    }

    #[test]
    fn temp_files_in_tablespaces() {
        check(&format!("{TS}/pgsql_tmp/pgsql_tmp99.3"), Some(TempFiles));
        check(
            &format!("{TS}/pgsql_tmp/pgsql_tmp99.3.fileset/i1of2.p0.0"),
            Some(TempFiles),
        );
        check(
            "pg_tblspc/16400/PG_16_202307071/pgsql_tmp/pgsql_tmp1.0",
            Some(TempFiles),
        );
        check(&format!("{TS}/pgsql_tmp"), None);
        check(&format!("{TS}/pgsql_tmp/pgsql_tmp99.3.fileset"), None);
        check("pg_tblspc/16400/PG_15/pgsql_tmp/pgsql_tmp1.0", None);
        // Relative: anchored rules only. Absolute: also a tablespace location
        // (`<anything>/PG_<d>_<d>/...`), wherever it is.
        assert_eq!(
            c("pg_tblspc/x/PG_15_202209061/pgsql_tmp/pgsql_tmp1.0"),
            None
        );
        assert_eq!(
            c(&abs("pg_tblspc/x/PG_15_202209061/pgsql_tmp/pgsql_tmp1.0")),
            Some(TempFiles)
        );
        check("pg_tblspc/16400/pgsql_tmp/pgsql_tmp1.0", None);
        assert_eq!(
            c("pg_tblspcx/16400/PG_15_202209061/pgsql_tmp/pgsql_tmp1.0"),
            None
        );
        // Relative paths must be anchored at the data directory.
        assert_eq!(c("somewhere/PG_15_202209061/pgsql_tmp/pgsql_tmp1.0"), None);
    }

    #[test]
    fn absolute_tablespace_locations() {
        let loc = "/srv/ts1/PG_15_202209061";
        for (path, want) in [
            (format!("{loc}/pgsql_tmp/pgsql_tmp1.0"), Some(TempFiles)),
            (
                format!("{loc}/pgsql_tmp/pgsql_tmp1.0.fileset/0.0"),
                Some(TempFiles),
            ),
            (format!("{loc}/16384/t3_16385"), Some(TempRelations)),
            (format!("{loc}/16384/t3_16385_fsm.1"), Some(TempRelations)),
            (
                "/PG_15_202209061/16384/t3_16385".to_string(),
                Some(TempRelations),
            ),
            (format!("{loc}//pgsql_tmp/./pgsql_tmp1.0"), Some(TempFiles)),
            (format!("{loc}/pgsql_tmp"), None),
            (format!("{loc}/pgsql_tmp/pgsql_tmp1.0.fileset"), None),
            (format!("{loc}/16384/16385"), None),
            (format!("{loc}/16384/t3_"), None),
            ("/srv/ts1/pgsql_tmp/pgsql_tmp1.0".to_string(), None),
            ("/srv/ts1/16384/t3_16385".to_string(), None),
            ("/srv/base/pgsql_tmp/pgsql_tmp1.0".to_string(), None),
            ("/srv/pg_replslot/s/xid-1-lsn-0-0.spill".to_string(), None),
        ] {
            assert_eq!(c(&path), want, "{path}");
            // Without a known data directory too.
            assert_eq!(classify(path.as_bytes(), b""), want, "{path}");
        }
    }

    // --- temp_relations ----------------------------------------------------

    #[test]
    fn temp_relations() {
        for name in [
            "t3_16385",
            "t3_16385_fsm",
            "t3_16385_vm",
            "t3_16385_init",
            "t3_16385.1",
            "t3_16385_vm.2",
        ] {
            check(&format!("base/16384/{name}"), Some(TempRelations));
            check(&format!("{TS}/16384/{name}"), Some(TempRelations));
        }
        for name in [
            "16385",
            "16385_fsm",
            "16385.1",
            "t3_",
            "t_5",
            "t3_5_foo",
            "pg_filenode.map",
            "PG_VERSION",
        ] {
            check(&format!("base/16384/{name}"), None);
            check(&format!("{TS}/16384/{name}"), None);
        }
        check("base/x16384/t3_16385", None);
        check("base/16384", None);
        check("base/t3_16385", None);
        check("global/t3_16385", None);
        check("global/1262", None);
        check("base/16384/sub/t3_16385", None);
        check("pg_tblspc/16400/PG_15_202209061/t3_16385", None);
        check("pg_tblspc/16400/16384/t3_16385", None);
    }

    // --- logical_spill ------------------------------------------------------

    #[test]
    fn logical_spill() {
        check(
            "pg_replslot/regression_slot/xid-745-lsn-0-1000000.spill",
            Some(LogicalSpill),
        );
        check(
            "pg_replslot/s/xid-1-lsn-A-B000000.spill",
            Some(LogicalSpill),
        );
        check("pg_replslot/regression_slot/state", None);
        check("pg_replslot/regression_slot/state.tmp", None);
        check("pg_replslot/regression_slot", None);
        check("pg_replslot/regression_slot/xid-1.spill.tmp", None);
        check("pg_replslot/xid-1-lsn-0-0.spill", None);
        check("pg_replslot/a/b/xid-1-lsn-0-0.spill", None);
        check("base/16384/xid-1-lsn-0-0.spill", None);
        check("pg_logical/xid-1-lsn-0-0.spill", None);
    }

    // --- everything else ----------------------------------------------------

    #[test]
    fn other_files_are_not_classified() {
        for path in [
            "pg_wal/archive_status/000000010000000000000001.done",
            "pg_stat_tmp/pgss_query_texts.stat",
            "pg_stat_tmp/global.tmp",
            "pg_notify/0000",
            "pg_dynshmem/mmap.1234",
            "pg_subtrans/0000",
            "postgresql.conf",
            "postmaster.pid",
            "global/pg_control",
            "global/pg_internal.init",
            "base/16384/16385",
            "base/16384/16385_fsm",
            "base/16384/16385.1",
            "base/16384/pg_internal.init",
            "base/1/PG_VERSION",
            "pg_logical/snapshots/0-16B3748.snap",
            "pg_replslot/s/state",
            "",
            ".",
            "/",
            "base",
        ] {
            check(path, None);
        }
        assert_eq!(c("/dev/shm/PostgreSQL.1804289383"), None);
        assert_eq!(c("/tmp/.s.PGSQL.5432.lock"), None);
        assert_eq!(c(std::str::from_utf8(DD).unwrap()), None);
        assert_eq!(c(&format!("{}/", std::str::from_utf8(DD).unwrap())), None);
    }

    // --- wal ------------------------------------------------------------------

    #[test]
    fn wal_files_share_one_canonical_name() {
        for f in [
            "000000010000000000000001",
            "0000000A00000003000000FF",
            "000000010000000000000001.partial",
            "xlogtemp.1234",
            "xlogtemp.1",
        ] {
            let path = format!("pg_wal/{f}");
            check(&path, Some(Wal));
            assert_eq!(
                name(&path),
                Some((Wal, "pg_wal".to_string(), true)),
                "{path}: rename-stable name, shared"
            );
        }
        for f in [
            "00000001000000000000001",   // 23 digits
            "0000000100000000000000011", // 25
            "00000001000000000000000a",  // lower case
            "000000010000000000000001.partial.x",
            "000000010000000000000001.backup",
            "000000010000000000000001.00000028.backup",
            "00000002.history",
            "RECOVERYXLOG",
            "RECOVERYHISTORY",
            "xlogtemp.",
            "xlogtemp.12x",
            "xlogtemp",
            "archive_status",
            "summaries",
        ] {
            check(&format!("pg_wal/{f}"), None);
        }
        // Only directly under the data directory's pg_wal.
        check("pg_wal/archive_status/000000010000000000000001", None);
        check("base/pg_wal/000000010000000000000001", None);
        check("pg_xlog/000000010000000000000001", None);
        assert_eq!(c("000000010000000000000001"), None);
        assert_eq!(c("/archive/pg_wal/000000010000000000000001"), None);
        assert_eq!(
            c("/srv/ts1/PG_15_202209061/pg_wal/000000010000000000000001"),
            None
        );
        assert_eq!(
            classify(
                b"/var/lib/postgresql/15/main/pg_wal/000000010000000000000001",
                b""
            ),
            None,
            "absolute, data directory unknown"
        );
    }

    #[test]
    fn absolute_paths_outside_the_data_directory() {
        // Same relative shape, other root: only the PG_*_* location rule applies.
        assert_eq!(c("/elsewhere/base/pgsql_tmp/pgsql_tmp1.0"), None);
        assert_eq!(c("/elsewhere/base/16384/t3_16385"), None);
        assert_eq!(
            c("/var/lib/postgresql/15/mainx/base/pgsql_tmp/pgsql_tmp1.0"),
            None
        );
        assert_eq!(
            c("/var/lib/postgresql/15/base/pgsql_tmp/pgsql_tmp1.0"),
            None
        );
        // The data directory given with a trailing slash still matches.
        assert_eq!(
            classify(
                b"/var/lib/postgresql/15/main/base/pgsql_tmp/pgsql_tmp1.0",
                b"/var/lib/postgresql/15/main/"
            ),
            Some(TempFiles)
        );
        // Unknown data directory: relative paths still work.
        assert_eq!(
            classify(b"base/pgsql_tmp/pgsql_tmp1.0", b""),
            Some(TempFiles)
        );
        assert_eq!(
            classify(
                b"/var/lib/postgresql/15/main/base/pgsql_tmp/pgsql_tmp1.0",
                b""
            ),
            None
        );
    }

    #[test]
    fn dot_dot_and_trailing_slash_are_never_classified() {
        assert_eq!(c("base/pgsql_tmp/../pgsql_tmp/pgsql_tmp1.0"), None);
        assert_eq!(c("../main/base/pgsql_tmp/pgsql_tmp1.0"), None);
        assert_eq!(c("pg_replslot/../pg_replslot/s/xid-1-lsn-0-0.spill"), None);
        assert_eq!(c("pg_replslot/../xid-1-lsn-0-0.spill"), None);
        assert_eq!(c("base/pgsql_tmp/pgsql_tmp1.0/"), None);
        assert_eq!(c("base/16384/t3_16385/"), None);
        assert_eq!(c(&abs("base/pgsql_tmp/pgsql_tmp1.0/.")), None);
    }

    #[test]
    fn non_utf8_bytes_are_fine() {
        assert_eq!(
            classify(b"base/pgsql_tmp/pgsql_tmp1.0.fileset/\xff\xfe", DD),
            Some(TempFiles)
        );
        assert_eq!(
            classify(b"pg_replslot/\xff/xid-1-lsn-0-0.spill", DD),
            Some(LogicalSpill)
        );
        assert_eq!(classify(b"base/\xff/t3_5", DD), None);
    }

    #[test]
    fn is_class_helper() {
        assert!(is_class(b"base/16384/t3_16385", DD, TempRelations));
        assert!(!is_class(b"base/16384/t3_16385", DD, TempFiles));
    }
}
