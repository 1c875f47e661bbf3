//! Patching the running main executable's GOT slots.
//!
//! The executable's calls to an imported function go through a word of its
//! own (a GOT slot, see [`crate::elf`]) that the dynamic linker filled with
//! the function's address. Replacing that word redirects every call the
//! executable makes — and, when done before `fork`, every call of every
//! child. Calls made by other objects (libc itself, other shared libraries)
//! go through *their* GOTs and are not affected.
//!
//! Rules this module enforces:
//!
//! * The real function is resolved by us ([`crate::resolve_libc`]), never taken from
//!   the slot: in a lazily bound executable the slot may still hold the PLT
//!   stub, and calling it makes the dynamic linker resolve the symbol and
//!   overwrite the slot — i.e. undo the patch.
//! * Slots in `PT_GNU_RELRO` are made writable just long enough to write
//!   them, then their original protection is restored and checked; a slot
//!   in a writable page stays writable.
//! * Every patched slot is read back ([`verify`] does it again later).
//! * Any failure is an error naming the symbol: the caller decides to refuse
//!   to start.
//!
//! Generic: nothing here knows about PostgreSQL.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::elf::{Executable, Import, RelocKind};
use crate::error::GotError;

// ---------------------------------------------------------------------------
// /proc/self/maps.

#[derive(Clone, Copy, Debug)]
struct MapEntry {
    start: usize,
    end: usize,
    prot: libc::c_int,
}

fn read_maps() -> Result<Vec<MapEntry>, GotError> {
    let text = std::fs::read_to_string("/proc/self/maps").map_err(|source| GotError::Io {
        what: "/proc/self/maps",
        source,
    })?;
    let bad = || GotError::Io {
        what: "/proc/self/maps",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable line"),
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            return Err(bad());
        };
        let (start, end) = range.split_once('-').ok_or_else(bad)?;
        let start = usize::from_str_radix(start, 16).map_err(|_| bad())?;
        let end = usize::from_str_radix(end, 16).map_err(|_| bad())?;
        let p = perms.as_bytes();
        if p.len() < 3 {
            return Err(bad());
        }
        let mut prot = libc::PROT_NONE;
        if p[0] == b'r' {
            prot |= libc::PROT_READ;
        }
        if p[1] == b'w' {
            prot |= libc::PROT_WRITE;
        }
        if p[2] == b'x' {
            prot |= libc::PROT_EXEC;
        }
        out.push(MapEntry { start, end, prot });
    }
    Ok(out)
}

fn prot_at(maps: &[MapEntry], addr: usize) -> Option<libc::c_int> {
    maps.iter()
        .find(|m| addr >= m.start && addr < m.end)
        .map(|m| m.prot)
}

fn prot_string(prot: libc::c_int) -> String {
    let mut s = String::with_capacity(3);
    s.push(if prot & libc::PROT_READ != 0 {
        'r'
    } else {
        '-'
    });
    s.push(if prot & libc::PROT_WRITE != 0 {
        'w'
    } else {
        '-'
    });
    s.push(if prot & libc::PROT_EXEC != 0 {
        'x'
    } else {
        '-'
    });
    s
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

// ---------------------------------------------------------------------------
// Slot access.

/// Reads a GOT slot.
///
/// # Safety
/// `slot` must be an aligned, mapped, readable word (a slot from [`elf`]).
unsafe fn load_slot(slot: usize) -> usize {
    // SAFETY: per the contract; atomic loads are fine on read-only memory.
    unsafe { AtomicUsize::from_ptr(slot as *mut usize).load(Ordering::SeqCst) }
}

/// Writes a GOT slot.
///
/// # Safety
/// `slot` must be an aligned, mapped word that is currently writable and that
/// only holds a function address (a slot from [`elf`]).
unsafe fn store_slot(slot: usize, value: usize) {
    // SAFETY: per the contract; a single aligned word store, so concurrent
    // callers through the slot see either the old or the new function.
    unsafe { AtomicUsize::from_ptr(slot as *mut usize).store(value, Ordering::SeqCst) }
}

// ---------------------------------------------------------------------------
// Planning and patching.

/// RELRO state of the executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relro {
    /// No `PT_GNU_RELRO`: the GOT stays writable.
    None,
    /// `PT_GNU_RELRO` without bind-now: the PLT GOT stays writable and may
    /// still hold lazy-binding stubs.
    Partial,
    /// Bind-now and every `JUMP_SLOT` inside `PT_GNU_RELRO`.
    Full,
}

fn relro_of(exe: &Executable) -> Relro {
    if exe.full_relro() {
        Relro::Full
    } else if exe.relro.is_some() {
        Relro::Partial
    } else {
        Relro::None
    }
}

/// One slot that was patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchedSlot {
    /// Slot address.
    pub slot: usize,
    /// Relocation type.
    pub kind: RelocKind,
    /// Value before patching (libc's function, or a PLT stub if lazy).
    pub previous: usize,
    /// The previous value pointed into the executable itself (an unresolved
    /// lazy-binding stub for a `JUMP_SLOT`).
    pub previous_in_executable: bool,
    /// The slot lies in `PT_GNU_RELRO` (read-only again after patching).
    pub in_relro: bool,
}

/// A symbol whose slots were patched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchedSymbol {
    /// Symbol name.
    pub name: String,
    /// Version the executable requires (`GLIBC_2.33`), if any.
    pub version: Option<String>,
    /// Address written into every slot.
    pub address: usize,
    /// The slots.
    pub slots: Vec<PatchedSlot>,
}

impl PatchedSymbol {
    /// Number of slots patched.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

/// Result of [`patch_executable`] / [`PatchPlan::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchReport {
    /// Requested symbols that the executable imports, all slots patched.
    pub patched: Vec<PatchedSymbol>,
    /// Requested symbols that the executable does not import (no slot).
    pub absent: Vec<String>,
    /// The executable is bound at start-up (no lazy binding).
    pub bind_now: bool,
    /// RELRO state of the executable.
    pub relro: Relro,
}

impl PatchReport {
    /// The patched entry of `name`, if it was patched.
    pub fn patched_symbol(&self, name: &str) -> Option<&PatchedSymbol> {
        self.patched.iter().find(|p| p.name == name)
    }

    /// `name` was found and patched.
    pub fn is_patched(&self, name: &str) -> bool {
        self.patched_symbol(name).is_some()
    }

    /// Total number of slots patched.
    pub fn slot_count(&self) -> usize {
        self.patched.iter().map(PatchedSymbol::slot_count).sum()
    }

    /// Slots whose previous value was a lazy-binding stub in the executable.
    pub fn lazy_slots(&self) -> usize {
        self.patched
            .iter()
            .flat_map(|p| &p.slots)
            .filter(|s| s.kind == RelocKind::JumpSlot && s.previous_in_executable)
            .count()
    }
}

#[derive(Clone, Debug)]
struct Planned {
    name: String,
    address: usize,
    slots: Vec<Import>,
}

/// A validated set of patch requests, with the slots found for each symbol,
/// before anything is written. Lets the caller check [`PatchPlan::absent`]
/// before committing with [`PatchPlan::apply`].
#[derive(Clone, Debug)]
pub struct PatchPlan {
    exe: &'static Executable,
    planned: Vec<Planned>,
    absent: Vec<String>,
}

/// Serializes patching within the process (two concurrent patchers could
/// otherwise restore a page to read-only under each other's writes).
static PATCH_LOCK: Mutex<()> = Mutex::new(());

fn invalid(symbol: &str, reason: impl Into<String>) -> GotError {
    GotError::InvalidRequest {
        symbol: symbol.to_owned(),
        reason: reason.into(),
    }
}

impl PatchPlan {
    /// Validates `requests` (symbol name, new function address) and finds
    /// every slot of the executable for each symbol.
    ///
    /// Errors: empty name, name with `@` or NUL, null address, address not in
    /// an executable mapping, one name requested with two addresses.
    pub fn new(requests: &[(&str, usize)]) -> Result<PatchPlan, GotError> {
        let maps = read_maps()?;
        let mut wanted: Vec<(&str, usize)> = Vec::with_capacity(requests.len());
        for &(name, address) in requests {
            if name.is_empty() {
                return Err(invalid(name, "empty symbol name"));
            }
            if name.contains('@') || name.contains('\0') {
                return Err(invalid(
                    name,
                    "symbol names are given without version and without NUL",
                ));
            }
            if address == 0 {
                return Err(invalid(name, "null function address"));
            }
            match prot_at(&maps, address) {
                Some(p) if p & libc::PROT_EXEC != 0 => {}
                Some(p) => {
                    return Err(invalid(
                        name,
                        format!(
                            "address {address:#x} is in a {} mapping, not code",
                            prot_string(p)
                        ),
                    ))
                }
                None => return Err(invalid(name, format!("address {address:#x} is not mapped"))),
            }
            match wanted.iter().find(|(n, _)| *n == name) {
                Some(&(_, a)) if a != address => {
                    return Err(invalid(name, "requested twice with different addresses"))
                }
                Some(_) => {}
                None => wanted.push((name, address)),
            }
        }

        let exe = Executable::current()?;
        let mut planned = Vec::new();
        let mut absent = Vec::new();
        for (name, address) in wanted {
            let slots: Vec<Import> = exe.imports_of(name).cloned().collect();
            if slots.is_empty() {
                absent.push(name.to_owned());
            } else {
                planned.push(Planned {
                    name: name.to_owned(),
                    address,
                    slots,
                });
            }
        }
        Ok(PatchPlan {
            exe,
            planned,
            absent,
        })
    }

    /// Requested symbols with at least one slot, and their slot counts.
    pub fn found(&self) -> impl Iterator<Item = (&str, usize)> {
        self.planned
            .iter()
            .map(|p| (p.name.as_str(), p.slots.len()))
    }

    /// Requested symbols the executable does not import.
    pub fn absent(&self) -> &[String] {
        &self.absent
    }

    /// The executable as read when planning.
    pub fn executable(&self) -> &Executable {
        self.exe
    }

    /// Writes every planned slot, restores page protections, verifies.
    pub fn apply(self) -> Result<PatchReport, GotError> {
        let _guard = PATCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let page = page_size();
        let maps = read_maps()?;

        // Pages to touch, with their current protection and one symbol
        // (for error messages).
        let mut pages: BTreeMap<usize, (libc::c_int, &str)> = BTreeMap::new();
        for p in &self.planned {
            for s in &p.slots {
                let pg = s.slot & !(page - 1);
                if let std::collections::btree_map::Entry::Vacant(e) = pages.entry(pg) {
                    let prot = prot_at(&maps, pg).ok_or_else(|| GotError::Protect {
                        symbol: p.name.clone(),
                        page: pg,
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "page not in /proc/self/maps",
                        ),
                    })?;
                    e.insert((prot, p.name.as_str()));
                }
            }
        }

        // 1. Make read-only pages writable (undo on failure, nothing written).
        let mut opened: Vec<usize> = Vec::new();
        for (&pg, &(prot, symbol)) in &pages {
            if prot & libc::PROT_WRITE != 0 {
                continue;
            }
            // SAFETY: `pg` is a page of the executable's own data segment
            // (it holds a GOT slot); adding write permission does not affect
            // anything that reads it.
            let rc =
                unsafe { libc::mprotect(pg as *mut libc::c_void, page, prot | libc::PROT_WRITE) };
            if rc != 0 {
                let source = std::io::Error::last_os_error();
                for &done in &opened {
                    // SAFETY: restoring the protection we found on this page.
                    unsafe { libc::mprotect(done as *mut libc::c_void, page, pages[&done].0) };
                }
                return Err(GotError::Protect {
                    symbol: symbol.to_owned(),
                    page: pg,
                    source,
                });
            }
            opened.push(pg);
        }

        // 2. Write the slots.
        let mut patched = Vec::with_capacity(self.planned.len());
        for p in &self.planned {
            let mut slots = Vec::with_capacity(p.slots.len());
            for s in &p.slots {
                // SAFETY: `s.slot` is an aligned word of a loaded segment
                // (checked by elf), now writable (step 1 or already), and
                // holds a symbol address filled in by the dynamic linker.
                let previous = unsafe { load_slot(s.slot) };
                // SAFETY: as above.
                unsafe { store_slot(s.slot, p.address) };
                slots.push(PatchedSlot {
                    slot: s.slot,
                    kind: s.kind,
                    previous,
                    previous_in_executable: self.exe.contains(previous, 1),
                    in_relro: self.exe.in_relro(s.slot),
                });
            }
            patched.push(PatchedSymbol {
                name: p.name.clone(),
                version: p.slots.iter().find_map(|s| s.version.clone()),
                address: p.address,
                slots,
            });
        }

        // 3. Restore the original protections.
        for &pg in &opened {
            let (prot, symbol) = pages[&pg];
            // SAFETY: restoring the protection this page had before step 1.
            let rc = unsafe { libc::mprotect(pg as *mut libc::c_void, page, prot) };
            if rc != 0 {
                return Err(GotError::Protect {
                    symbol: symbol.to_owned(),
                    page: pg,
                    source: std::io::Error::last_os_error(),
                });
            }
        }

        let report = PatchReport {
            patched,
            absent: self.absent.clone(),
            bind_now: self.exe.bind_now,
            relro: relro_of(self.exe),
        };

        // 4. Check the protections and the slots.
        let after = read_maps()?;
        for (&pg, &(prot, symbol)) in &pages {
            let found = prot_at(&after, pg).unwrap_or(libc::PROT_NONE);
            if found != prot {
                return Err(GotError::ProtectionNotRestored {
                    symbol: symbol.to_owned(),
                    page: pg,
                    expected: prot_string(prot),
                    found: prot_string(found),
                });
            }
        }
        verify(&report)?;
        Ok(report)
    }
}

/// Patches, for each `(symbol, new function address)`, every slot of the
/// executable that imports `symbol`. Symbols without any slot are listed in
/// [`PatchReport::absent`] (not an error: the caller decides what is
/// required). Equivalent to `PatchPlan::new(requests)?.apply()`.
pub fn patch_executable(requests: &[(&str, usize)]) -> Result<PatchReport, GotError> {
    PatchPlan::new(requests)?.apply()
}

/// Re-reads every slot of `report` and checks it still holds the interposed
/// address (e.g. after a lazy binder could have run).
pub fn verify(report: &PatchReport) -> Result<(), GotError> {
    for p in &report.patched {
        for s in &p.slots {
            // SAFETY: slots in a report come from elf: aligned, mapped words
            // of the executable (which is never unmapped).
            let found = unsafe { load_slot(s.slot) };
            if found != p.address {
                return Err(GotError::Verify {
                    symbol: p.name.clone(),
                    slot: s.slot,
                    expected: p.address,
                    found,
                });
            }
        }
    }
    Ok(())
}

/// Names of every symbol the running executable imports (holds a slot for
/// and does not define), sorted and deduplicated, without versions. Lets the
/// caller decide from the binary itself, at run time, which functions to
/// interpose.
pub fn executable_imports() -> Result<Vec<String>, GotError> {
    Ok(Executable::current()?.imported_names())
}

/// Current value of the first slot importing `symbol`, or `None` when the
/// executable has no slot for it (or cannot be read). For tests and
/// diagnostics.
pub fn slot_value(symbol: &str) -> Option<usize> {
    let exe = Executable::current().ok()?;
    let import = exe.imports_of(symbol).next()?;
    // SAFETY: a slot from elf: an aligned, mapped word of the executable.
    Some(unsafe { load_slot(import.slot) })
}

/// Current values of every slot importing `symbol`.
pub fn slot_values(symbol: &str) -> Result<Vec<usize>, GotError> {
    let exe = Executable::current()?;
    Ok(exe
        .imports_of(symbol)
        // SAFETY: a slot from elf: an aligned, mapped word of the executable.
        .map(|i| unsafe { load_slot(i.slot) })
        .collect())
}
