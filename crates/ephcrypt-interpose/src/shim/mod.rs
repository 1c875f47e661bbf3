//! The libc shims that PostgreSQL's GOT slots point at after [`install`].
//!
//! Every shim first asks the per-process fd table whether the descriptor is
//! ours. For an fd that is not (all durable I/O: heap, WAL, sockets, pipes)
//! that is one relaxed load of process-local memory, then a call to the real
//! libc function: no allocation, no lock, async-signal-safe. Path calls
//! first run the allocation-free classifier on the path.
//!
//! For our fds the shim translates the logical operation into the encrypted
//! layout through [`ephcrypt_format::SealedFile`] (the code the property
//! tests exercise). Shims never panic across the C boundary and never
//! longjmp: failures return -1 with `errno` (EIO for anything that does not
//! authenticate) and PostgreSQL raises its own ERROR.
//!
//! Layering, top down: `install` → {`path`, `fd`, `wal`, `process`} → {`table`,
//! `writeback`, `poison`} → {`fdio`, `nonces`, `config`} → {`real`, `changes`,
//! `pool`}.

pub mod audit;
pub mod changes;
mod config;
mod fd;
mod fdio;
mod install;
mod nonces;
mod path;
mod poison;
pub mod pool;
mod process;
mod real;
mod remember;
mod table;
pub mod wal;
mod writeback;

pub use config::{enabled_classes, set_enabled_classes};
pub use install::{
    audit_imports, install, shim_table, shimmed_names, verify_installed, Config, InstallReport,
};
pub use nonces::reseed_pending;
pub use process::{set_system_guard, SystemGuard, REFUSED_STATUS};
pub use real::Errno;
pub use table::{open_covered_files, MAX_TRACKED_FDS};
