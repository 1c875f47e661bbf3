-- pg_ephcrypt 0.1.0 -> 0.2.0.
--
-- 0.2.0 writes transient files in format v2 (docs/FORMAT.md); files of 0.1.0
-- are refused ("unsupported version"), and none needs migrating: no transient
-- file outlives its key epoch, and a server restart (needed to load the new
-- library) starts a new epoch.
--
-- pg_ephcrypt_status() gains the server's version (server_version,
-- server_version_num) and the memory hygiene in force (memory_hygiene,
-- dsm_dontdump, core_dumps): its row type changes, so it is dropped and
-- created again with its grants (the stats view does not depend on it).
-- pg_ephcrypt_scan() may now report the status 'unexpected', and attestation
-- documents carry `unexpected_files` and the server version, without a
-- catalog change.
-- pg_ephcrypt_wal_status() is new (the opt-in wal class: docs/OPERATIONS.md,
-- "Ephemeral WAL"); pg_ephcrypt_stats gains the row of the wal class.

DROP FUNCTION pg_ephcrypt_status();

CREATE FUNCTION "pg_ephcrypt_status"() RETURNS TABLE (
	"epoch_id" TEXT,
	"created_at" timestamp with time zone,
	"algorithm" TEXT,
	"fingerprint" TEXT,
	"memory_protection" TEXT,
	"interposed_symbols" TEXT[],
	"classes" TEXT[],
	"on_unsupported" TEXT,
	"postmaster_pid" INT,
	"attestation_public_key" bytea,
	"version" TEXT,
	"restarts" bigint,
	"refused_configurations" bigint,
	"server_version" TEXT,
	"server_version_num" INT,
	"memory_hygiene" TEXT,
	"dsm_dontdump" bool,
	"core_dumps" TEXT
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pg_ephcrypt_status_wrapper';

REVOKE ALL ON FUNCTION pg_ephcrypt_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_status() TO pg_monitor;

CREATE FUNCTION "pg_ephcrypt_wal_status"() RETURNS TABLE (
	"enabled" bool,
	"role" TEXT,
	"in_recovery" bool,
	"wal_durability" TEXT,
	"synchronous_replication" bool,
	"synchronous_standby_names" TEXT,
	"archive" TEXT,
	"key_epoch_id" TEXT,
	"key_fingerprint" TEXT,
	"key_created_at" timestamp with time zone,
	"memory_protection" TEXT,
	"removed_at_start" bigint,
	"sealed_at_start" bigint,
	"refused" TEXT
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pg_ephcrypt_wal_status_wrapper';

REVOKE ALL ON FUNCTION pg_ephcrypt_wal_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_wal_status() TO pg_monitor;
-- New in 0.2.0 (issue #14): the anchor state, the anchored verifier and the
-- last scan's summary (the same definitions and grants as a fresh install).
CREATE FUNCTION "pg_ephcrypt_anchor_status"() RETURNS TABLE (
	"anchored" bool,
	"anchor_public_key" bytea,
	"instance_public_key" bytea,
	"instance_certificate" jsonb,
	"epoch_certificate" jsonb
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pg_ephcrypt_anchor_status_wrapper';

CREATE FUNCTION "pg_ephcrypt_verify_anchored_attestation"(
	"document" jsonb,
	"anchor_public_key" bytea,
	"challenge" bytea DEFAULT NULL
) RETURNS bool
VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pg_ephcrypt_verify_anchored_attestation_wrapper';

CREATE FUNCTION "pg_ephcrypt_last_scan"() RETURNS TABLE (
	"finished_at" timestamp with time zone,
	"duration_ms" bigint,
	"files" bigint,
	"encrypted_current" bigint,
	"encrypted_stale" bigint,
	"plaintext" bigint,
	"unreadable" bigint,
	"empty" bigint,
	"unexpected" bigint,
	"scans" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pg_ephcrypt_last_scan_wrapper';

REVOKE ALL ON FUNCTION pg_ephcrypt_anchor_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_verify_anchored_attestation(jsonb, bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_ephcrypt_last_scan() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_anchor_status() TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_verify_anchored_attestation(jsonb, bytea, bytea) TO pg_monitor;
GRANT EXECUTE ON FUNCTION pg_ephcrypt_last_scan() TO pg_monitor;
