//! The one crate of pg_ephcrypt with libc `unsafe` code of its own (ELF and
//! GOT patching live in `ephcrypt-got`, path rules in `ephcrypt-classify`).
//!
//! * [`secmem`]: the protected mapping that holds each epoch's key.
//! * [`walkey`]: the postmaster-lifetime key of the `wal` class.
//! * [`shim`]: the libc shims, the import audit and installation.
//! * [`stats`]: per-class counters in a shared page.
//! * [`memory`]: PostgreSQL's shared memory out of core dumps and swap.
#![deny(unsafe_op_in_unsafe_fn)]

pub use error::InterposeError;

pub mod error;
pub mod memory;
pub mod secmem;
pub mod shim;
pub mod stats;
pub mod walkey;
