-- Run at the end of CREATE EXTENSION (pgrx `finalize`): refuse to install
-- when the library was not preloaded, then grants.
SELECT pg_ephcrypt_assert_preloaded();

CREATE VIEW pg_ephcrypt_stats AS SELECT * FROM pg_ephcrypt_stat_classes();

-- Nothing for PUBLIC; monitoring roles see status, counters, the on-disk
-- audit and attestations.
REVOKE ALL ON FUNCTION pg_ephcrypt_assert_preloaded() FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_wal_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_stat_classes() FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_scan() FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_attest(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_verify_attestation(jsonb, bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_anchor_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_verify_anchored_attestation(jsonb, bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_last_scan() FROM PUBLIC;
REVOKE ALL ON pg_ephcrypt_stats FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_status() TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_wal_status() TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_stat_classes() TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_scan() TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_attest(bytea) TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_verify_attestation(jsonb, bytea, bytea) TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_anchor_status() TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_verify_anchored_attestation(jsonb, bytea, bytea) TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_last_scan() TO pg_monitor;
GRANT SELECT ON pg_ephcrypt_stats TO pg_monitor;
