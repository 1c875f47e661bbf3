//! Reading the running main executable's ELF imports and patching its GOT
//! slots. Generic: nothing here knows about PostgreSQL.
//!
//! * [`elf`]: the executable's imports (symbol, version, relocation kind,
//!   slot address), segments, RELRO range and binding mode, read with the
//!   `object` crate from `/proc/self/exe` and checked against what is mapped.
//! * [`resolve`]: the real libc functions, by name, from libc itself.
//! * [`patch`]: writing, restoring and verifying GOT slots.

pub mod elf;
pub mod error;
pub mod patch;
pub mod resolve;

pub use error::GotError;
pub use patch::{
    executable_imports, patch_executable, slot_value, slot_values, verify, PatchPlan, PatchReport,
    PatchedSlot, PatchedSymbol, Relro,
};
pub use resolve::{
    c_name, object_path_of, process_defines_symbol, resolve_libc, resolve_libc_versioned,
};
