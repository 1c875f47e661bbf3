//! What the kernel says about this process's memory, parsed from the text
//! of `/proc/self/maps`, `/proc/self/smaps` and `/proc/self/status`. Pure:
//! the callers read the files, these functions only look at their text.
#![forbid(unsafe_code)]

/// One line of `/proc/<pid>/maps` (also the first line of each `smaps`
/// entry): `start-end perms offset dev inode [path]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    /// `rw-s`, `r-xp`, ...
    pub perms: String,
    pub inode: u64,
    /// The path column (may end in ` (deleted)`), empty for anonymous
    /// private memory.
    pub path: String,
}

impl Mapping {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the mapping is empty (never, for a kernel line).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: usize) -> bool {
        self.start <= addr && addr < self.end
    }

    /// `MAP_SHARED` (the fourth permission character is `s`).
    pub fn is_shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }
}

/// Parse one maps line; `None` for anything else (an smaps field line).
pub fn parse_mapping(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let dev = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next().unwrap_or("").trim_start();
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    if end < start || perms.len() != 4 || !dev.contains(':') {
        return None;
    }
    Some(Mapping {
        start,
        end,
        perms: perms.to_string(),
        inode: inode.parse().ok()?,
        path: path.to_string(),
    })
}

/// The mapping of `maps` (or `smaps`) text that contains `addr`.
pub fn mapping_containing(maps: &str, addr: usize) -> Option<Mapping> {
    maps.lines()
        .filter_map(parse_mapping)
        .find(|m| m.contains(addr))
}

/// The flags of one mapping that matter here, from its `VmFlags:` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmFlags {
    /// `dd`: excluded from core dumps (`MADV_DONTDUMP`).
    pub dontdump: bool,
    /// `lo`: `mlock`ed (`VM_LOCKED`).
    pub locked: bool,
    /// `ht`: hugetlb pages, which the kernel never swaps (and `mlock`
    /// leaves without `lo`).
    pub hugetlb: bool,
    /// `sh`: shared.
    pub shared: bool,
}

impl VmFlags {
    /// Parse the value of a `VmFlags:` line (two-letter codes).
    pub fn parse(flags: &str) -> VmFlags {
        let mut f = VmFlags::default();
        for code in flags.split_whitespace() {
            match code {
                "dd" => f.dontdump = true,
                "lo" => f.locked = true,
                "ht" => f.hugetlb = true,
                "sh" => f.shared = true,
                _ => {}
            }
        }
        f
    }

    /// Resident for good: locked, or hugetlb (never swapped).
    pub fn unswappable(self) -> bool {
        self.locked || self.hugetlb
    }
}

/// Every entry of `smaps` text with its flags, in order.
pub fn smaps_entries(smaps: &str) -> Vec<(Mapping, VmFlags)> {
    let mut out = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(m) = current.take() {
                out.push((m, VmFlags::parse(flags)));
            }
        } else if let Some(m) = parse_mapping(line) {
            current = Some(m);
        }
    }
    out
}

/// The smaps entry that contains `addr`, with its flags.
pub fn smaps_entry_containing(smaps: &str, addr: usize) -> Option<(Mapping, VmFlags)> {
    smaps_entries(smaps)
        .into_iter()
        .find(|(m, _)| m.contains(addr))
}

/// Where PostgreSQL's dynamic shared memory segments live: POSIX shared
/// memory (`dynamic_shared_memory_type = posix`: `shm_open("/PostgreSQL.<n>")`,
/// which glibc puts under `/dev/shm`; any directory is accepted, since the
/// kernel shows the resolved path if `/dev/shm` is a symlink) or files under
/// `<data_dir>/pg_dynshmem/` (`mmap`; `data_dir` as the kernel resolves it).
/// Counting a stranger as DSM can only make a census stricter.
pub fn is_dsm_path(path: &str, data_dir: &str) -> bool {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let name = path.rsplit('/').next().unwrap_or("");
    if path.starts_with('/')
        && name
            .strip_prefix("PostgreSQL.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return true;
    }
    let dir = data_dir.trim_end_matches('/');
    !dir.is_empty()
        && path
            .strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix("/pg_dynshmem/mmap."))
            .is_some()
}

/// How many DSM segments a process maps, and how many of them are excluded
/// from core dumps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DsmCensus {
    pub mapped: usize,
    pub dontdump: usize,
}

impl DsmCensus {
    /// Every mapped segment is excluded (vacuously true with none mapped).
    pub fn all_dontdump(self) -> bool {
        self.mapped == self.dontdump
    }
}

/// Count the DSM segments of `smaps` text.
pub fn dsm_census(smaps: &str, data_dir: &str) -> DsmCensus {
    let mut c = DsmCensus::default();
    for (m, f) in smaps_entries(smaps) {
        if m.is_shared() && is_dsm_path(&m.path, data_dir) {
            c.mapped += 1;
            c.dontdump += usize::from(f.dontdump);
        }
    }
    c
}

/// A `kB` field of `/proc/self/status` (`VmLck`, `VmRSS`, ...), in bytes.
pub fn status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// The effective capability mask (`CapEff:`) of `/proc/self/status`.
pub fn cap_eff(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let hex = l.strip_prefix("CapEff:")?.trim();
        u64::from_str_radix(hex, 16).ok()
    })
}

/// `CAP_IPC_LOCK` (capability 14): `mlock` beyond `RLIMIT_MEMLOCK`.
pub const CAP_IPC_LOCK: u32 = 14;

/// What `mlock` of `len` more bytes needs, against what the process may lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemlockBudget {
    /// Soft `RLIMIT_MEMLOCK` in bytes (`None`: unlimited).
    pub limit: Option<u64>,
    /// Bytes this process has locked already (`VmLck`).
    pub locked: u64,
    /// The process holds `CAP_IPC_LOCK`: the limit does not apply.
    pub cap_ipc_lock: bool,
}

impl MemlockBudget {
    /// `Ok` if `len` more bytes can be locked, else the total that would
    /// be needed (locked + len), for the error message.
    pub fn admits(&self, len: u64) -> Result<(), u64> {
        let needed = self.locked.saturating_add(len);
        match self.limit {
            _ if self.cap_ipc_lock => Ok(()),
            None => Ok(()),
            Some(limit) if needed <= limit => Ok(()),
            Some(_) => Err(needed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0b00000 r-xp 00000000 fe:01 1234                       /usr/lib/postgresql/15/bin/postgres
Size:               1024 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0008a00000 rw-s 00000000 00:01 5678                       /dev/zero (deleted)
Size:             141312 kB
Rss:                2048 kB
Locked:                0 kB
VmFlags: rd wr sh mr mw me ms dd sd
7f0010000000-7f0010100000 rw-s 00000000 00:19 42                         /dev/shm/PostgreSQL.1804289383
Size:               1024 kB
VmFlags: rd wr sh mr mw me ms sd
7f0020000000-7f0020100000 rw-s 00000000 00:19 43                         /dev/shm/PostgreSQL.846930886
Size:               1024 kB
VmFlags: rd wr sh mr mw me ms dd sd
7f0030000000-7f0030001000 rw-s 00000000 00:19 44                         /srv/data/pg_dynshmem/mmap.12 (deleted)
Size:                  4 kB
VmFlags: rd wr sh mr mw me ms lo dd sd
7f0040000000-7f0050000000 rw-s 00000000 00:0f 45                         /anon_hugepage (deleted)
Size:             262144 kB
VmFlags: rd wr sh mr mw me ms dd de ht sd
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
VmFlags: rd wr mr mw me gd ac
7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0 
Size:                  4 kB
VmFlags: rd wr mr mw me ac
";

    #[test]
    fn maps_lines_parse_and_others_do_not() {
        let m = parse_mapping(
            "7f0000000000-7f0008a00000 rw-s 00000000 00:01 5678                       /dev/zero (deleted)",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f00_0000_0000);
        assert_eq!(m.len(), 0x8a0_0000);
        assert!(m.is_shared());
        assert_eq!(m.inode, 5678);
        assert_eq!(m.path, "/dev/zero (deleted)");
        let anon = parse_mapping("7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(anon.path, "");
        assert!(!anon.is_shared());
        for not_a_mapping in [
            "Size:               1024 kB",
            "VmFlags: rd wr sh",
            "",
            "zz-yy rw-s 0 00:01 1",
            "2000-1000 rw-s 00000000 00:01 1",
        ] {
            assert_eq!(parse_mapping(not_a_mapping), None, "{not_a_mapping:?}");
        }
    }

    #[test]
    fn the_entry_containing_an_address_and_its_flags() {
        let (m, f) = smaps_entry_containing(SMAPS, 0x7f00_0012_3456).unwrap();
        assert_eq!(m.path, "/dev/zero (deleted)");
        assert!(f.dontdump && f.shared && !f.locked && !f.hugetlb);
        assert!(!f.unswappable());
        // The end address is outside (nothing is mapped right after it).
        assert!(smaps_entry_containing(SMAPS, 0x7f00_08a0_0000).is_none());
        assert!(smaps_entry_containing(SMAPS, 0x1000).is_none());
        let (_, huge) = smaps_entry_containing(SMAPS, 0x7f00_4000_0000).unwrap();
        assert!(huge.hugetlb && huge.unswappable() && !huge.locked);
        let (_, locked) = smaps_entry_containing(SMAPS, 0x7f00_3000_0000).unwrap();
        assert!(locked.locked && locked.unswappable());
        assert_eq!(
            mapping_containing(SMAPS, 0x55d0_c0a0_0100).unwrap().perms,
            "r-xp"
        );
    }

    #[test]
    fn flags_are_whole_codes() {
        // "sd" is not "dd", "lock" would not be "lo".
        let f = VmFlags::parse(" rd wr sh mr mw me ms sd lock ddx");
        assert!(!f.dontdump && !f.locked);
        assert!(f.shared);
    }

    #[test]
    fn dsm_census_counts_posix_and_mmap_segments_only() {
        let c = dsm_census(SMAPS, "/srv/data/");
        assert_eq!(
            c,
            DsmCensus {
                mapped: 3,
                dontdump: 2
            }
        );
        assert!(!c.all_dontdump());
        // Another data directory: its pg_dynshmem is not ours.
        assert_eq!(dsm_census(SMAPS, "/srv/other").mapped, 2);
        assert!(DsmCensus::default().all_dontdump());
        assert!(is_dsm_path("/dev/shm/PostgreSQL.1 (deleted)", ""));
        assert!(is_dsm_path("/run/shm/PostgreSQL.42", ""));
        assert!(!is_dsm_path("/dev/shm/PostgreSQLx", "/d"));
        assert!(!is_dsm_path("/dev/shm/PostgreSQL.", "/d"));
        assert!(!is_dsm_path("/dev/shm/PostgreSQL.1x", "/d"));
        assert!(!is_dsm_path("/d/pg_dynshmem/other", "/d"));
        assert!(!is_dsm_path("/dx/pg_dynshmem/mmap.1", "/d"));
        assert!(!is_dsm_path("/pg_dynshmem/mmap.1", ""));
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tpostgres\nVmLck:\t      12 kB\nVmRSS:\t   20480 kB\nCapEff:\t0000000000004000\n";
        assert_eq!(status_kb(status, "VmLck"), Some(12 * 1024));
        assert_eq!(status_kb(status, "VmRSS"), Some(20480 * 1024));
        assert_eq!(status_kb(status, "VmPin"), None);
        assert_eq!(status_kb("VmLckX:\t1 kB\n", "VmLck"), None);
        let caps = cap_eff(status).unwrap();
        assert_ne!(caps & (1 << CAP_IPC_LOCK), 0);
        assert_eq!(cap_eff("CapEff:\tzz\n"), None);
    }

    #[test]
    fn memlock_budget() {
        let mib = 1u64 << 20;
        let b = MemlockBudget {
            limit: Some(8 * mib),
            locked: 4096,
            cap_ipc_lock: false,
        };
        assert_eq!(b.admits(8 * mib - 4096), Ok(()));
        assert_eq!(b.admits(8 * mib), Err(8 * mib + 4096));
        assert_eq!(
            MemlockBudget {
                cap_ipc_lock: true,
                ..b
            }
            .admits(u64::MAX),
            Ok(())
        );
        assert_eq!(MemlockBudget { limit: None, ..b }.admits(u64::MAX), Ok(()));
    }
}
