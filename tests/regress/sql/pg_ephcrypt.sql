-- pg_ephcrypt: the SQL surface, including bad input.
-- Values that change per run (ids, keys, times) are checked by shape only.
CREATE EXTENSION pg_ephcrypt;

-- try(sql): run a statement, report SQLSTATE, message and hint of a failure.
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hint text;
BEGIN
  EXECUTE sql;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
  RETURN st || ': ' || msg || coalesce(' | HINT: ' || nullif(hint, ''), '');
END $$;

-- Status: one row, every column present, nothing secret.
SELECT length(epoch_id) AS epoch_id_len,
       algorithm,
       length(fingerprint) AS fingerprint_len,
       memory_protection IN ('memfd_secret', 'mlock+dontdump') AS protected,
       'pread' = ANY (interposed_symbols) AND 'pwrite' = ANY (interposed_symbols) AND 'open' = ANY (interposed_symbols) AND 'fsync' = ANY (interposed_symbols) AND 'dup2' = ANY (interposed_symbols) AS interposed,
       classes,
       on_unsupported,
       postmaster_pid > 0 AS has_postmaster,
       octet_length(attestation_public_key) AS public_key_len,
       version,
       restarts,
       refused_configurations
FROM pg_ephcrypt_status();
SELECT count(*) FROM pg_ephcrypt_status();
-- The server's own version, as the server reports it.
SELECT server_version = current_setting('server_version') AS version_matches,
       server_version_num = current_setting('server_version_num')::int AS num_matches,
       server_version_num / 10000 >= 15 AS supported_major
FROM pg_ephcrypt_status();

-- Memory hygiene as the kernel reports it (defaults: dontdump, core dumps on).
SELECT memory_hygiene, dsm_dontdump, core_dumps FROM pg_ephcrypt_status();

-- Counters: one row per class; a spilling sort shows up under temp_files.
SELECT class, enabled FROM pg_ephcrypt_stats ORDER BY class;
-- The opt-in wal class is off by default: this is a primary whose WAL
-- durability is local.
SELECT enabled, role, in_recovery, wal_durability, key_epoch_id IS NULL AS no_wal_key,
       removed_at_start, sealed_at_start, refused
FROM pg_ephcrypt_wal_status();

SET work_mem = '64kB';
SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 30000) g ORDER BY 1) s;
RESET work_mem;
SELECT class, files_created > 0 AS created, bytes_sealed > 500000 AS sealed, bytes_opened > 500000 AS opened,
       auth_failures, stats_reset IS NOT NULL AS has_reset
FROM pg_ephcrypt_stats WHERE class = 'temp_files';

-- On-disk audit: a healthy instance has no plaintext file.
SELECT count(*) AS plaintext_files FROM pg_ephcrypt_scan() WHERE status = 'plaintext';
SELECT DISTINCT status FROM pg_ephcrypt_scan() WHERE status NOT IN ('encrypted_current', 'empty');

-- Attestation: the document and its verification.
CREATE TEMP TABLE att AS
  SELECT pg_ephcrypt_attest('\x00112233445566778899aabbccddeeff'::bytea) AS d,
         (SELECT attestation_public_key FROM pg_ephcrypt_status()) AS pk;
SELECT jsonb_typeof(d) AS kind,
       d ? 'epoch_id' AND d ? 'challenge' AND d ? 'signature' AS top_level_keys,
       d->>'challenge' AS challenge,
       d->>'signature_algorithm' AS alg,
       d->>'epoch_id' = (SELECT epoch_id FROM pg_ephcrypt_status()) AS same_epoch,
       d->>'fingerprint' = (SELECT fingerprint FROM pg_ephcrypt_status()) AS same_fingerprint,
       (d->>'plaintext_files')::int AS plaintext_files,
       length(d->>'library_sha256') AS sha256_len,
       d->'classes' AS classes,
       d ? 'boot_id' AND d ? 'system_identifier' AND d ? 'timestamp' AND d ? 'scan_summary'
         AND (d->>'server_version_num')::int = current_setting('server_version_num')::int AS identity
FROM att;
SELECT pg_ephcrypt_verify_attestation(d, pk) AS verified_without_challenge,
       pg_ephcrypt_verify_attestation(d, pk, '\x00112233445566778899aabbccddeeff') AS verified_with_challenge,
       pg_ephcrypt_verify_attestation(d, pk, '\x00112233445566778899aabbccddeefe') AS wrong_challenge,
       pg_ephcrypt_verify_attestation(jsonb_set(d, '{plaintext_files}', '0'), pk) AS same_value_still_valid,
       pg_ephcrypt_verify_attestation(jsonb_set(d, '{plaintext_files}', '7'), pk) AS tampered_field,
       pg_ephcrypt_verify_attestation(jsonb_set(d, '{scan_summary,plaintext}', '3'), pk) AS tampered_nested,
       pg_ephcrypt_verify_attestation(d || '{"extra": 1}', pk) AS added_field,
       pg_ephcrypt_verify_attestation(d - 'hostname', pk) AS removed_field,
       pg_ephcrypt_verify_attestation(d, decode(repeat('ab', 32), 'hex')) AS wrong_key,
       pg_ephcrypt_verify_attestation(jsonb_set(d, '{signature_algorithm}', '"rsa"'), pk) AS wrong_algorithm
FROM att;

-- Bad input: each a clear error with SQLSTATE and hint.
SELECT try($$SELECT pg_ephcrypt_attest(NULL)$$);
SELECT try($$SELECT pg_ephcrypt_attest(''::bytea)$$);
SELECT try($$SELECT pg_ephcrypt_attest('\x0102'::bytea)$$);
SELECT try($$SELECT pg_ephcrypt_attest(decode(repeat('00', 1048576), 'hex'))$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation(NULL, '\x00'::bytea)$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation('{}'::jsonb, NULL)$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation('{}'::jsonb, '\x0102'::bytea)$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation('[]'::jsonb, decode(repeat('ab', 32), 'hex'))$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation('"text"'::jsonb, decode(repeat('ab', 32), 'hex'))$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation('{"signature_algorithm": "ed25519"}'::jsonb, decode(repeat('ab', 32), 'hex'))$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation('{bad json'::jsonb, decode(repeat('ab', 32), 'hex'))$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation((SELECT d FROM att) - 'signature', (SELECT pk FROM att))$$);

-- Privileges: nothing for PUBLIC; pg_monitor members may look.
CREATE ROLE ephcrypt_plain LOGIN;
SET ROLE ephcrypt_plain;
SELECT try($$SELECT * FROM pg_ephcrypt_status()$$);
SELECT try($$SELECT * FROM pg_ephcrypt_stats$$);
SELECT try($$SELECT * FROM pg_ephcrypt_scan()$$);
SELECT try($$SELECT * FROM pg_ephcrypt_wal_status()$$);
SELECT try($$SELECT pg_ephcrypt_attest('\x0011223344556677'::bytea)$$);
SELECT try($$SELECT pg_ephcrypt_verify_attestation('{}'::jsonb, '\x00'::bytea)$$);
RESET ROLE;
GRANT pg_monitor TO ephcrypt_plain;
SET ROLE ephcrypt_plain;
SELECT try($$SELECT * FROM pg_ephcrypt_status()$$);
SELECT try($$SELECT * FROM pg_ephcrypt_stats$$);
SELECT try($$SELECT * FROM pg_ephcrypt_scan()$$);
SELECT try($$SELECT pg_ephcrypt_attest('\x0011223344556677'::bytea)$$);
RESET ROLE;
DROP ROLE ephcrypt_plain;

-- The extension can be dropped and created again.
DROP FUNCTION try(text);
DROP EXTENSION pg_ephcrypt;
CREATE EXTENSION pg_ephcrypt;
SELECT count(*) FROM pg_ephcrypt_status();
DROP EXTENSION pg_ephcrypt;
