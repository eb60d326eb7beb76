-- 00_schemas.sql — schemas and extensions.
--
-- Runs as a superuser (the migration runner checks). Roles @owner_role@, @app_role@ and
-- @analyst_role@ exist already: the runner creates them, because roles are cluster-wide while
-- this file is per database.
--
--   dbal      pydbal's tables and functions, owned by @owner_role@.
--   dbal_ext  extensions pydbal relies on (pg_trgm), so that definer functions can name a fixed,
--             non-writable schema in their search_path instead of "public".
--   partman   pg_partman, when the server has it (Debian's postgresql-15-partman, 4.7). The
--             embedded server does not: executions and audit then live in a default partition.

CREATE SCHEMA IF NOT EXISTS dbal_ext;
REVOKE ALL ON SCHEMA dbal_ext FROM PUBLIC;
GRANT USAGE ON SCHEMA dbal_ext TO @owner_role@, @app_role@, @analyst_role@;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA dbal_ext;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman') THEN
        CREATE SCHEMA IF NOT EXISTS partman;
        CREATE EXTENSION IF NOT EXISTS pg_partman WITH SCHEMA partman;
    ELSE
        RAISE NOTICE 'pg_partman is not available on this server: workflow_executions and '
                     'audit_log keep every row in their default partition (no retention).';
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS dbal AUTHORIZATION @owner_role@;
REVOKE ALL ON SCHEMA dbal FROM PUBLIC;
GRANT USAGE ON SCHEMA dbal TO @app_role@, @analyst_role@;

-- Nothing the owner creates is executable by PUBLIC; grants are explicit (sql/90_grants.sql).
ALTER DEFAULT PRIVILEGES FOR ROLE @owner_role@ REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
