//! The one crate of pg_ephcrypt with libc and ELF `unsafe` code.
//!
//! * [`secmem`]: the protected mapping that holds the epoch key.
//! * [`elf`] / [`got`]: finding and patching the executable's GOT slots.
//! * [`classify`]: pure path classification into artifact classes.
#![deny(unsafe_op_in_unsafe_fn)]

pub use error::InterposeError;

pub mod classify;
pub mod elf;
pub mod error;
pub mod got;
pub mod secmem;
pub mod shim;
pub mod stats;
