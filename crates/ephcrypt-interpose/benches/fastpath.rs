//! Cost of the interposition on the fast path (an fd that is not ours) and
//! of an encrypted 8 KiB read, measured in one process: the same `pread`
//! call before and after this binary's GOT is patched. Prints medians and
//! the ratio. Run: `cargo bench -p ephcrypt-interpose --bench fastpath`.

use std::fs;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::time::Instant;

use ephcrypt_classify::ArtifactClass;
use ephcrypt_interpose::secmem::{self, AllocMode};
use ephcrypt_interpose::shim::{self, Config};

const CALLS: usize = 20_000;
const ROUNDS: usize = 21;

/// Median ns per `pread` of 8 KiB at offset 0 of `fd`.
fn ns_per_pread(fd: i32) -> f64 {
    let mut buf = vec![0u8; 8192];
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..CALLS {
            // SAFETY: a valid fd and buffer; goes through this binary's GOT.
            let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            black_box(n);
        }
        samples.push(t.elapsed().as_nanos() as f64 / CALLS as f64);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[ROUNDS / 2]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ephcrypt-fastpath-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("base/pgsql_tmp")).unwrap();
    let plain_path = dir.join("base/16384");
    fs::write(&plain_path, vec![7u8; 8192]).unwrap();
    let plain = fs::File::open(&plain_path).unwrap();

    let before = ns_per_pread(plain.as_raw_fd());

    secmem::start_epoch(AllocMode::Auto, 1).unwrap();
    shim::set_enabled_classes(&ArtifactClass::ALL);
    shim::install(Config {
        data_dir: dir.as_os_str().as_encoded_bytes().to_vec(),
        io_uring_in_use: false,
        allow_extra: vec![
            ("syscall", "Rust std: futex and getrandom"),
            ("ioctl", "Rust std: FIOCLEX/FIONBIO"),
        ],
    })
    .unwrap();

    let after = ns_per_pread(plain.as_raw_fd());
    let covered_path = dir.join("base/pgsql_tmp/pgsql_tmp1.0");
    fs::write(&covered_path, vec![7u8; 8192]).unwrap(); // sealed through the shims
    let covered = fs::File::open(&covered_path).unwrap();
    let encrypted = ns_per_pread(covered.as_raw_fd());
    let _ = fs::remove_dir_all(&dir);

    println!("pread 8 KiB, page cache, median of {ROUNDS} rounds x {CALLS} calls:");
    println!("  not ours, GOT unpatched : {before:8.1} ns");
    println!(
        "  not ours, through shim  : {after:8.1} ns   ratio {:.3} (fast path)",
        after / before
    );
    println!(
        "  ours (sealed, cached)   : {encrypted:8.1} ns   ratio {:.3}",
        encrypted / before
    );
}
