//! Reading the running main executable's dynamic linking information.
//!
//! Everything here reads the executable *as mapped in memory* (never the
//! file): its program headers come from the auxiliary vector (`AT_PHDR`,
//! `AT_PHNUM`), the load bias from `PT_PHDR` (or from the matching
//! `dl_iterate_phdr` entry), and the dynamic section from `PT_DYNAMIC`.
//! From the dynamic section we take the symbol and string tables, the two
//! relocation tables (`DT_RELA` and `DT_JMPREL`), the symbol versions and the
//! binding flags, and list every relocation through which the executable
//! holds the address of a function of another object:
//!
//! * `JUMP_SLOT`: the PLT's GOT slots (calls);
//! * `GLOB_DAT`: GOT slots of `-fno-plt` calls and of address-taking code
//!   (Rust binaries and `-fno-plt` C builds call through these);
//! * `ABS64` (`R_X86_64_64` / `R_AARCH64_ABS64`) with a zero addend: data
//!   words initialised with a function's address (function-pointer tables);
//!   patching them too keeps a table of `&pwrite` from bypassing the shims.
//!
//! Pointer-valued dynamic tags: glibc adds the load bias in place to some of
//! them when it relocates the object (`DT_SYMTAB`, `DT_STRTAB`, `DT_RELA`,
//! `DT_JMPREL`, `DT_VERSYM`, ... on x86_64 and aarch64, but not `DT_VERNEED`,
//! and on no tag on architectures with a read-only dynamic section). Each
//! pointer is therefore checked against the loaded segments and accepted
//! either as already absolute or as a link-time address plus the bias.
//!
//! Every table access is bounds-checked against the `PT_LOAD` segments so a
//! malformed or unexpected layout gives an error, never a wild read.
//!
//! The module is generic: it knows nothing about PostgreSQL.

use std::ffi::CStr;
use std::mem::size_of;

use crate::got::InterposeError;

// ---------------------------------------------------------------------------
// ELF definitions not provided by the libc crate (ELF64 only).

const DT_NULL: u64 = 0;
const DT_PLTRELSZ: u64 = 2;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_REL: u64 = 17;
const DT_PLTREL: u64 = 20;
const DT_JMPREL: u64 = 23;
const DT_BIND_NOW: u64 = 24;
const DT_FLAGS: u64 = 30;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DT_VERNEED: u64 = 0x6fff_fffe;
const DT_VERNEEDNUM: u64 = 0x6fff_ffff;

const DF_BIND_NOW: u64 = 0x8;
const DF_1_NOW: u64 = 0x1;

const SHN_UNDEF: u16 = 0;
const VERSYM_HIDDEN: u16 = 0x8000;

#[repr(C)]
#[derive(Clone, Copy)]
struct Elf64Dyn {
    d_tag: u64,
    d_val: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Elf64Rela {
    r_offset: u64,
    r_info: u64,
    r_addend: i64,
}

#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)] // mirrors the ELF layout; not every field is read
struct Elf64Sym {
    st_name: u32,
    st_info: u8,
    st_other: u8,
    st_shndx: u16,
    st_value: u64,
    st_size: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)] // mirrors the ELF layout; not every field is read
struct Elf64Verneed {
    vn_version: u16,
    vn_cnt: u16,
    vn_file: u32,
    vn_aux: u32,
    vn_next: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)] // mirrors the ELF layout; not every field is read
struct Elf64Vernaux {
    vna_hash: u32,
    vna_flags: u16,
    vna_other: u16,
    vna_name: u32,
    vna_next: u32,
}

/// Relocation type numbers of the running architecture.
struct ArchRelocs {
    jump_slot: u32,
    glob_dat: u32,
    abs64: u32,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const ARCH_RELOCS: Option<ArchRelocs> = Some(ArchRelocs {
    jump_slot: 7, // R_X86_64_JUMP_SLOT
    glob_dat: 6,  // R_X86_64_GLOB_DAT
    abs64: 1,     // R_X86_64_64
});

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
const ARCH_RELOCS: Option<ArchRelocs> = Some(ArchRelocs {
    jump_slot: 1026, // R_AARCH64_JUMP_SLOT
    glob_dat: 1025,  // R_AARCH64_GLOB_DAT
    abs64: 257,      // R_AARCH64_ABS64
});

#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_os = "linux"
)))]
const ARCH_RELOCS: Option<ArchRelocs> = None;

// ---------------------------------------------------------------------------
// Public types.

/// How the executable refers to an imported symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocKind {
    /// `R_*_JUMP_SLOT`: a PLT GOT slot.
    JumpSlot,
    /// `R_*_GLOB_DAT`: a plain GOT slot (`-fno-plt` calls, address-taking).
    GlobDat,
    /// `R_X86_64_64` / `R_AARCH64_ABS64` with a zero addend: a data word that
    /// holds the symbol's address (e.g. a function-pointer table).
    Abs64,
}

impl RelocKind {
    /// Short name for diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            RelocKind::JumpSlot => "JUMP_SLOT",
            RelocKind::GlobDat => "GLOB_DAT",
            RelocKind::Abs64 => "ABS64",
        }
    }
}

/// One word of the executable that the dynamic linker filled with the
/// address of a named symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Import {
    /// Symbol name, without version (`stat`, not `stat@GLIBC_2.33`).
    pub name: &'static CStr,
    /// Version required by the executable (`GLIBC_2.33`), when it has one.
    pub version: Option<&'static CStr>,
    /// Relocation type.
    pub kind: RelocKind,
    /// Absolute address of the slot (an aligned machine word).
    pub slot: usize,
    /// The executable defines the symbol itself (not an import proper).
    pub defined: bool,
}

impl Import {
    /// The symbol name as UTF-8 (lossy; libc names are ASCII).
    pub fn name_str(&self) -> std::borrow::Cow<'static, str> {
        self.name.to_string_lossy()
    }
}

/// One `PT_LOAD` segment, absolute addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First byte.
    pub start: usize,
    /// One past the last byte (`p_memsz`).
    pub end: usize,
    /// `PF_*` flags.
    pub flags: u32,
}

impl Segment {
    /// `[addr, addr + len)` lies inside the segment.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.start && addr.checked_add(len).is_some_and(|e| e <= self.end)
    }
}

/// The running main executable's dynamic linking state.
#[derive(Clone, Debug)]
pub struct Executable {
    /// Load bias (0 for a non-PIE executable).
    pub bias: usize,
    /// `PT_LOAD` segments.
    pub segments: Vec<Segment>,
    /// `PT_GNU_RELRO` range `[start, end)` (absolute), if any.
    pub relro: Option<(usize, usize)>,
    /// `DT_BIND_NOW`, `DF_BIND_NOW` or `DF_1_NOW` is set: every slot was
    /// resolved at start-up (no lazy binding).
    pub bind_now: bool,
    /// The pointer-valued dynamic tags (`DT_SYMTAB`, ...) held absolute
    /// addresses, i.e. the dynamic linker had already added the bias.
    /// Always `false` when the bias is 0 (nothing to tell apart).
    pub dyn_ptrs_relocated: bool,
    /// Every `JUMP_SLOT`, `GLOB_DAT` and zero-addend `ABS64` relocation that
    /// names a symbol, in table order (`DT_RELA` first, then `DT_JMPREL`).
    pub imports: Vec<Import>,
}

impl Executable {
    /// Reads the running main executable.
    pub fn current() -> Result<Executable, InterposeError> {
        let relocs = ARCH_RELOCS.ok_or(InterposeError::Unsupported(
            "GOT interposition supports only x86_64 and aarch64 Linux",
        ))?;
        let (bias, phdrs) = main_program_headers()?;
        parse(bias, phdrs, &relocs)
    }

    /// All imports of `name` (every slot, every relocation kind).
    pub fn imports_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Import> + 'a {
        self.imports
            .iter()
            .filter(move |i| i.name.to_bytes() == name.as_bytes())
    }

    /// `[addr, addr + len)` lies inside one loaded segment.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        self.segments.iter().any(|s| s.contains(addr, len))
    }

    /// The slot lies in the `PT_GNU_RELRO` range (read-only after start-up).
    pub fn in_relro(&self, slot: usize) -> bool {
        self.relro
            .is_some_and(|(start, end)| slot >= start && slot < end)
    }

    /// Full RELRO: bind-now and every `JUMP_SLOT` inside `PT_GNU_RELRO`.
    pub fn full_relro(&self) -> bool {
        self.bind_now
            && self.relro.is_some()
            && self
                .imports
                .iter()
                .filter(|i| i.kind == RelocKind::JumpSlot)
                .all(|i| self.in_relro(i.slot))
    }
}

/// `addr` lies in one of the main executable's loaded segments. Works on
/// any 64-bit Linux (needs only the program headers).
pub fn main_image_contains(addr: usize) -> Result<bool, InterposeError> {
    let (bias, phdrs) = main_program_headers()?;
    Ok(phdrs.iter().any(|ph| {
        let start = bias.wrapping_add(ph.p_vaddr as usize);
        ph.p_type == libc::PT_LOAD && addr >= start && addr - start < ph.p_memsz as usize
    }))
}

// ---------------------------------------------------------------------------
// Locating the program headers.

fn elf_err(msg: impl Into<String>) -> InterposeError {
    InterposeError::Elf(msg.into())
}

/// Load bias and program headers of the main executable.
fn main_program_headers() -> Result<(usize, &'static [libc::Elf64_Phdr]), InterposeError> {
    // SAFETY: getauxval has no preconditions; it returns 0 for absent keys.
    let (at_phdr, at_phnum, at_phent) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR) as usize,
            libc::getauxval(libc::AT_PHNUM) as usize,
            libc::getauxval(libc::AT_PHENT) as usize,
        )
    };
    let (phdr_ptr, phnum, bias_hint) = if at_phdr != 0 && at_phnum != 0 {
        if at_phent != 0 && at_phent != size_of::<libc::Elf64_Phdr>() {
            return Err(elf_err(format!("unexpected AT_PHENT {at_phent}")));
        }
        (at_phdr, at_phnum, None)
    } else {
        // No auxiliary vector entry (should not happen on Linux): the first
        // object of dl_iterate_phdr is the main program.
        let first = dl_first_object()?;
        (first.1, first.2, Some(first.0))
    };
    if phdr_ptr % std::mem::align_of::<libc::Elf64_Phdr>() != 0 || phnum > 0xffff {
        return Err(elf_err("implausible program header table"));
    }
    // SAFETY: AT_PHDR/AT_PHNUM (or dl_iterate_phdr) describe the main
    // program's header table, mapped read-only for the life of the process;
    // alignment was checked above.
    let phdrs: &'static [libc::Elf64_Phdr] =
        unsafe { std::slice::from_raw_parts(phdr_ptr as *const libc::Elf64_Phdr, phnum) };
    if let Some(bias) = bias_hint {
        return Ok((bias, phdrs));
    }
    if let Some(ph) = phdrs.iter().find(|p| p.p_type == libc::PT_PHDR) {
        return Ok(((phdr_ptr).wrapping_sub(ph.p_vaddr as usize), phdrs));
    }
    // No PT_PHDR: find the dl_iterate_phdr entry with this header table.
    let bias = dl_object_with_phdr(phdr_ptr)
        .ok_or_else(|| elf_err("main program not found by dl_iterate_phdr"))?;
    Ok((bias, phdrs))
}

struct DlSearch {
    want_phdr: usize,
    found: Option<(usize, usize, usize)>,
}

unsafe extern "C" fn dl_callback(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the &mut DlSearch passed to dl_iterate_phdr by the
    // caller below, alive for the whole iteration; `info` is valid for the
    // duration of this callback.
    let (search, info) = unsafe { (&mut *(data as *mut DlSearch), &*info) };
    let phdr = info.dlpi_phdr as usize;
    if search.want_phdr == 0 || search.want_phdr == phdr {
        search.found = Some((info.dlpi_addr as usize, phdr, info.dlpi_phnum as usize));
        return 1;
    }
    0
}

fn dl_search(want_phdr: usize) -> Option<(usize, usize, usize)> {
    let mut search = DlSearch {
        want_phdr,
        found: None,
    };
    // SAFETY: the callback only touches `search` (passed as data) and the
    // info struct handed to it.
    unsafe {
        libc::dl_iterate_phdr(
            Some(dl_callback),
            &mut search as *mut DlSearch as *mut libc::c_void,
        );
    }
    search.found
}

fn dl_first_object() -> Result<(usize, usize, usize), InterposeError> {
    dl_search(0).ok_or_else(|| elf_err("dl_iterate_phdr reported no object"))
}

fn dl_object_with_phdr(phdr: usize) -> Option<usize> {
    dl_search(phdr).map(|(bias, _, _)| bias)
}

// ---------------------------------------------------------------------------
// Bounds-checked reads of the mapped image.

struct Image<'a> {
    bias: usize,
    segments: &'a [Segment],
}

impl Image<'_> {
    fn contains(&self, addr: usize, len: usize) -> bool {
        self.segments.iter().any(|s| s.contains(addr, len))
    }

    /// Reads a `T` at `addr` after checking it lies in a loaded segment.
    fn read<T: Copy>(&self, addr: usize, what: &str) -> Result<T, InterposeError> {
        if !self.contains(addr, size_of::<T>()) {
            return Err(elf_err(format!("{what} at {addr:#x} is outside the image")));
        }
        // SAFETY: the range lies in a PT_LOAD segment of the main program,
        // which is mapped (readable) for the life of the process; the read
        // is unaligned-tolerant and T is a plain-old-data ELF struct.
        Ok(unsafe { std::ptr::read_unaligned(addr as *const T) })
    }

    /// The bytes `[addr, addr + len)` after checking they lie in a segment.
    fn bytes(&self, addr: usize, len: usize, what: &str) -> Result<&'static [u8], InterposeError> {
        if !self.contains(addr, len) {
            return Err(elf_err(format!(
                "{what} [{addr:#x}, +{len:#x}) is outside the image"
            )));
        }
        // SAFETY: as in `read`; the main program's mapping is never unmapped,
        // so the slice may be 'static. These tables are never written after
        // start-up (they are not GOT words).
        Ok(unsafe { std::slice::from_raw_parts(addr as *const u8, len) })
    }

    /// Interprets a pointer-valued dynamic tag: already absolute (relocated
    /// in place by the dynamic linker) or a link-time address.
    /// Returns (absolute address, was it already absolute).
    fn dyn_ptr(&self, value: u64, len: usize, what: &str) -> Result<(usize, bool), InterposeError> {
        let value = value as usize;
        // A zero-length table still needs a valid start address.
        let probe = len.max(1);
        if self.contains(value, probe) {
            return Ok((value, self.bias != 0));
        }
        let rebased = value.wrapping_add(self.bias);
        if self.contains(rebased, probe) {
            return Ok((rebased, false));
        }
        Err(elf_err(format!(
            "{what} {value:#x} lies in no loaded segment (bias {:#x})",
            self.bias
        )))
    }
}

// ---------------------------------------------------------------------------
// Parsing.

#[derive(Default)]
struct DynInfo {
    strtab: Option<u64>,
    strsz: Option<u64>,
    symtab: Option<u64>,
    syment: Option<u64>,
    rela: Option<u64>,
    relasz: u64,
    relaent: Option<u64>,
    has_rel: bool,
    jmprel: Option<u64>,
    pltrelsz: u64,
    pltrel: Option<u64>,
    bind_now: bool,
    versym: Option<u64>,
    verneed: Option<u64>,
    verneednum: u64,
}

fn parse(
    bias: usize,
    phdrs: &'static [libc::Elf64_Phdr],
    relocs: &ArchRelocs,
) -> Result<Executable, InterposeError> {
    let mut segments = Vec::new();
    let mut dynamic = None;
    let mut relro = None;
    for ph in phdrs {
        let start = bias.wrapping_add(ph.p_vaddr as usize);
        let end = start
            .checked_add(ph.p_memsz as usize)
            .ok_or_else(|| elf_err("segment overflows the address space"))?;
        match ph.p_type {
            libc::PT_LOAD => segments.push(Segment {
                start,
                end,
                flags: ph.p_flags,
            }),
            libc::PT_DYNAMIC => dynamic = Some((start, ph.p_memsz as usize)),
            libc::PT_GNU_RELRO => relro = Some((start, end)),
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(elf_err("no PT_LOAD segment"));
    }
    let (dyn_start, dyn_size) = dynamic.ok_or(InterposeError::Elf(
        "the executable has no PT_DYNAMIC (statically linked?)".into(),
    ))?;
    let image = Image {
        bias,
        segments: &segments,
    };

    // Dynamic section.
    let mut info = DynInfo::default();
    let count = dyn_size / size_of::<Elf64Dyn>();
    let mut terminated = false;
    for i in 0..count {
        let d: Elf64Dyn = image.read(dyn_start + i * size_of::<Elf64Dyn>(), "dynamic entry")?;
        match d.d_tag {
            DT_NULL => {
                terminated = true;
                break;
            }
            DT_STRTAB => info.strtab = Some(d.d_val),
            DT_STRSZ => info.strsz = Some(d.d_val),
            DT_SYMTAB => info.symtab = Some(d.d_val),
            DT_SYMENT => info.syment = Some(d.d_val),
            DT_RELA => info.rela = Some(d.d_val),
            DT_RELASZ => info.relasz = d.d_val,
            DT_RELAENT => info.relaent = Some(d.d_val),
            DT_REL => info.has_rel = true,
            DT_JMPREL => info.jmprel = Some(d.d_val),
            DT_PLTRELSZ => info.pltrelsz = d.d_val,
            DT_PLTREL => info.pltrel = Some(d.d_val),
            DT_BIND_NOW => info.bind_now = true,
            DT_FLAGS => info.bind_now |= d.d_val & DF_BIND_NOW != 0,
            DT_FLAGS_1 => info.bind_now |= d.d_val & DF_1_NOW != 0,
            DT_VERSYM => info.versym = Some(d.d_val),
            DT_VERNEED => info.verneed = Some(d.d_val),
            DT_VERNEEDNUM => info.verneednum = d.d_val,
            _ => {}
        }
    }
    if !terminated {
        return Err(elf_err("dynamic section has no DT_NULL terminator"));
    }
    if info.has_rel {
        return Err(elf_err(
            "DT_REL relocations are not supported (expected RELA)",
        ));
    }
    if info
        .syment
        .is_some_and(|s| s as usize != size_of::<Elf64Sym>())
    {
        return Err(elf_err("unexpected DT_SYMENT"));
    }
    if info
        .relaent
        .is_some_and(|s| s as usize != size_of::<Elf64Rela>())
    {
        return Err(elf_err("unexpected DT_RELAENT"));
    }
    if info.jmprel.is_some() && info.pltrel.is_some_and(|p| p != DT_RELA) {
        return Err(elf_err("DT_PLTREL is not DT_RELA"));
    }

    let (symtab, relocated) = match info.symtab {
        Some(v) => image.dyn_ptr(v, size_of::<Elf64Sym>(), "DT_SYMTAB")?,
        None => return Err(elf_err("no DT_SYMTAB")),
    };
    let strsz = info.strsz.ok_or_else(|| elf_err("no DT_STRSZ"))? as usize;
    let (strtab, _) = match info.strtab {
        Some(v) => image.dyn_ptr(v, strsz, "DT_STRTAB")?,
        None => return Err(elf_err("no DT_STRTAB")),
    };
    let strtab_bytes = image.bytes(strtab, strsz, "DT_STRTAB")?;
    let versym = match info.versym {
        Some(v) => Some(image.dyn_ptr(v, 2, "DT_VERSYM")?.0),
        None => None,
    };
    let verneed = match info.verneed {
        Some(v) => Some(image.dyn_ptr(v, size_of::<Elf64Verneed>(), "DT_VERNEED")?.0),
        None => None,
    };

    let tables = Tables {
        image: &image,
        symtab,
        strtab: strtab_bytes,
        versym,
        verneed,
        verneednum: info.verneednum,
    };

    let mut imports = Vec::new();
    if let Some(v) = info.rela {
        let len = info.relasz as usize;
        let (start, _) = image.dyn_ptr(v, len, "DT_RELA")?;
        tables.collect(start, len, relocs, &mut imports)?;
    }
    if let Some(v) = info.jmprel {
        let len = info.pltrelsz as usize;
        let (start, _) = image.dyn_ptr(v, len, "DT_JMPREL")?;
        tables.collect(start, len, relocs, &mut imports)?;
    }

    Ok(Executable {
        bias,
        relro,
        bind_now: info.bind_now,
        dyn_ptrs_relocated: relocated,
        imports,
        segments,
    })
}

struct Tables<'a> {
    image: &'a Image<'a>,
    symtab: usize,
    strtab: &'static [u8],
    versym: Option<usize>,
    verneed: Option<usize>,
    verneednum: u64,
}

impl Tables<'_> {
    fn collect(
        &self,
        start: usize,
        len: usize,
        relocs: &ArchRelocs,
        out: &mut Vec<Import>,
    ) -> Result<(), InterposeError> {
        if !len.is_multiple_of(size_of::<Elf64Rela>()) {
            return Err(elf_err(
                "relocation table size is not a multiple of Elf64_Rela",
            ));
        }
        for i in 0..len / size_of::<Elf64Rela>() {
            let r: Elf64Rela = self
                .image
                .read(start + i * size_of::<Elf64Rela>(), "relocation")?;
            let rtype = (r.r_info & 0xffff_ffff) as u32;
            let sym = (r.r_info >> 32) as usize;
            let kind = if rtype == relocs.jump_slot {
                RelocKind::JumpSlot
            } else if rtype == relocs.glob_dat {
                RelocKind::GlobDat
            } else if rtype == relocs.abs64 && r.r_addend == 0 {
                RelocKind::Abs64
            } else {
                continue;
            };
            if sym == 0 {
                continue;
            }
            let slot = self.image.bias.wrapping_add(r.r_offset as usize);
            if !slot.is_multiple_of(size_of::<usize>())
                || !self.image.contains(slot, size_of::<usize>())
            {
                return Err(elf_err(format!(
                    "{} slot {slot:#x} is misaligned or outside the image",
                    kind.name()
                )));
            }
            if kind != RelocKind::Abs64 && r.r_addend != 0 {
                return Err(elf_err(format!(
                    "{} relocation with non-zero addend at {slot:#x}",
                    kind.name()
                )));
            }
            let s: Elf64Sym = self
                .image
                .read(self.symtab + sym * size_of::<Elf64Sym>(), "symbol")?;
            let name = self.string(s.st_name)?;
            if name.is_empty() {
                continue;
            }
            let version = self.version_of(sym)?;
            out.push(Import {
                name,
                version,
                kind,
                slot,
                defined: s.st_shndx != SHN_UNDEF,
            });
        }
        Ok(())
    }

    fn string(&self, offset: u32) -> Result<&'static CStr, InterposeError> {
        let tail = self
            .strtab
            .get(offset as usize..)
            .ok_or_else(|| elf_err("string offset outside DT_STRTAB"))?;
        CStr::from_bytes_until_nul(tail).map_err(|_| elf_err("unterminated string in DT_STRTAB"))
    }

    /// Version needed for symbol `sym` (from DT_VERSYM + DT_VERNEED).
    fn version_of(&self, sym: usize) -> Result<Option<&'static CStr>, InterposeError> {
        let (Some(versym), Some(verneed)) = (self.versym, self.verneed) else {
            return Ok(None);
        };
        let idx: u16 = self.image.read(versym + sym * 2, "DT_VERSYM entry")?;
        let idx = idx & !VERSYM_HIDDEN;
        if idx <= 1 {
            return Ok(None); // local or global (unversioned)
        }
        let mut need_addr = verneed;
        for _ in 0..self.verneednum {
            let need: Elf64Verneed = self.image.read(need_addr, "Verneed")?;
            let mut aux_addr = need_addr + need.vn_aux as usize;
            for _ in 0..need.vn_cnt {
                let aux: Elf64Vernaux = self.image.read(aux_addr, "Vernaux")?;
                if aux.vna_other == idx {
                    return Ok(Some(self.string(aux.vna_name)?));
                }
                if aux.vna_next == 0 {
                    break;
                }
                aux_addr += aux.vna_next as usize;
            }
            if need.vn_next == 0 {
                break;
            }
            need_addr += need.vn_next as usize;
        }
        // A version defined by the executable itself (DT_VERDEF): not needed
        // for imports, left unnamed.
        Ok(None)
    }
}
