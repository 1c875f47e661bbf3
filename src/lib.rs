//! pg_ephcrypt: ephemeral compute encryption for PostgreSQL's transient
//! files. This crate is the pgrx glue; the format and crypto live in
//! `crates/ephcrypt-format`, the libc/ELF code in `crates/ephcrypt-interpose`.

use pgrx::prelude::*;

mod anchor;
mod attest;
mod epoch;
mod errors;
mod gucs;
mod interpose;
mod lastscan;
mod memory;
mod scan;
mod server;
mod stats;
mod status;
mod time;
mod wal;

#[cfg(any(test, feature = "pg_test"))]
mod testing;

::pgrx::pg_module_magic!();

// Hand-written SQL: the preload check, the stats view and the grants.
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize_checks", finalize);

/// Loaded through shared_preload_libraries, this runs in the postmaster
/// before any child is forked. Loaded any other way (LOAD, CREATE
/// EXTENSION without preload), it does nothing: every SQL function then
/// raises ERROR 55000.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reading a PostgreSQL global in the loading process.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    gucs::init();
    lastscan::init();
    anchor::init_postmaster();
    attest::record_loaded_library();
    epoch::init_postmaster();
    memory::init_postmaster();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_ephcrypt'"]
    }
}
