//! The running main executable's dynamic linking information.
//!
//! The ELF structures are read with the `object` crate from the executable
//! *file* (`/proc/self/exe`, which names the mapped inode even if the path
//! was replaced since start), then tied to the running image: the load bias
//! comes from the auxiliary vector (`AT_PHDR` minus the file's `PT_PHDR`),
//! and the program headers mapped in memory must equal the file's, byte for
//! byte, or we refuse. From the section headers we take the dynamic symbol
//! table, its versions and every `SHT_RELA` table linked to it, and list each
//! relocation through which the executable holds the address of a function
//! of another object:
//!
//! * `JUMP_SLOT`: the PLT's GOT slots (calls);
//! * `GLOB_DAT`: GOT slots of `-fno-plt` calls and of address-taking code
//!   (Rust binaries and `-fno-plt` C builds call through these);
//! * `ABS64` (`R_X86_64_64` / `R_AARCH64_ABS64`) with a zero addend: data
//!   words initialised with a function's address (function-pointer tables);
//!   patching them too keeps a table of `&pwrite` from bypassing the shims.
//!
//! Reading happens once, at install time: allocation is fine here.

use std::path::Path;
use std::sync::OnceLock;

use object::elf as E;
use object::read::elf::{FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::{Endianness, SymbolIndex};

use crate::error::GotError;

type Header = E::FileHeader64<Endianness>;

/// Relocation type numbers of the running architecture.
#[derive(Clone, Copy)]
struct ArchRelocs {
    machine: u16,
    jump_slot: u32,
    glob_dat: u32,
    abs64: u32,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const ARCH_RELOCS: Option<ArchRelocs> = Some(ArchRelocs {
    machine: E::EM_X86_64,
    jump_slot: E::R_X86_64_JUMP_SLOT,
    glob_dat: E::R_X86_64_GLOB_DAT,
    abs64: E::R_X86_64_64,
});

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
const ARCH_RELOCS: Option<ArchRelocs> = Some(ArchRelocs {
    machine: E::EM_AARCH64,
    jump_slot: E::R_AARCH64_JUMP_SLOT,
    glob_dat: E::R_AARCH64_GLOB_DAT,
    abs64: E::R_AARCH64_ABS64,
});

#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_os = "linux"
)))]
const ARCH_RELOCS: Option<ArchRelocs> = None;

fn arch() -> Result<ArchRelocs, GotError> {
    ARCH_RELOCS.ok_or(GotError::Unsupported(
        "GOT interposition supports only x86_64 and aarch64 Linux",
    ))
}

fn elf_err(msg: impl Into<String>) -> GotError {
    GotError::Elf(msg.into())
}

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

/// One word of the executable that the dynamic linker fills with the address
/// of a named symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// Symbol name, without version (`stat`, not `stat@GLIBC_2.33`).
    pub name: String,
    /// Version required by the executable (`GLIBC_2.33`), when it has one.
    pub version: Option<String>,
    /// Relocation type.
    pub kind: RelocKind,
    /// Address of the slot (an aligned machine word): absolute for the
    /// running executable, link-time for a file read with [`Executable::from_file`].
    pub slot: usize,
    /// The executable defines the symbol itself (not an import proper).
    pub defined: bool,
}

/// One `PT_LOAD` segment.
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

/// An executable's dynamic linking state.
#[derive(Clone, Debug)]
pub struct Executable {
    /// Load bias (0 for a non-PIE executable, or a file not loaded).
    pub bias: usize,
    /// `PT_LOAD` segments (biased).
    pub segments: Vec<Segment>,
    /// `PT_GNU_RELRO` range `[start, end)` (biased), if any.
    pub relro: Option<(usize, usize)>,
    /// `DT_BIND_NOW`, `DF_BIND_NOW` or `DF_1_NOW` is set: every slot is
    /// resolved at start-up (no lazy binding).
    pub bind_now: bool,
    /// Every `JUMP_SLOT`, `GLOB_DAT` and zero-addend `ABS64` relocation that
    /// names a symbol, in section order.
    pub imports: Vec<Import>,
}

static CURRENT: OnceLock<Result<Executable, String>> = OnceLock::new();

impl Executable {
    /// The running main executable (read once per process, then cached: the
    /// mapped image does not change).
    pub fn current() -> Result<&'static Executable, GotError> {
        CURRENT
            .get_or_init(|| read_current().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| GotError::Elf(e.clone()))
    }

    /// An executable file on disk, not loaded (bias 0: slots are link-time
    /// addresses). For auditing another binary's imports.
    pub fn from_file(path: &Path) -> Result<Executable, GotError> {
        let data = std::fs::read(path).map_err(|source| GotError::Io {
            what: "the executable file",
            source,
        })?;
        parse(&data, 0)
    }

    /// All imports of `name` (every slot, every relocation kind).
    pub fn imports_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Import> + 'a {
        self.imports.iter().filter(move |i| i.name == name)
    }

    /// Names of the symbols the executable does not define itself but holds
    /// a slot for, sorted and deduplicated.
    pub fn imported_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .imports
            .iter()
            .filter(|i| !i.defined)
            .map(|i| i.name.clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
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

/// `addr` lies in one of the main executable's loaded segments.
pub fn main_image_contains(addr: usize) -> Result<bool, GotError> {
    Ok(Executable::current()?.contains(addr, 1))
}

/// The in-memory program header table of the main program (auxiliary vector).
fn mapped_program_headers() -> Result<(usize, &'static [u8]), GotError> {
    // SAFETY: getauxval has no preconditions; it returns 0 for absent keys.
    let (phdr, phnum, phent) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR) as usize,
            libc::getauxval(libc::AT_PHNUM) as usize,
            libc::getauxval(libc::AT_PHENT) as usize,
        )
    };
    let entry = std::mem::size_of::<E::ProgramHeader64<Endianness>>();
    if phdr == 0 || phnum == 0 || phnum > 0xffff || (phent != 0 && phent != entry) {
        return Err(elf_err(
            "no usable AT_PHDR/AT_PHNUM in the auxiliary vector",
        ));
    }
    // SAFETY: the kernel's AT_PHDR/AT_PHNUM describe the main program's
    // program header table, mapped read-only for the life of the process;
    // we only read it as bytes.
    let bytes = unsafe { std::slice::from_raw_parts(phdr as *const u8, phnum * entry) };
    Ok((phdr, bytes))
}

fn read_current() -> Result<Executable, GotError> {
    let data = std::fs::read("/proc/self/exe").map_err(|source| GotError::Io {
        what: "/proc/self/exe",
        source,
    })?;
    let header = Header::parse(&*data)?;
    let endian = header.endian()?;
    let phdrs = header.program_headers(endian, &*data)?;
    let phdr_vaddr = phdrs
        .iter()
        .find(|p| p.p_type(endian) == E::PT_PHDR)
        .map(|p| p.p_vaddr(endian) as usize)
        .ok_or_else(|| elf_err("the executable has no PT_PHDR"))?;
    let (mapped_at, mapped) = mapped_program_headers()?;
    let bias = mapped_at.wrapping_sub(phdr_vaddr);
    // The file must be what is mapped: identical program headers.
    let file_bytes = object::pod::bytes_of_slice(phdrs);
    if file_bytes != mapped {
        return Err(elf_err(
            "/proc/self/exe does not match the mapped program headers",
        ));
    }
    parse(&data, bias)
}

fn parse(data: &[u8], bias: usize) -> Result<Executable, GotError> {
    let relocs = arch()?;
    let header = Header::parse(data)?;
    let endian = header.endian()?;
    if header.e_machine(endian) != relocs.machine {
        return Err(elf_err("executable built for another architecture"));
    }

    let mut segments = Vec::new();
    let mut relro = None;
    let mut bind_now = false;
    for ph in header.program_headers(endian, data)? {
        let start = bias.wrapping_add(ph.p_vaddr(endian) as usize);
        let end = start.wrapping_add(ph.p_memsz(endian) as usize);
        match ph.p_type(endian) {
            E::PT_LOAD => segments.push(Segment {
                start,
                end,
                flags: ph.p_flags(endian),
            }),
            E::PT_GNU_RELRO => relro = Some((start, end)),
            E::PT_DYNAMIC => {
                if let Some(entries) = ph.dynamic(endian, data)? {
                    for d in entries {
                        let (tag, val) = (d.d_tag.get(endian) as u32, d.d_val.get(endian));
                        bind_now |= tag == E::DT_BIND_NOW
                            || (tag == E::DT_FLAGS && val & u64::from(E::DF_BIND_NOW) != 0)
                            || (tag == E::DT_FLAGS_1 && val & u64::from(E::DF_1_NOW) != 0);
                    }
                }
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(elf_err("no PT_LOAD segment"));
    }

    let sections = header.sections(endian, data)?;
    let dynsym = sections.symbols(endian, data, E::SHT_DYNSYM)?;
    if dynsym.is_empty() {
        return Err(elf_err(
            "no dynamic symbol table (section headers stripped?)",
        ));
    }
    let versions = sections.versions(endian, data)?;
    let strings = dynsym.strings();
    let mut imports = Vec::new();
    for section in sections.iter() {
        let Some((relas, link)) = section.rela(endian, data)? else {
            continue;
        };
        if link != dynsym.section() {
            continue;
        }
        for r in relas {
            let rtype = r.r_type(endian, false);
            let addend = r.r_addend(endian);
            let kind = if rtype == relocs.jump_slot {
                RelocKind::JumpSlot
            } else if rtype == relocs.glob_dat {
                RelocKind::GlobDat
            } else if rtype == relocs.abs64 && addend == 0 {
                RelocKind::Abs64
            } else {
                continue;
            };
            let sym_index = r.r_sym(endian, false) as usize;
            if sym_index == 0 {
                continue; // no symbol: nothing to interpose
            }
            let sym = dynsym.symbol(SymbolIndex(sym_index))?;
            let name = sym.name(endian, strings)?;
            if name.is_empty() {
                continue;
            }
            let slot = bias.wrapping_add(r.r_offset(endian) as usize);
            if !slot.is_multiple_of(std::mem::size_of::<usize>()) {
                return Err(elf_err(format!("misaligned slot at {slot:#x}")));
            }
            if !segments.iter().any(|s| s.contains(slot, 8)) {
                return Err(elf_err(format!("slot {slot:#x} lies outside the image")));
            }
            let version = match &versions {
                Some(v) => v
                    .version(v.version_index(endian, SymbolIndex(sym_index)))?
                    .map(|v| String::from_utf8_lossy(v.name()).into_owned()),
                None => None,
            };
            imports.push(Import {
                name: String::from_utf8_lossy(name).into_owned(),
                version,
                kind,
                slot,
                defined: !sym.is_undefined(endian),
            });
        }
    }
    Ok(Executable {
        bias,
        segments,
        relro,
        bind_now,
        imports,
    })
}
