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
