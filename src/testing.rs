//! Test-only SQL functions and the `#[pg_test]`s (compiled only for tests).

use pgrx::prelude::*;

use ephcrypt_attest::to_hex;

use crate::epoch;

/// Which process ran this, and the fingerprint it computes from the key
/// page it inherited (not from shared memory). Parallel safe, so a
/// parallel worker can run it.
#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_test_probe() -> TableIterator<'static, (name!(pid, i32), name!(fingerprint, String))>
{
    let page = epoch::key_page().expect("preloaded test server has a key page");
    let fp = epoch::fingerprint_of(page).expect("live key");
    TableIterator::once((std::process::id() as i32, to_hex(&fp)))
}

#[pg_schema]
mod tests {
    use pgrx::prelude::*;
    use std::path::Path;

    use crate::epoch;
    use ephcrypt_attest::to_hex;

    fn status_fingerprint() -> String {
        Spi::connect(|client| {
            let table = client.select("SELECT fingerprint FROM pg_ephcrypt_status()", None, &[])?;
            table.first().get::<String>(1)
        })
        .expect("status query")
        .expect("fingerprint not null")
    }

    #[pg_test]
    fn status_row_is_complete_and_holds_no_key_bytes() {
        let row = Spi::connect(|client| {
            let t = client.select(
                "SELECT epoch_id, algorithm, fingerprint, memory_protection, postmaster_pid, \
                        created_at <= now() AS past FROM pg_ephcrypt_status()",
                None,
                &[],
            )?;
            let r = t.first();
            Ok::<_, pgrx::spi::Error>((
                r.get::<String>(1)?.unwrap(),
                r.get::<String>(2)?.unwrap(),
                r.get::<String>(3)?.unwrap(),
                r.get::<String>(4)?.unwrap(),
                r.get::<i32>(5)?.unwrap(),
                r.get::<bool>(6)?.unwrap(),
            ))
        })
        .unwrap();
        let (epoch_id, algorithm, fingerprint, protection, pm_pid, past) = row;
        assert_eq!(epoch_id.len(), 32);
        assert_eq!(algorithm, "AES-256-GCM");
        assert_eq!(fingerprint.len(), 64);
        assert!(
            protection == "memfd_secret" || protection == "mlock+dontdump",
            "{protection}"
        );
        // SAFETY: reading a PostgreSQL global of this backend.
        assert_eq!(pm_pid, unsafe { pg_sys::PostmasterPid });
        assert!(past);
        let page = epoch::key_page().unwrap();
        let key_hex = to_hex(page.key().unwrap());
        for field in [&epoch_id, &fingerprint] {
            assert!(
                !field.contains(&key_hex[..16]),
                "a status field leaks key bytes"
            );
        }
        assert_eq!(epoch_id, to_hex(&page.epoch_id()));
    }

    #[pg_test]
    fn parallel_worker_sees_the_same_fingerprint() {
        let expected = status_fingerprint();
        Spi::run("SET LOCAL max_parallel_workers_per_gather = 2").unwrap();
        Spi::run("SET LOCAL parallel_setup_cost = 0").unwrap();
        Spi::run("SET LOCAL parallel_tuple_cost = 0").unwrap();
        // PostgreSQL 16 renamed force_parallel_mode to debug_parallel_query.
        let knob = if pgrx::pg_sys::PG_VERSION_NUM >= 160000 {
            "debug_parallel_query"
        } else {
            "force_parallel_mode"
        };
        Spi::run(&format!("SET LOCAL {knob} = on")).unwrap();
        // Spi::connect + select passes no row limit, so a parallel plan is allowed.
        let rows: Vec<(i32, String)> = Spi::connect(|client| {
            let t = client.select(
                "SELECT pid, fingerprint FROM pg_ephcrypt_test_probe()",
                None,
                &[],
            )?;
            t.map(|r| Ok((r.get::<i32>(1)?.unwrap(), r.get::<String>(2)?.unwrap())))
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap();
        assert_eq!(rows.len(), 1);
        let (pid, fingerprint) = &rows[0];
        assert_ne!(
            *pid,
            std::process::id() as i32,
            "the probe must run in a parallel worker"
        );
        assert_eq!(fingerprint, &expected);
    }

    #[pg_test]
    fn key_mapping_of_postmaster_is_locked_and_not_dumpable() {
        let page = epoch::key_page().unwrap();
        // SAFETY: reading a PostgreSQL global of this backend.
        let pm = unsafe { pg_sys::PostmasterPid };
        let smaps = std::fs::read_to_string(format!("/proc/{pm}/smaps")).unwrap();
        let (flags, header) = ephcrypt_interpose::secmem::smaps_entry(&smaps, page.address())
            .expect("the key page is mapped in the postmaster at the same address");
        let flags: Vec<&str> = flags.split_whitespace().collect();
        assert!(flags.contains(&"dd"), "excluded from core dumps: {flags:?}");
        assert!(flags.contains(&"sh"), "shared with children: {flags:?}");
        match page.protection() {
            ephcrypt_interpose::secmem::Protection::SecretMem => {
                assert!(header.contains("secretmem"), "{header}")
            }
            ephcrypt_interpose::secmem::Protection::LockedNoDump => {
                assert!(flags.contains(&"lo"), "locked: {flags:?}")
            }
        }
    }

    fn find_in_tree(dir: &Path, needles: &[Vec<u8>], hits: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                find_in_tree(&path, needles, hits);
            } else if meta.is_file() {
                if let Ok(bytes) = std::fs::read(&path) {
                    for n in needles {
                        if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                            hits.push(path.display().to_string());
                        }
                    }
                }
            }
        }
    }

    #[pg_test]
    fn key_bytes_appear_nowhere_under_pgdata() {
        // A workload that writes WAL, heap, temp files and stats.
        Spi::run("SET LOCAL work_mem = '64kB'").unwrap();
        Spi::run(
            "CREATE TABLE key_probe AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
        )
        .unwrap();
        Spi::run("SELECT * FROM key_probe ORDER BY md5 OFFSET 19999").unwrap();
        Spi::run("CHECKPOINT").unwrap();
        let page = epoch::key_page().unwrap();
        let key = page.key().unwrap().to_vec();
        let key_hex = to_hex(&key).into_bytes();
        let mut hits = Vec::new();
        // SAFETY: DataDir is a valid C string for the life of the backend.
        let data_dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) };
        let data_dir = Path::new(data_dir.to_str().unwrap());
        // The scanner must be able to find what it looks for: a file we plant.
        let planted = data_dir.join("pg_ephcrypt_scanner_selftest");
        std::fs::write(&planted, b"xx-needle-yy").unwrap();
        let mut selftest = Vec::new();
        find_in_tree(data_dir, &[b"needle".to_vec()], &mut selftest);
        std::fs::remove_file(&planted).unwrap();
        assert_eq!(selftest.len(), 1, "scanner self-test: {selftest:?}");
        find_in_tree(data_dir, &[key, key_hex], &mut hits);
        assert!(hits.is_empty(), "key bytes found in {hits:?}");
    }

    #[pg_test]
    fn assert_preloaded_passes_when_preloaded() {
        assert_eq!(
            Spi::get_one::<bool>("SELECT pg_ephcrypt_assert_preloaded()"),
            Ok(Some(true))
        );
    }

    // --- on-disk audit, counters, attestation ---------------------------

    use crate::scan;

    fn scan_rows() -> Vec<(String, String, String)> {
        Spi::connect(|client| {
            let t = client.select(
                "SELECT path, class, status FROM pg_ephcrypt_scan()",
                None,
                &[],
            )?;
            t.map(|r| {
                Ok((
                    r.get::<String>(1)?.unwrap(),
                    r.get::<String>(2)?.unwrap(),
                    r.get::<String>(3)?.unwrap(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap()
    }

    #[pg_test]
    fn scan_reports_live_spill_files_as_current_and_planted_files_by_status() {
        let dir = scan::data_dir();
        let tmp = dir.join("base/pgsql_tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        // Written by this library's own libc imports: not interposed.
        let planted = tmp.join("pgsql_tmp999999.0");
        std::fs::write(&planted, b"tenant plaintext").unwrap();
        let stale = tmp.join("pgsql_tmp999999.1");
        let other_key = ephcrypt_format::EpochKey::from_bytes([3; 32]);
        let stale_name = ephcrypt_format::FileName::new(0, b"pgsql_tmp999999.1").unwrap();
        let (_, header) =
            ephcrypt_format::FileCipher::create(&other_key, &[5; 16], &[6; 16], &stale_name)
                .unwrap();
        std::fs::write(&stale, header).unwrap();
        let forged = tmp.join("pgsql_tmp999999.2");
        let page = crate::epoch::key_page().unwrap();
        let forged_name = ephcrypt_format::FileName::new(0, b"pgsql_tmp999999.2").unwrap();
        let (_, mut forged_header) = ephcrypt_format::FileCipher::create(
            &other_key,
            &page.epoch_id(),
            &[6; 16],
            &forged_name,
        )
        .unwrap();
        forged_header[60] ^= 1;
        std::fs::write(&forged, forged_header).unwrap();
        // Non-regular entries at covered names: never followed, reported.
        let link = tmp.join("pgsql_tmp999999.3");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        let fifo = tmp.join("pgsql_tmp999999.4");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let summary: pgrx::JsonB =
            Spi::get_one("SELECT pg_ephcrypt_attest('\\x0011223344556677'::bytea)->'scan_summary'")
                .unwrap()
                .unwrap();

        // A live spill: an external sort held open by a cursor.
        Spi::run("SET LOCAL work_mem = '64kB'").unwrap();
        Spi::run(
            "DECLARE held CURSOR FOR SELECT g, md5(g::text) FROM generate_series(1, 100000) g ORDER BY 2",
        )
        .unwrap();
        Spi::run("FETCH 1 FROM held").unwrap();
        let rows = scan_rows();
        Spi::run("CLOSE held").unwrap();
        for p in [&planted, &stale, &forged, &link, &fifo] {
            std::fs::remove_file(p).unwrap();
        }

        let status_of = |name: &str| {
            rows.iter()
                .find(|r| r.0.ends_with(name))
                .map(|r| r.2.clone())
                .unwrap_or_else(|| panic!("{name} not in scan: {rows:?}"))
        };
        assert_eq!(status_of("pgsql_tmp999999.0"), "plaintext");
        assert_eq!(status_of("pgsql_tmp999999.1"), "encrypted_stale");
        assert_eq!(status_of("pgsql_tmp999999.2"), "unreadable");
        assert_eq!(status_of("pgsql_tmp999999.3"), "unexpected");
        assert_eq!(status_of("pgsql_tmp999999.4"), "unexpected");
        assert!(
            summary.0["unexpected"].as_i64().unwrap() >= 2,
            "the attestation counts them: {}",
            summary.0
        );
        assert!(summary.0["plaintext"].as_i64().unwrap() >= 1);
        let live: Vec<_> = rows
            .iter()
            .filter(|r| r.0.contains(&format!("pgsql_tmp{}.", std::process::id())))
            .collect();
        assert!(!live.is_empty(), "the held sort has temp files: {rows:?}");
        for r in &live {
            assert_eq!(r.1, "temp_files");
            assert!(r.2 == "encrypted_current" || r.2 == "empty", "{r:?}");
        }
        assert!(live.iter().any(|r| r.2 == "encrypted_current"));
    }

    #[pg_test]
    fn shim_functions_are_not_exported_from_the_library() {
        // Control: the library is loaded RTLD_GLOBAL, so its exports resolve
        // (pgrx 0.18 names the info function `pg_finfo_<fn>_wrapper`).
        assert!(ephcrypt_got::process_defines_symbol(
            c"pg_ephcrypt_status_wrapper"
        ));
        for name in [c"shim_open", c"shim_pread", c"shim_write", c"shim_close"] {
            assert!(
                !ephcrypt_got::process_defines_symbol(name),
                "{name:?} is exported"
            );
        }
    }

    #[pg_test]
    fn every_patched_slot_still_holds_its_shim_after_a_workload() {
        // Calls of every kind through the patched slots: a spilling sort, a
        // temp table larger than temp_buffers, stat and unlink of temp files.
        Spi::run("SET LOCAL work_mem = '64kB'").unwrap();
        Spi::run("SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 50000) g ORDER BY 1) s")
            .unwrap();
        Spi::run("SET LOCAL temp_buffers = '800kB'").unwrap();
        Spi::run(
            "CREATE TEMP TABLE lazy_t AS SELECT g, md5(g::text) m FROM generate_series(1, 20000) g",
        )
        .unwrap();
        Spi::run("SELECT count(*) FROM lazy_t").unwrap();
        // In a lazily bound server (the PyPI builds) the dynamic linker would
        // have rewritten any slot whose PLT stub ran after the patch.
        let (slots, lazy) = ephcrypt_interpose::shim::verify_installed()
            .unwrap_or_else(|e| panic!("a patched slot was undone: {e}"));
        assert!(slots >= 10, "{slots} slots patched");
        pgrx::log!("pg_ephcrypt: {slots} patched slots verified, {lazy} were lazy-binding stubs");
    }

    #[pg_test]
    fn stats_count_sealed_bytes_of_a_spill() {
        let before: i64 =
            Spi::get_one("SELECT bytes_sealed FROM pg_ephcrypt_stats WHERE class = 'temp_files'")
                .unwrap()
                .unwrap();
        Spi::run("SET LOCAL work_mem = '64kB'").unwrap();
        Spi::run("SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 50000) g ORDER BY 1) s")
            .unwrap();
        let (after, opened, enabled): (i64, i64, bool) = Spi::connect(|c| {
            let t = c.select(
                "SELECT bytes_sealed, bytes_opened, enabled FROM pg_ephcrypt_stats WHERE class = 'temp_files'",
                None,
                &[],
            )?;
            let r = t.first();
            Ok::<_, pgrx::spi::Error>((
                r.get::<i64>(1)?.unwrap(),
                r.get::<i64>(2)?.unwrap(),
                r.get::<bool>(3)?.unwrap(),
            ))
        })
        .unwrap();
        assert!(enabled);
        assert!(
            after >= before + 1_000_000,
            "a 50k-row sort seals over 1 MB: {before} -> {after}"
        );
        assert!(opened > 0);
    }

    #[pg_test]
    fn attestation_verifies_and_rejects_tampering() {
        let ok: bool = Spi::get_one(
            "WITH a AS (SELECT pg_ephcrypt_attest('\\x00112233445566778899'::bytea) AS d), \
                  k AS (SELECT attestation_public_key AS pk FROM pg_ephcrypt_status()) \
             SELECT pg_ephcrypt_verify_attestation(d, pk, '\\x00112233445566778899'::bytea) FROM a, k",
        )
        .unwrap()
        .unwrap();
        assert!(ok);
        let tampered: bool = Spi::get_one(
            "WITH a AS (SELECT pg_ephcrypt_attest('\\x00112233445566778899'::bytea) AS d), \
                  k AS (SELECT attestation_public_key AS pk FROM pg_ephcrypt_status()) \
             SELECT pg_ephcrypt_verify_attestation(jsonb_set(d, '{plaintext_files}', '0'::jsonb || '1'::jsonb), pk) FROM a, k",
        )
        .unwrap()
        .unwrap();
        assert!(!tampered);
        let wrong_challenge: bool = Spi::get_one(
            "WITH a AS (SELECT pg_ephcrypt_attest('\\x00112233445566778899'::bytea) AS d), \
                  k AS (SELECT attestation_public_key AS pk FROM pg_ephcrypt_status()) \
             SELECT pg_ephcrypt_verify_attestation(d, pk, '\\xffffffffffffffff'::bytea) FROM a, k",
        )
        .unwrap()
        .unwrap();
        assert!(!wrong_challenge);
    }

    fn gcore(pid: i32, dir: &std::path::Path) -> Vec<u8> {
        let prefix = dir.join("core");
        let out = std::process::Command::new("gcore")
            .arg("-o")
            .arg(&prefix)
            .arg(pid.to_string())
            .output()
            .expect("gdb's gcore is installed (scripts/setup.sh)");
        let path = dir.join(format!("core.{pid}"));
        assert!(
            path.exists(),
            "gcore {pid} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        bytes
    }

    /// Core dumps (gdb's gcore) of the postmaster and of another backend
    /// that holds sealed temp files open: the epoch key is in neither, while
    /// a value we know the backend holds (the scanner's self-test) is found.
    #[pg_test]
    fn key_bytes_absent_from_core_dumps_of_postmaster_and_a_backend() {
        let page = crate::epoch::key_page().unwrap();
        let key = page.key().unwrap().to_vec();
        let port: String = Spi::get_one("SELECT current_setting('port')")
            .unwrap()
            .unwrap();
        let sockdir: String =
            Spi::get_one("SELECT split_part(current_setting('unix_socket_directories'), ',', 1)")
                .unwrap()
                .unwrap();
        // A second backend: spills, keeps its cursor (and files) open, sleeps.
        let marker = "CORE-SELFTEST-MARKER-81c3";
        let mut child = std::process::Command::new("psql")
            .args(["-X", "-h", &sockdir, "-p", &port, "-d", "postgres", "-c"])
            .arg(format!(
                "SET work_mem = '64kB'; BEGIN; DECLARE c CURSOR FOR SELECT '{marker}' || g FROM generate_series(1, 50000) g ORDER BY 1; FETCH 1 FROM c; SELECT pg_sleep(20);"
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("psql");
        let mut backend = None;
        for _ in 0..200 {
            // pg_stat_activity is snapshotted per transaction: drop the snapshot.
            Spi::run("SELECT pg_stat_clear_snapshot()").unwrap();
            backend = Spi::get_one::<i32>(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20)%' AND state = 'active' AND pid <> pg_backend_pid() LIMIT 1",
            )
            .ok()
            .flatten();
            if backend.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let backend = backend.expect("second backend is sleeping with its sort open");
        let dir = std::env::temp_dir().join(format!("pg_ephcrypt_gcore_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: reading a PostgreSQL global of this backend.
        let postmaster = unsafe { pg_sys::PostmasterPid };
        let pm_core = gcore(postmaster, &dir);
        let be_core = gcore(backend, &dir);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        let find = |hay: &[u8], needle: &[u8]| memchr::memmem::find(hay, needle).is_some();
        // The dumps are real: the backend's query text is in its core.
        assert!(
            find(&be_core, marker.as_bytes()),
            "the backend core holds its own query text"
        );
        assert!(pm_core.len() > 1 << 20 && be_core.len() > 1 << 20);
        assert!(
            !find(&pm_core, &key),
            "epoch key found in the postmaster's core dump"
        );
        assert!(
            !find(&be_core, &key),
            "epoch key found in a backend's core dump"
        );
        let key_hex = to_hex(&key);
        assert!(!find(&be_core, key_hex.as_bytes()) && !find(&pm_core, key_hex.as_bytes()));
    }

    /// What pg_ephcrypt writes to the server log about the key holds no key
    /// bytes in any encoding (PostgreSQL itself never sees the key).
    #[pg_test]
    fn epoch_log_line_holds_no_key_material() {
        let page = crate::epoch::key_page().unwrap();
        let key = page.key().unwrap();
        let state = crate::epoch::public_state();
        let line = crate::epoch::epoch_log_line(&state, page.protection());
        assert!(line.contains(&to_hex(&state.epoch_id)), "{line}");
        let lower = line.to_ascii_lowercase();
        for window in key.windows(4) {
            let h = to_hex(window);
            assert!(
                !lower.contains(&h),
                "a 4-byte run of the key appears in hex: {line}"
            );
        }
        assert!(!line
            .as_bytes()
            .windows(8)
            .any(|w| key.windows(8).any(|k| k == w)));
    }
}
